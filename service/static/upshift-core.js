// Shared by Upshift's web components (<upshift-offers>, <upshift-pricing-table>): money and
// dates formatted from integers and ISO strings, DOM building, and the API call with a session
// token. Plain ES module, no build step, no dependency.

const REQUEST_TIMEOUT_MS = 15000;

// The look both components share: colours, buttons, notices, the screen-reader status line.
export const BASE_STYLE = `
:host { display: block; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1c2330; --accent: #3755d8; --accent-dark: #2941ad; --danger: #b42318; --ok: #18794e;
  --muted: #5b6576; --line: #dde2ea; }
* { box-sizing: border-box; }
button { font: inherit; font-weight: 600; border-radius: 8px; padding: 10px 16px; min-height: 44px;
  cursor: pointer; border: 1px solid var(--accent); }
button.primary { background: var(--accent); color: #fff; }
button.primary:hover { background: var(--accent-dark); }
button.secondary { background: #fff; color: var(--accent); }
button:focus-visible { outline: 3px solid #9db0ff; outline-offset: 2px; }
button[aria-disabled="true"] { opacity: .65; cursor: progress; }
.notice { border-radius: 8px; padding: 10px 12px; margin: 0 0 12px; }
.notice.info { background: #eef2ff; }
.notice.error { background: #fdecea; color: var(--danger); }
.notice.success { background: #e7f6ee; color: var(--ok); }
.muted { color: var(--muted); }
.status { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
h2:focus { outline: 2px solid var(--accent); outline-offset: 3px; border-radius: 4px; }
`;

// --- money and numbers: integers in, text out --------------------------------------------------

function fractionDigits(currency) {
  return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
    .maximumFractionDigits;
}

// 1234 minor units with 2 digits -> "12.34", as a string, so no float ever touches the amount.
export function decimalString(minor, digits) {
  const negative = minor < 0;
  const text = String(Math.abs(minor)).padStart(digits + 1, "0");
  const whole = digits ? text.slice(0, -digits) : text;
  const frac = digits ? "." + text.slice(-digits) : "";
  return (negative ? "-" : "") + whole + frac;
}

export function formatMoney(money, locale) {
  if (!money) return "";
  const { amount_minor: minor, currency } = money;
  const format = new Intl.NumberFormat(locale, { style: "currency", currency });
  // A decimal string: formatted exactly by Intl.NumberFormat v3 (ES2023), never a float sum.
  return format.format(decimalString(minor, fractionDigits(currency)));
}

export function formatCount(value, locale) {
  return new Intl.NumberFormat(locale).format(value);
}

export function formatDate(iso, locale) {
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeZone: "UTC" })
    .format(new Date(iso));
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export class NetworkError extends Error {}

// The API's answer as { status, body, headers }; a failed connection or a timeout throws
// NetworkError (the caller decides whether a retry is safe).
export async function jsonRequest(url, token, { method = "GET", body, headers = {} } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(url, {
      method,
      headers: {
        Accept: "application/json",
        Authorization: `Bearer ${token || ""}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    return { status: response.status, body: payload, headers: response.headers };
  } catch (error) {
    throw new NetworkError(error && error.message ? error.message : "network error");
  } finally {
    clearTimeout(timer);
  }
}

export function problemText(problem, fallback) {
  return (problem && (problem.detail || problem.title)) || fallback;
}
