// The demo page's own script: a file, not inline, so the page's Content-Security-Policy
// can forbid inline script (script-src 'self').
const widget = document.getElementById("offers");
const table = document.getElementById("plans");
const readout = document.getElementById("readout");
const decline = document.getElementById("decline");
const count = new Intl.NumberFormat();

if (widget.getAttribute("session-token").startsWith("__")) {
  readout.textContent = "Open /demo (served in demo mode) instead of the static file.";
}

function show(state) {
  const seats = state.active_seats;
  const calls = state.api_calls;
  const limit = calls.limit === null ? "unlimited" : count.format(calls.limit);
  readout.textContent =
    `Plan: ${state.tier} · ${count.format(seats.used)} active of ${count.format(state.seats)} ` +
    `seats · ${count.format(calls.used)} of ${limit} API calls this month` +
    (state.declining ? " · payments decline" : "");
  decline.checked = state.declining;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.detail || payload.title || response.statusText);
  return payload;
}

async function run(action) {
  try {
    show(await action());
  } catch (error) {
    readout.textContent = `Demo control failed: ${error.message}`;
  }
}

for (const button of document.querySelectorAll("[data-simulate]")) {
  button.addEventListener("click", () =>
    run(async () => {
      const state = await call("POST", "/demo/simulate", JSON.parse(button.dataset.simulate));
      widget.refresh();
      table.load();
      return state;
    }),
  );
}
decline.addEventListener("change", () =>
  run(() => call("PUT", "/demo/decline", { decline: decline.checked })),
);
// An upgrade through either component changes what both show.
widget.addEventListener("upshift-upgraded", () => {
  table.load();
  run(() => call("GET", "/demo/state"));
});
table.addEventListener("upshift-upgraded", () => {
  widget.refresh();
  run(() => call("GET", "/demo/state"));
});
table.addEventListener("upshift-contact-sales", (event) => {
  readout.textContent = `Signal ${event.detail.request.signal_id} for Relay's sales team: ${event.detail.account_id} asked about ${event.detail.tier}.`;
});
for (const element of [widget, table]) {
  element.addEventListener("upshift-session-expired", () => {
    readout.textContent = "The demo session expired: reload the page for a new one.";
  });
}
run(() => call("GET", "/demo/state"));
