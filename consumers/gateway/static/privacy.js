// The Privacy page: the signed-in user's consent and retention (GET/PUT /api/user/privacy), an
// export of everything held about them (GET /api/user/telemetry/export, downloaded through
// fetch because the endpoint wants the bearer header, which a plain link cannot send), and the
// erasure (DELETE /api/user/telemetry) behind an in-page confirmation: the user types a word,
// so neither a stray tap nor a browser that suppresses window.confirm erases anything.

const $ = (id) => document.getElementById(id);
const CONFIRM_WORD = "delete";
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

let deps = null;

function say(id, text, kind = "") {
  const node = $(id);
  node.textContent = text;
  node.className = `note ${kind}`;
}

function showSettings(pref) {
  for (const radio of document.querySelectorAll('#privacy-form input[name="telemetry"]')) {
    radio.checked = radio.value === pref.telemetry;
  }
  $("retention-days").value = String(pref.retention_days ?? 0);
  const days = pref.retention_days ? `${pref.retention_days} days` : "the deployment's default";
  $("privacy-current").textContent =
    `${pref.user_id}: telemetry ${pref.telemetry}, events kept for ${days}` +
    (pref.updated_us ? ` (changed ${new Date(pref.updated_us / 1000).toLocaleString()})` : "");
}

async function load() {
  say("privacy-saved", "");
  try {
    showSettings(await deps.api("GET", "/api/user/privacy"));
  } catch (err) {
    $("privacy-current").textContent = `could not read your settings: ${err.message}`;
  }
}

async function save(event) {
  event.preventDefault();
  const chosen = document.querySelector('#privacy-form input[name="telemetry"]:checked');
  const days = Number($("retention-days").value || 0);
  if (!Number.isInteger(days) || days < 0) {
    say("privacy-saved", "retention is a whole number of days (0: the default)", "bad");
    return;
  }
  const body = { retention_days: days };
  if (chosen) body.telemetry = chosen.value;
  say("privacy-saved", "saving…");
  try {
    showSettings(await deps.api("PUT", "/api/user/privacy", body));
    say("privacy-saved", "saved", "good");
  } catch (err) {
    say("privacy-saved", `not saved: ${err.message}`, "bad");
  }
}

async function download(format) {
  say("export-state", "preparing the export…");
  try {
    const res = await fetch(`/api/user/telemetry/export?format=${format}`, { headers: deps.authHeaders() });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      throw new Error(data.message || res.statusText);
    }
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = `agentwatch-export.${format === "csv" ? "csv" : "jsonl"}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("export-state", `downloaded ${link.download} (${blob.size} bytes)`, "good");
  } catch (err) {
    say("export-state", `export failed: ${err.message}`, "bad");
  }
}

function askToDelete() {
  $("delete-confirm").hidden = false;
  $("delete-start").hidden = true;
  $("delete-typed").value = "";
  $("delete-go").disabled = true;
  say("delete-result", "");
  $("delete-typed").focus();
}

function cancelDelete() {
  $("delete-confirm").hidden = true;
  $("delete-start").hidden = false;
  say("delete-result", "nothing was deleted");
}

async function erase() {
  if ($("delete-typed").value.trim().toLowerCase() !== CONFIRM_WORD) return;
  $("delete-go").disabled = true;
  $("delete-cancel").disabled = true;
  say("delete-result", "erasing… (this waits until every store confirms)");
  try {
    const r = await deps.api("DELETE", "/api/user/telemetry");
    deps.forgetCachedState();
    const rows = Object.values(r.clickhouse_rows || {}).reduce((a, b) => a + b, 0);
    const left = Object.values(r.remaining || {}).reduce((a, b) => a + b, 0);
    say("delete-result", r.verified
      ? `erased: ${count(r.sessions, "session", "sessions")}, ${count(rows, "stored row", "stored rows")}, ` +
        `${count(r.archive_objects, "archive object", "archive objects")}; verified, nothing remains`
      : `erasure incomplete: ${left} records remain; run it again`, r.verified ? "good" : "bad");
    $("delete-confirm").hidden = true;
    $("delete-start").hidden = false;
  } catch (err) {
    say("delete-result", `erasure failed: ${err.message}; run it again`, "bad");
  } finally {
    $("delete-cancel").disabled = false;
  }
}

export function initPrivacy(api, authHeaders, forgetCachedState) {
  deps = { api, authHeaders, forgetCachedState };
  $("privacy-form").addEventListener("submit", save);
  $("export-json").addEventListener("click", () => download("json"));
  $("export-csv").addEventListener("click", () => download("csv"));
  $("delete-start").addEventListener("click", askToDelete);
  $("delete-cancel").addEventListener("click", cancelDelete);
  $("delete-typed").addEventListener("input", (e) => {
    $("delete-go").disabled = e.target.value.trim().toLowerCase() !== CONFIRM_WORD;
  });
  $("delete-confirm").addEventListener("submit", (e) => { e.preventDefault(); erase(); });
}

export function showPrivacy() {
  $("delete-confirm").hidden = true;
  $("delete-start").hidden = false;
  say("export-state", "");
  say("delete-result", "");
  load();
}
