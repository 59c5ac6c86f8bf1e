// The dashboard's offline copy: the last known state of each view in localStorage (so a page
// without its gateway still shows something) and the service worker that keeps the page itself
// (/sw.js), so a reload while the gateway is unreachable still opens it.

const OVERVIEW = "aw.overview";
const SESSION = "aw.session.";

const keyOf = (route) => (route.kind === "session" ? `${SESSION}${route.id}` : OVERVIEW);

export function registerShell() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/sw.js").catch((err) => console.warn("no offline copy:", err));
}

export function saveState(route, value) {
  try { localStorage.setItem(keyOf(route), JSON.stringify(value)); } catch (_) { /* quota: skip */ }
}

export function loadState(route) {
  try { return JSON.parse(localStorage.getItem(keyOf(route)) || "null"); } catch (_) { return null; }
}

export function forgetState(route) { localStorage.removeItem(keyOf(route)); }

// Signing out or erasing one's data must not leave the last known state readable offline.
export function forgetAllStates() {
  for (const key of Object.keys(localStorage)) {
    if (key === OVERVIEW || key.startsWith(SESSION)) localStorage.removeItem(key);
  }
}
