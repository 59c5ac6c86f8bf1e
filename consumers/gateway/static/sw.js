// The dashboard's service worker: keeps the page shell (HTML, scripts, styles, the vendored
// charting library) so a reload while the gateway is unreachable still opens the dashboard,
// which then shows the last known state it saved in localStorage and keeps reconnecting.
// Network first: a reachable gateway always serves the current version. API calls and
// WebSockets are never cached (live data, and they carry tokens).
const CACHE = "agentwatch-shell-v2";
const SHELL = [
  "/", "/static/app.css", "/static/app.js", "/static/charts.js", "/static/offline.js", "/static/privacy.js",
  "/static/vendor/chart.umd.min.js", "/static/vendor/chartjs-chart-treemap.min.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function isShell(url, request) {
  if (url.origin !== self.location.origin || request.method !== "GET") return false;
  if (url.pathname.startsWith("/static/")) return true;
  // The page: / and a plain GET of /sessions/{id} (the WebSocket upgrade never comes here).
  // Other navigations (/api/openapi.json, /metrics) are not the page and are not kept.
  return request.mode === "navigate" && (url.pathname === "/" || url.pathname.startsWith("/sessions/"));
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  const key = request.mode === "navigate" ? "/" : request;
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(key, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(key, { ignoreSearch: true });
    if (cached) return cached;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (isShell(url, event.request)) event.respondWith(networkFirst(event.request));
});
