// Upshift pricing table: <upshift-pricing-table api-base session-token account-id [interval]>.
// Plain ES module, no build step, no dependency. It shows the catalog's tiers with what each
// includes, monthly or yearly, marks the account's current plan, and for every higher tier the
// exact amount due today; an upgrade is one confirmed click, charged exactly what was shown
// (POST .../upgrades with the target and the amount: a moved price is refused, then re-shown).
//
// Events (bubbling, composed): `upshift-upgraded` (detail: the upgrade response),
// `upshift-contact-sales` (detail: { account_id, tier, request }) once Upshift recorded the request
// (POST .../sales-requests: a signal delivered to the sales team through the outbox)
// and `upshift-session-expired` (the host should issue a new session token and set it).

import {
  BASE_STYLE,
  el,
  formatCount,
  formatDate,
  formatMoney,
  jsonRequest,
  NetworkError,
  problemText,
} from "./upshift-core.js";

const INTERVAL_NAMES = { month: "Monthly", year: "Yearly" };
const PER = { month: "month", year: "year" };
const CHANGED_CODES = new Set(["quote_changed", "state_changed", "offer_expired"]);

const STYLE = `${BASE_STYLE}
.table { border: 1px solid var(--line); border-radius: 12px; padding: 16px; background: #fff; }
.head { display: flex; flex-wrap: wrap; align-items: center; justify-content: space-between;
  gap: 8px 16px; margin: 0 0 12px; }
h2 { font-size: 1.15rem; margin: 0; }
h3 { font-size: 1.05rem; margin: 0; }
fieldset { border: 0; margin: 0; padding: 0; display: flex; gap: 4px; }
legend { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
.interval { display: inline-flex; align-items: center; gap: 6px; min-height: 44px;
  padding: 0 12px; border: 1px solid var(--line); border-radius: 8px; cursor: pointer; }
.interval:has(input:checked) { border-color: var(--accent); background: #eef2ff; font-weight: 600; }
.interval:has(input:focus-visible) { outline: 3px solid #9db0ff; outline-offset: 2px; }
.tiers { list-style: none; margin: 0; padding: 0; display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); }
.tier { border: 1px solid var(--line); border-radius: 10px; padding: 14px; display: flex;
  flex-direction: column; gap: 8px; min-width: 0; overflow-wrap: anywhere; }
.tier.current { border: 2px solid var(--accent); }
.badge { align-self: flex-start; font-size: .75rem; font-weight: 700; text-transform: uppercase;
  letter-spacing: .04em; color: var(--accent); background: #eef2ff; border-radius: 999px;
  padding: 2px 8px; }
.price { font-size: 1.35rem; font-weight: 700; margin: 0; }
.price small { font-size: .85rem; font-weight: 400; color: var(--muted); }
.includes { margin: 0; padding-left: 1.1em; }
.includes li { margin: 0 0 2px; }
.includes .no { color: var(--muted); text-decoration: line-through; }
.due { margin: 0; font-weight: 600; }
.action { margin-top: auto; display: flex; flex-direction: column; gap: 8px; }
.action p { margin: 0; }
.action button { width: 100%; }
p { margin: 0 0 10px; }
@media (max-width: 420px) {
  .table { padding: 12px; }
}
`;

