// The dashboard page's own script: a file, not inline, so the page's Content-Security-Policy
// can forbid inline script (script-src 'self').
const KEY_STORAGE = "upshift.financeKey";
const $ = (id) => document.getElementById(id);
const status = $("status");
const keyInput = $("finance-key");
let report = null;

// --- money and ratios stay exact: integers and decimal strings in, text out ------------
function decimalString(minor, digits) {
  const text = String(Math.abs(minor)).padStart(digits + 1, "0");
  const body = digits ? `${text.slice(0, -digits)}.${text.slice(-digits)}` : text;
  return (minor < 0 ? "-" : "") + body;
}
function money(minor, currency) {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(decimalString(minor, digits));
}
// "1.1500" -> 11500 basis points (an integer), null stays null.
function basisPoints(ratio) {
  if (ratio === null || ratio === undefined) return null;
  const negative = ratio.startsWith("-");
  const [whole, frac = ""] = ratio.replace("-", "").split(".");
  const bp = Number(whole) * 10000 + Number(frac.padEnd(4, "0").slice(0, 4));
  return negative ? -bp : bp;
}
function percent(ratio) {
  const bp = basisPoints(ratio);
  return bp === null ? "n/a" : `${decimalString(bp, 2)}%`;
}
const monthName = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric", timeZone: "UTC" });

// --- range ---------------------------------------------------------------------------
function monthValue(date) {
  return `${date.getUTCFullYear()}-${String(date.getUTCMonth() + 1).padStart(2, "0")}`;
}
function initialRange() {
  const params = new URLSearchParams(location.search);
  const now = new Date();
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1));
  $("from-month").value = params.get("from") || monthValue(start);
  $("to-month").value = params.get("to") || monthValue(now);
}
function rangeQuery() {
  const from = $("from-month").value;
  const to = $("to-month").value;
  if (!from || !to || to < from) throw new Error("Pick a range: the last month must not be before the first.");
  const [year, month] = to.split("-").map(Number);
  const end = new Date(Date.UTC(year, month, 1)); // the month after `to`, exclusive
  return {
    label: `${from}-to-${to}`,
    query: `from=${from}-01T00:00:00Z&to=${end.toISOString().replace(".000Z", "Z")}`,
  };
}

