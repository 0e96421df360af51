// The console's few lines of scripting: refresh the panels, tick the countdowns, and turn an
// action button into a confirmed API call with the operator's key. The key lives in this tab's
// sessionStorage only and leaves as the Authorization header, never in a URL.
"use strict";
const KEY = "stopper.operatorKey";
const WHO = "stopper.operatorName";
const ACTIONS = {
  freeze: { field: "Legal document reference", path: (d) => `/v1/holds/${d.hold}/freeze`,
            body: (v, who) => ({ legal_document_ref: v, requested_by: who }) },
  reapply: { field: "Reason for re-applying", path: (d) => `/v1/holds/${d.hold}/reapply`,
             body: (v, who) => ({ reason: v, requested_by: who }) },
  handled: { field: "Note: what was done", path: (d) => `/v1/holds/${d.hold}/handled`,
             body: (v, who) => ({ note: v, requested_by: who }) },
  return: { field: "Legal document reference", path: (d) => `/v1/cases/${d.case}/returns`,
            body: (v, who) => ({ legal_document_ref: v, requested_by: who }) },
  release: { field: "Reason for releasing (e.g. account cleared)",
             path: (d) => `/v1/holds/${d.hold}/release`,
             body: (v, who) => ({ reason: v, requested_by: who }) },
  withdraw: { field: "Reason for withdrawing the report",
              path: (d) => `/v1/cases/${d.case}/withdraw`,
              body: (v, who) => ({ reason: v, requested_by: who }) },
  // Four eyes: another operator than the one who asked.
  approve: { field: null, path: (d) => `${d.path}/approve`,
             body: (v, who) => ({ approved_by: who }) },
  reject: { field: "Reason for rejecting", path: (d) => `${d.path}/reject`,
            body: (v, who) => ({ reason: v, rejected_by: who }) },
};
const panels = document.getElementById("panels");
const live = document.getElementById("live");
const answer = document.getElementById("answer");
const dialog = document.getElementById("confirm");
let loaded = Date.now();
let pending = null;

function pad(n) { return String(n).padStart(2, "0"); }
function tick() {
  // Count from Stopper's clock, not the browser's.
  const stamp = document.querySelector("#summary time, .stamp time");
  const now = stamp ? Date.parse(stamp.getAttribute("datetime")) + (Date.now() - loaded)
                    : Date.now();
  for (const el of document.querySelectorAll(".countdown")) {
    const left = Math.round((Date.parse(el.dataset.expires) - now) / 1000);
    const s = Math.abs(left);
    const text = Math.floor(s / 3600) + "h " + pad(Math.floor(s % 3600 / 60)) + "m "
      + pad(s % 60) + "s";
    el.textContent = left >= 0 ? "in " + text : "lapsed " + text + " ago";
    el.classList.toggle("urgent", left >= 0 && left < 7200);
    el.classList.toggle("lapsed", left < 0);
  }
}
async function refresh() {
  try {
    const got = await fetch(panels.dataset.refresh, { cache: "no-store", headers: auth() });
    if (got.ok) {
      // Keep the keyboard where it was: the focused button is found again by its action.
      const focused = document.activeElement && document.activeElement.closest("[data-act]");
      const again = focused ? actionSelector(focused) : null;
      panels.innerHTML = await got.text();
      if (again) { const el = panels.querySelector(again); if (el) el.focus(); }
      loaded = Date.now();
      live.textContent = "live: refreshed " + new Date().toLocaleTimeString();
      tick();
    } else {
      live.textContent = "stale: HTTP " + got.status;
    }
  } catch (e) {
    live.textContent = "stale: Stopper unreachable";
  }
}
function actionSelector(el) {
  const d = el.dataset;
  return `[data-act="${d.act}"]` + (d.hold ? `[data-hold="${d.hold}"]` : "")
    + (d.case ? `[data-case="${d.case}"]` : "");
}
function auth() {
  const key = sessionStorage.getItem(KEY);
  return key ? { authorization: "Bearer " + key } : {};
}
function showKey() {
  const who = sessionStorage.getItem(WHO);
  const set = sessionStorage.getItem(KEY) !== null;
  document.getElementById("key-state").textContent =
    set ? "acting as " + who : "no key: actions need one";
  document.getElementById("key-forget").hidden = !set;
  if (who) document.getElementById("key-who").value = who;
}
document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key-value").value.trim());
  sessionStorage.setItem(WHO, document.getElementById("key-who").value.trim());
  document.getElementById("key-value").value = "";
  showKey();
});
document.getElementById("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(WHO);
  showKey();
});
document.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-act]");
  if (!button) return;
  if (sessionStorage.getItem(KEY) === null) {
    say("refused", "Enter your name and operator key first (top right).");
    document.getElementById("key-who").focus();
    return;
  }
  pending = { ...button.dataset };
  document.getElementById("confirm-what").textContent = button.dataset.what;
  const field = ACTIONS[pending.act].field;
  const input = document.getElementById("confirm-field");
  document.getElementById("confirm-label").textContent = field || "";
  document.getElementById("confirm-input").hidden = !field;
  input.required = Boolean(field);
  input.value = "";
  dialog.showModal();
  (field ? input : document.getElementById("confirm-go")).focus();
});
document.getElementById("confirm-cancel").addEventListener("click", () => {
  pending = null;
  dialog.close();
});
document.getElementById("confirm-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const order = pending;
  const value = document.getElementById("confirm-field").value.trim();
  if (!order || (ACTIONS[order.act].field && !value)) return;
  dialog.close();
  pending = null;
  const action = ACTIONS[order.act];
  say("", "Sending: " + order.what + " ...");
  try {
    const got = await fetch(action.path(order), {
      method: "POST",
      headers: { "content-type": "application/json", ...auth() },
      body: JSON.stringify(action.body(value, sessionStorage.getItem(WHO))),
    });
    const text = await got.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
    say(got.ok ? "ok" : "refused", `${order.what}\nHTTP ${got.status}: ${shown}`);
  } catch (err) {
    say("refused", order.what + "\nStopper unreachable: " + err);
  }
  await refresh();
});
function say(kind, text) {
  answer.className = kind;
  answer.textContent = text;
}
showKey();
tick();
setInterval(tick, 1000);
setInterval(refresh, Number(panels.dataset.every));