export class UpshiftPricingTable extends HTMLElement {
  static observedAttributes = ["api-base", "session-token", "account-id"];

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
    this.box = el("section", { class: "table", part: "table", "aria-labelledby": "plans-title" });
    this.status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    this.root.append(el("style", {}, STYLE), this.box, this.status);
    this.catalog = null;
    this.options = null;
    this.interval = null;
    this.notice = null; // { kind: "info" | "error" | "success", text }
    this.confirming = null; // the option being confirmed
    this.pendingKey = null; // the Idempotency-Key of the confirmed click, until it has an answer
    this.inFlight = false;
    this.loadSeq = 0;
  }

  connectedCallback() {
    if (!this.started) {
      this.started = true;
      this.load();
    }
  }

  attributeChangedCallback(_name, before, after) {
    if (this.started && before !== after && !this.inFlight) this.load();
  }

  get locale() {
    return this.getAttribute("locale") || navigator.language || "en-US";
  }

  get base() {
    return (this.getAttribute("api-base") || "").replace(/\/+$/, "");
  }

  get accountPath() {
    return `${this.base}/v1/accounts/${encodeURIComponent(this.getAttribute("account-id") || "")}`;
  }

  request(url, options = {}) {
    return jsonRequest(url, this.getAttribute("session-token"), options);
  }

  // Read the catalog (once) and the account's priced options. `notice` stays above the table.
  async load(notice = null) {
    const seq = ++this.loadSeq;
    this.notice = notice;
    if (!this.options) this.render("Loading plans…");
    const catalog = this.catalog
      ? Promise.resolve(this.catalog)
      : fetch(`${this.base}/v1/catalog`).then((r) => (r.ok ? r.json() : null)).catch(() => null);
    let options;
    try {
      options = await this.request(`${this.accountPath}/plan-options`);
    } catch {
      if (seq === this.loadSeq) this.fail("We could not load the plans. Check your connection.");
      return;
    }
    const catalogBody = await catalog;
    if (seq !== this.loadSeq) return; // a newer load superseded this one
    if (options.status === 401) return this.expired();
    if (options.status !== 200 || !(catalogBody || this.catalog)) {
      return this.fail(problemText(options.body, "We could not load the plans."));
    }
    this.catalog = catalogBody || this.catalog;
    this.options = options.body;
    this.interval = this.interval || this.getAttribute("interval") || this.options.current.interval;
    this.error = null;
    this.render(notice ? notice.text : `Plans loaded. You are on ${this.currentName()}.`);
  }

  fail(message) {
    this.error = message;
    this.render(message);
  }

  expired() {
    this.dispatchEvent(new CustomEvent("upshift-session-expired", { bubbles: true, composed: true }));
    this.fail("Your session has expired. Reload the page to see the plans.");
  }

  // --- actions -----------------------------------------------------------------------------

  choose(interval) {
    if (this.interval === interval) return;
    this.interval = interval;
    this.confirming = null;
    this.pendingKey = null;
    this.render(`Showing ${INTERVAL_NAMES[interval].toLowerCase()} prices.`);
  }

  review(option) {
    this.confirming = option;
    this.pendingKey = null;
    this.notice = null;
    const due = formatMoney(option.quote.amount_due_now, this.locale);
    this.render(`Confirm: ${due} due today for ${this.tierName(option.tier)}.`, "[data-confirm]");
  }

  cancel() {
    const option = this.confirming;
    this.confirming = null;
    this.pendingKey = null;
    this.render("Upgrade cancelled.", option ? `[data-upgrade="${option.tier}-${option.interval}"]` : null);
  }

  // "Talk to sales": recorded by Upshift as a signal for the sales team (delivered through the
  // signal outbox), then announced to the host page as `upshift-contact-sales`.
  async contactSales(option) {
    if (this.inFlight) return;
    this.inFlight = true;
    let response;
    try {
      response = await this.request(`${this.accountPath}/sales-requests`, {
        method: "POST",
        body: { tier: option.tier },
      });
    } catch (error) {
      if (!(error instanceof NetworkError)) throw error;
      response = null;
    }
    this.inFlight = false;
    if (response && response.status === 401) return this.expired();
    if (response && (response.status === 200 || response.status === 201)) {
      this.dispatchEvent(new CustomEvent("upshift-contact-sales", {
        bubbles: true,
        composed: true,
        detail: { account_id: this.getAttribute("account-id"), tier: option.tier, request: response.body },
      }));
      this.notice = {
        kind: "success",
        text: `Thanks: our team will contact you about ${this.tierName(option.tier)}.`,
      };
    } else {
      this.notice = {
        kind: "error",
        text: `${problemText(response && response.body, "We could not reach our team.")} Please try again.`,
      };
    }
    this.render(this.notice.text, "[data-notice]");
  }

  async upgrade() {
    const option = this.confirming;
    if (this.inFlight || !option) return; // a second click while the first is out: ignored
    this.inFlight = true;
    // A fresh key per confirmed click; a retry of the same click keeps it, so the server
    // replays the first answer instead of charging twice.
    this.pendingKey = this.pendingKey || crypto.randomUUID();
    this.render("Upgrading…", "[data-confirm]");
    let response;
    try {
      response = await this.request(`${this.accountPath}/upgrades`, {
        method: "POST",
        body: {
          target: option.target,
          expected_amount_due_minor: option.quote.amount_due_now.amount_minor,
        },
        headers: { "Idempotency-Key": this.pendingKey },
      });
    } catch (error) {
      if (!(error instanceof NetworkError)) throw error;
      response = null;
    }
    this.inFlight = false;
    const problem = (response && response.body) || {};
    if (response && response.status === 200) {
      this.pendingKey = null;
      this.confirming = null;
      this.dispatchEvent(new CustomEvent("upshift-upgraded", {
        bubbles: true, composed: true, detail: response.body,
      }));
      const charged = formatMoney(response.body.amount_charged, this.locale);
      await this.load({
        kind: "success",
        text: `You're on ${this.tierName(option.tier)} (${INTERVAL_NAMES[option.interval].toLowerCase()}) now. Charged ${charged} today.`,
      });
      this.focus("[data-notice]");
    } else if (!response || response.status >= 500 || response.status === 429) {
      // Not an answer about the upgrade itself: the same click may be retried with its key.
      this.notice = {
        kind: "error",
        text: `${problemText(problem, "We didn't hear back from billing.")} Retrying is safe: you will not be charged twice.`,
      };
      this.render(this.notice.text, "[data-confirm]");
    } else if (response.status === 401) {
      this.pendingKey = null;
      this.expired();
    } else if (response.status === 409 || CHANGED_CODES.has(problem.code)) {
      this.pendingKey = null;
      this.confirming = null;
      const before = formatMoney(option.quote.amount_due_now, this.locale);
      await this.load({ kind: "info", text: "" });
      const now = this.option(option.tier, option.interval);
      const text = now && now.quote && now.action === "upgrade"
        ? `The price changed: ${formatMoney(now.quote.amount_due_now, this.locale)} due today (was ${before}). Please review it again.`
        : `Your plan changed, so that upgrade (${before} due today) is no longer available.`;
      this.notice = { kind: "info", text };
      this.render(text, "[data-notice]");
    } else {
      this.pendingKey = null;
      this.confirming = response.status === 402 ? option : null;
      const prefix = response.status === 402 ? "Payment declined: " : "";
      this.notice = {
        kind: "error",
        text: `${prefix}${problemText(problem, "The upgrade could not be completed.")} Nothing was charged.`,
      };
      this.render(this.notice.text, "[data-notice]");
    }
  }

  // --- rendering ---------------------------------------------------------------------------

  // Re-render; `focusOn` is a selector inside the table that takes the focus afterwards.
  render(announcement, focusOn = null) {
    this.box.setAttribute("aria-busy", String(!this.options && !this.error));
    this.box.replaceChildren(...this.view().filter(Boolean));
    this.setAttribute("state", this.error ? "error" : !this.options ? "loading"
      : this.inFlight ? "upgrading" : this.confirming ? "confirm" : "ready");
    if (announcement) this.announce(announcement);
    if (focusOn) this.focus(focusOn);
  }

  announce(text) {
    this.status.textContent = "";
    requestAnimationFrame(() => {
      this.status.textContent = text;
    });
  }

  focus(selector) {
    const target = this.box.querySelector(selector);
    if (target) target.focus();
  }

  option(tier, interval) {
    return this.options.options.find((o) => o.tier === tier && o.interval === interval) || null;
  }

  tierName(key) {
    const tier = this.catalog && this.catalog.tiers.find((t) => t.key === key);
    return tier ? tier.name : key;
  }

  currentName() {
    const current = this.options.current;
    return `${this.tierName(current.tier)} (${INTERVAL_NAMES[current.interval].toLowerCase()})`;
  }

  view() {
    const title = el("h2", { id: "plans-title", tabindex: "-1" }, "Plans");
    if (this.error) {
      return [title, el("p", { class: "notice error" }, this.error),
        el("button", { class: "secondary", type: "button", onclick: () => this.load() }, "Try again")];
    }
    if (!this.options) return [title, el("p", { class: "muted" }, "Loading plans…")];
    const intervals = ["month", "year"].filter((i) => this.options.options.some(
      (o) => o.interval === i && o.action !== "contact_sales" && o.action !== "unavailable"));
    const tiers = this.catalog.tiers.filter((t) => this.option(t.key, this.interval));
    return [
      el("div", { class: "head" }, title, this.intervalPicker(intervals)),
      this.noticeView(),
      el("ul", { class: "tiers", "data-testid": "tiers" }, tiers.map((tier) => this.tierView(tier))),
    ];
  }

  intervalPicker(intervals) {
    if (intervals.length < 2) return null;
    return el("fieldset", {},
      el("legend", {}, "Billing period"),
      intervals.map((interval) => el("label", { class: "interval" },
        el("input", {
          type: "radio", name: "interval", value: interval, checked: interval === this.interval,
          onchange: () => this.choose(interval),
        }),
        INTERVAL_NAMES[interval])));
  }

  noticeView() {
    if (!this.notice || !this.notice.text) return null;
    return el("p", {
      class: `notice ${this.notice.kind}`, tabindex: "-1", "data-notice": true,
      "data-testid": "table-notice",
    }, this.notice.text);
  }

  tierView(tier) {
    const option = this.option(tier.key, this.interval);
    const current = option.action === "current";
    const nameId = `tier-${tier.key}`;
    return el("li", {
      class: `tier${current ? " current" : ""}`, "data-tier": tier.key,
      "aria-labelledby": nameId, "aria-current": current ? "true" : false,
    },
      el("h3", { id: nameId }, tier.name),
      current ? el("span", { class: "badge" }, "Current plan") : null,
      this.priceView(tier, option),
      this.includesView(tier),
      el("div", { class: "action" }, this.actionView(tier, option)));
  }

  priceView(tier, option) {
    if (!option.recurring) return el("p", { class: "price" }, "Custom pricing");
    const seats = option.target.seats;
    return el("p", { class: "price" },
      formatMoney(option.recurring, this.locale),
      el("small", {}, ` / ${PER[option.interval]} · ${formatCount(seats, this.locale)} seat${seats === 1 ? "" : "s"}`));
  }

  includesView(tier) {
    const features = this.catalog.features;
    // "Projects" reads "50 projects" in a sentence; an acronym ("API calls") stays as it is.
    const inSentence = (name) => (/^[A-Z][a-z]/.test(name) ? name.toLowerCase() : name);
    const items = [el("li", {}, `Up to ${formatCount(tier.seats.max, this.locale)} seats, ${formatCount(tier.seats.included, this.locale)} included`)];
    for (const feature of features) {
      if (!(feature.key in tier.limits)) continue;
      const limit = tier.limits[feature.key];
      if (limit === false) {
        items.push(el("li", {}, el("span", { class: "no" }, feature.name),
          el("span", { class: "status" }, " (not included)")));
      } else if (limit === true) {
        items.push(el("li", {}, feature.name));
      } else if (limit === null) {
        items.push(el("li", {}, `Unlimited ${inSentence(feature.name)}`));
      } else {
        const per = feature.kind === "metered" ? " a month" : "";
        items.push(el("li", {}, `${formatCount(limit, this.locale)} ${inSentence(feature.name)}${per}`));
      }
    }
    return el("ul", { class: "includes", "aria-label": `${tier.name} includes` }, items);
  }

  actionView(tier, option) {
    switch (option.action) {
      case "current":
        return el("p", { class: "muted" }, "Your current plan");
      case "contact_sales":
        return el("button", {
          class: "secondary", type: "button", "data-sales": tier.key,
          onclick: () => this.contactSales(option),
        }, "Talk to sales");
      case "downgrade":
        return el("p", { class: "muted" }, "Lower than your plan");
      case "unavailable":
        return el("p", { class: "muted" }, option.reason || "Not available for your plan");
      default:
        return this.confirming && this.confirming.tier === option.tier
          && this.confirming.interval === option.interval
          ? this.confirmView(tier, option) : this.upgradeView(tier, option);
    }
  }

  upgradeView(tier, option) {
    const due = formatMoney(option.quote.amount_due_now, this.locale);
    return [
      el("p", { class: "due", "data-testid": `due-${tier.key}` }, `${due} due today`),
      el("button", {
        class: "primary", type: "button", "data-upgrade": `${tier.key}-${option.interval}`,
        "aria-label": `Upgrade to ${tier.name}, ${due} due today`,
        onclick: () => this.review(option),
      }, `Upgrade to ${tier.name}`),
    ];
  }

  confirmView(tier, option) {
    const quote = option.quote;
    const due = formatMoney(quote.amount_due_now, this.locale);
    const busy = this.inFlight;
    return [
      el("p", {}, `${due} is charged to your card on file now, then `
        + `${formatMoney(quote.new_recurring, this.locale)} / ${PER[option.interval]} from `
        + `${formatDate(quote.next_invoice_date, this.locale)}.`),
      // aria-disabled, not disabled: the button keeps focus while the upgrade runs, and
      // upgrade() ignores clicks while one is in flight (a double click charges once).
      el("button", {
        class: "primary", type: "button", "data-confirm": true,
        "aria-disabled": busy ? "true" : false, onclick: () => this.upgrade(),
      }, busy ? "Upgrading…" : `Upgrade now · ${due}`),
      el("button", {
        class: "secondary", type: "button", "aria-disabled": busy ? "true" : false,
        onclick: () => { if (!this.inFlight) this.cancel(); },
      }, "Cancel"),
    ];
  }
}

if (!customElements.get("upshift-pricing-table")) {
  customElements.define("upshift-pricing-table", UpshiftPricingTable);
}