// --- API -----------------------------------------------------------------------------
function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}
async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key()}` } });
  if (response.ok) return response;
  let problem = {};
  try { problem = await response.json(); } catch { /* not JSON */ }
  if (response.status === 401) throw new Error(`This key was not accepted (${problem.code || "unauthorized"}).`);
  if (response.status === 403) throw new Error("This key has no finance scope.");
  throw new Error(problem.detail || problem.title || `HTTP ${response.status}`);
}

async function loadReport() {
  if (!key()) {
    status.textContent = "Paste a finance key to load the report.";
    return;
  }
  try {
    const { query } = rangeQuery();
    status.textContent = "Loading the report…";
    report = await (await api(`/v1/reports/nrr?${query}&granularity=month`)).json();
    fillCurrencies();
    render();
    status.textContent = `Report loaded: ${report.periods.length} period rows.`;
  } catch (error) {
    status.textContent = error.message;
    status.className = "readout error";
    return;
  }
  status.className = "readout muted";
}

async function exportCsv() {
  if (!key()) {
    status.textContent = "Paste a finance key first.";
    return;
  }
  try {
    const { query, label } = rangeQuery();
    status.textContent = "Exporting the ledger…";
    const blob = await (await api(`/v1/ledger/export?format=csv&${query}`)).blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = `upshift-ledger-${label}.csv`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    status.textContent = `Downloaded ${link.download}.`;
  } catch (error) {
    status.textContent = error.message;
  }
}

// --- rendering -----------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children.flat().map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children.map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}

function fillCurrencies() {
  const select = $("currency");
  const chosen = select.value;
  const currencies = [...new Set(report.periods.map((p) => p.currency))].sort();
  select.replaceChildren(...(currencies.length ? currencies : [""]).map((c) => el("option", { value: c }, c || "—")));
  if (currencies.includes(chosen)) select.value = chosen;
}

function periods() {
  const currency = $("currency").value;
  return report.periods.filter((p) => p.currency === currency);
}

function render() {
  const rows = periods();
  renderChart(rows);
  renderMovements(rows);
  renderFunnel();
}

function renderChart(rows) {
  const box = $("chart");
  const series = [
    { name: "NRR", key: "nrr", color: "#3755d8" },
    { name: "GRR", key: "grr", color: "#0f766e" },
  ];
  const values = rows.flatMap((p) => series.map((s) => basisPoints(p[s.key]))).filter((v) => v !== null);
  if (!rows.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No ledger movements in this range."));
    return;
  }
  // Drawn at the box's own width, so that text keeps its size from phone to desktop.
  const width = Math.max(300, Math.round(box.clientWidth || 720));
  const height = width < 560 ? 220 : 280, left = 52, right = 36, top = 16, bottom = 40;
  const low = Math.min(8000, ...values), high = Math.max(12000, ...values);
  const step = Math.max(1000, Math.ceil((high - low) / 5 / 1000) * 1000);
  const yMin = Math.floor(low / step) * step, yMax = Math.ceil(high / step) * step;
  const x = (i) => left + (rows.length === 1 ? (width - left - right) / 2 : (i * (width - left - right)) / (rows.length - 1));
  const y = (bp) => top + ((yMax - bp) * (height - top - bottom)) / (yMax - yMin);
  const described = series.map((s) => `${s.name}: ` + rows.map((p) => `${monthName.format(new Date(p.period_start))} ${percent(p[s.key])}`).join(", ")).join(". ");
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `NRR and GRR by month. ${described}`, "data-testid": "nrr-chart" });
  for (let bp = yMin; bp <= yMax; bp += step) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(bp), y2: y(bp), stroke: bp === 10000 ? "#9aa3b2" : "#e6e9ef", "stroke-dasharray": bp === 10000 ? "5 4" : "0" }));
    chart.append(svg("text", { x: left - 8, y: y(bp) + 4, "text-anchor": "end", "font-size": 12, fill: "#5b6576" }, `${bp / 100}%`));
  }
  const every = Math.ceil(rows.length / Math.max(2, Math.floor((width - left) / 90)));
  rows.forEach((p, i) => {
    if (i % every === 0 || i === rows.length - 1) {
      chart.append(svg("text", { x: x(i), y: height - 14, "text-anchor": "middle", "font-size": 12, fill: "#5b6576" }, monthName.format(new Date(p.period_start))));
    }
  });
  for (const s of series) {
    let d = "";
    let drawing = false;
    rows.forEach((p, i) => {
      const bp = basisPoints(p[s.key]);
      if (bp === null) { drawing = false; return; }
      d += `${drawing ? "L" : "M"}${x(i).toFixed(1)} ${y(bp).toFixed(1)} `;
      drawing = true;
    });
    if (d) chart.append(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": 2.5, "stroke-linejoin": "round" }));
    rows.forEach((p, i) => {
      const bp = basisPoints(p[s.key]);
      if (bp === null) return;
      const dot = svg("circle", { cx: x(i), cy: y(bp), r: 4, fill: s.color });
      dot.append(svg("title", {}, `${s.name} ${monthName.format(new Date(p.period_start))}: ${percent(p[s.key])}`));
      chart.append(dot);
    });
  }
  const nodes = [chart];
  if (!values.length) {
    nodes.push(el("p", { class: "muted" }, "No NRR or GRR yet: they need accounts paying at the start of a month."));
  }
  box.replaceChildren(...nodes);
}

function renderMovements(rows) {
  const box = $("movements");
  if (!rows.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No movements in this range."));
    return;
  }
  const columns = [
    ["Starting MRR", (p) => p.starting_mrr_minor],
    ["New", (p) => p.new_minor],
    ["Seat", (p) => p.expansion_by_engine_minor.seat],
    ["Upsell", (p) => p.expansion_by_engine_minor.upsell],
    ["Add-on", (p) => p.expansion_by_engine_minor.addon],
    ["Strategic", (p) => p.expansion_by_engine_minor.strategic],
    ["Price uplift", (p) => p.expansion_by_engine_minor.price_uplift],
    ["Contraction", (p) => -p.contraction_minor],
    ["Churn", (p) => -p.churn_minor],
    ["Reactivation", (p) => p.reactivation_minor],
    ["Ending MRR", (p) => p.ending_mrr_minor],
  ];
  const table = el("table", { "data-testid": "movements-table" },
    el("caption", { class: "sr-only" }, "MRR movements per month, expansion split by engine"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Month"),
      columns.map(([name]) => el("th", { scope: "col" }, name)),
      el("th", { scope: "col" }, "NRR"), el("th", { scope: "col" }, "GRR"))),
    el("tbody", {}, rows.map((p) => el("tr", {},
      el("th", { scope: "row" }, monthName.format(new Date(p.period_start))),
      columns.map(([, pick]) => el("td", {}, money(pick(p), p.currency))),
      el("td", {}, percent(p.nrr)), el("td", {}, percent(p.grr))))));
  box.replaceChildren(table);
}

function renderFunnel() {
  const box = $("funnel");
  const funnel = report.offer_funnel;
  const median = funnel.median_days_to_first_expansion;
  const note = el("p", { class: "muted" }, median === null
    ? "No first expansion after activation in this range yet."
    : `Median days from activation to first expansion: ${median}.`);
  const shown = funnel.rows.filter((r) => r.served > 0 || r.seen > 0);
  if (!shown.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No offers shown in this range."), note);
    return;
  }
  const table = el("table", { "data-testid": "funnel-table" },
    el("caption", { class: "sr-only" },
      "Offers served by the API, seen by customers and accepted, per engine; conversion is accepted of seen"),
    el("thead", {}, el("tr", {}, ["Engine", "Activation window", "Served", "Seen", "Accepted", "Conversion"]
      .map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, shown.map((r) => el("tr", {},
      el("th", { scope: "row" }, r.engine),
      el("td", {}, r.in_activation_window ? "inside" : "outside"),
      el("td", {}, r.served), el("td", {}, r.seen), el("td", {}, r.accepted),
      el("td", {}, percent(r.conversion))))));
  box.replaceChildren(table, note);
}

// --- wiring --------------------------------------------------------------------------
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = keyInput.value.trim();
  if (!value) return;
  sessionStorage.setItem(KEY_STORAGE, value);
  keyInput.value = "";
  keyInput.placeholder = "key saved for this tab";
  loadReport();
});
$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  keyInput.placeholder = "upk_…";
  status.textContent = "Key forgotten.";
});
$("range-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadReport();
});
$("currency").addEventListener("change", () => report && render());
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => report && renderChart(periods()), 150);
});
$("export-csv").addEventListener("click", exportCsv);
initialRange();
if (key()) {
  keyInput.placeholder = "key saved for this tab";
  loadReport();
}
