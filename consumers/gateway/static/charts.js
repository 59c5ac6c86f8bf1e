// Charts of the session view, drawn with the vendored Chart.js (+ its treemap plugin):
// agents as a Gantt (floating horizontal bars), file changes as a treemap, resources as lines.
const charts = {};
let registered = false;

function lib() {
  const Chart = window.Chart;
  if (!Chart) return null;
  if (!registered && window.ChartTreemap) {
    Chart.register(window.ChartTreemap.TreemapController, window.ChartTreemap.TreemapElement);
    registered = true;
  }
  return Chart;
}

function upsert(id, build, update) {
  const Chart = lib();
  const canvas = document.getElementById(id);
  if (!Chart || !canvas) return;
  if (!charts[id]) {
    const config = build();
    config.options = { responsive: true, maintainAspectRatio: false, animation: false, ...config.options };
    charts[id] = new Chart(canvas, config);
  }
  update(charts[id]);
  charts[id].update("none");
}

export function destroyCharts() {
  for (const [id, chart] of Object.entries(charts)) { chart.destroy(); delete charts[id]; }
}

const COLORS = { active: "#4aa3ff", idle: "#8b98a5", done: "#3fb950", failed: "#f85149" };
const grid = { color: "#253040" };
const ticks = { color: "#8b98a5" };

export function renderCharts(widgets) {
  const get = (name) => (widgets[name] || {}).data || {};
  const agents = get("agent_timeline").agents || [];
  const t0 = Math.min(...agents.map((a) => a.start_time), Infinity);
  upsert("agents-chart", () => ({
    type: "bar",
    data: { labels: [], datasets: [{ label: "agent", data: [], backgroundColor: [], borderSkipped: false }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } },
      scales: { x: { title: { display: true, text: "seconds since start", color: "#8b98a5" }, grid, ticks },
                y: { grid, ticks } } },
  }), (chart) => {
    chart.data.labels = agents.map((a) => a.agent);
    chart.data.datasets[0].data = agents.map((a) => {
      const start = (a.start_time - t0) / 1e6;
      return [start, start + (a.active_ms + a.idle_ms) / 1000];
    });
    chart.data.datasets[0].backgroundColor = agents.map((a) => COLORS[a.status] || COLORS.active);
  });

  const dirs = get("file_heatmap").directories || [];
  upsert("files-chart", () => ({
    type: "treemap",
    data: { datasets: [{ tree: [], key: "size", labels: { display: true, color: "#e6edf3",
      formatter: (ctx) => (ctx.raw && ctx.raw._data ? ctx.raw._data.directory : "") },
      backgroundColor: (ctx) => {
        const heat = ctx.raw && ctx.raw._data ? ctx.raw._data.heat : 0;
        return `rgba(248, 81, 73, ${0.15 + 0.85 * (heat || 0)})`;
      }, borderColor: "#0f1419", borderWidth: 1, spacing: 1 }] },
    options: { plugins: { legend: { display: false }, tooltip: { callbacks: {
      title: (items) => (items[0].raw._data || {}).directory,
      label: (item) => {
        const d = item.raw._data || {};
        return `${d.files_modified} files, +${d.lines_added}/-${d.lines_removed}, heat ${d.heat}`;
      } } } } },
  }), (chart) => {
    chart.data.datasets[0].tree = dirs.map((d) => ({ ...d, size: Math.max(1, d.lines_added + d.lines_removed) }));
  });

  const series = get("resource_usage").series || [];
  upsert("resources-chart", () => ({
    type: "line",
    data: { labels: [], datasets: [
      { label: "memory MiB", data: [], borderColor: "#4aa3ff", yAxisID: "mem", pointRadius: 0 },
      { label: "CPU %", data: [], borderColor: "#d29922", yAxisID: "cpu", pointRadius: 0 }] },
    options: { plugins: { legend: { labels: { color: "#e6edf3" } } }, scales: {
      x: { grid, ticks: { ...ticks, maxTicksLimit: 6 } },
      mem: { position: "left", grid, ticks }, cpu: { position: "right", grid: { drawOnChartArea: false }, ticks } } },
  }), (chart) => {
    chart.data.labels = series.map((p) => new Date(p.t / 1000).toLocaleTimeString());
    chart.data.datasets[0].data = series.map((p) => p.memory_mib);
    chart.data.datasets[1].data = series.map((p) => p.cpu_pct);
  });
}
