// Upshift in-app upgrade widget: <upshift-offers api-base session-token account-id>.
// Plain ES module, no build step, no dependency. It reads the account's usage and its top
// upgrade offer, shows the exact amount due today, asks for a confirmation and upgrades in one
// click. Money arrives as integer minor units and is only ever formatted, never added up.
//
// Events (bubbling, composed): `upshift-upgraded` (detail: the upgrade response) and
// `upshift-session-expired` (the host should issue a new session token and set the attribute).
//
// The offer funnel counts offers customers saw: once an offer's card is at least half on screen,
// the widget reports it (PUT .../seen-offers/{offer id}, once per offer id).

import {
  BASE_STYLE,
  el,
  formatCount,
  formatDate,
  formatMoney,
  jsonRequest,
  problemText,
} from "./upshift-core.js";

export { decimalString, formatMoney } from "./upshift-core.js";

const CHANGED_CODES = new Set(["quote_changed", "state_changed", "offer_expired"]);

const STYLE = `${BASE_STYLE}
.card { border: 1px solid var(--line); border-radius: 12px; padding: 16px; background: #fff;
  max-width: 100%; overflow-wrap: anywhere; }
h2 { font-size: 1.05rem; margin: 0 0 6px; }
h3 { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  margin: 0 0 8px; }
p { margin: 0 0 10px; }
.meters { margin: 0 0 14px; padding: 0 0 12px; border-bottom: 1px solid var(--line); }
.meter { margin: 0 0 8px; }
.meter-label { display: flex; justify-content: space-between; gap: 8px; font-size: .9rem; }
.meter-figure { color: var(--muted); white-space: nowrap; }
.bar { height: 8px; border-radius: 4px; background: #edf0f5; overflow: hidden; margin-top: 3px; }
.bar > span { display: block; height: 100%; background: var(--accent); }
.bar.warn > span { background: #c77c02; }
.bar.full > span { background: var(--danger); }
.reasons { margin: 0 0 10px; padding-left: 1.1em; color: var(--muted); }
.price { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0 0 12px; }
.price dt { color: var(--muted); }
.price dd { margin: 0; font-weight: 600; text-align: right; }
.price dd.due { font-size: 1.25rem; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; }
a.button { font-weight: 600; border-radius: 8px; padding: 10px 16px; min-height: 44px;
  box-sizing: border-box; display: inline-flex; align-items: center; text-decoration: none;
  border: 1px solid var(--accent); }
a.button.primary { background: var(--accent); color: #fff; }
a.button:focus-visible { outline: 3px solid #9db0ff; outline-offset: 2px; }
@media (max-width: 420px) {
  .card { padding: 12px; }
  .actions button, .actions a.button { flex: 1 1 100%; }
}
`;

// --- the element ----------------------------------------------------------------------------

export class UpshiftOffers extends HTMLElement {
  static observedAttributes = ["api-base", "session-token", "account-id"];

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
    this.card = el("section", { class: "card", part: "card", "aria-label": "Your plan" });
    // One live region that outlives every re-render, so screen readers hear each change.
    this.status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    this.root.append(el("style", {}, STYLE), this.card, this.status);
    this.catalog = null;
    this.usage = null;
    this.offer = null;
    this.state = "loading";
    this.notice = null;
    this.pendingKey = null; // the Idempotency-Key of the confirmed click, until it has an answer
    this.inFlight = false;
    this.loadSeq = 0;
    this.seenIds = new Set(); // offers reported seen (or being reported)
    this.unseen = null; // the offer on display, until it has been on screen
    this.onScreen = false;
  }

  connectedCallback() {
    if (!this.visibility && typeof IntersectionObserver === "function") {
      this.visibility = new IntersectionObserver((entries) => {
        this.onScreen = entries.some((entry) => entry.isIntersecting);
        this.reportSeen();
      }, { threshold: 0.5 });
      this.visibility.observe(this.card);
    }
    if (!this.started) {
      this.started = true;
      this.refresh();
    }
  }

  stopPolling() {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  disconnectedCallback() {
    this.stopPolling();
    if (this.visibility) this.visibility.disconnect();
    this.visibility = null;
    this.onScreen = false;
  }

  // The funnel's "seen": the offer on display, once it is on screen, once per offer id. A failed
  // report is forgotten, so the next time the offer is on screen it is reported again.
  reportSeen() {
    const offer = this.unseen;
    const visible = this.onScreen || typeof IntersectionObserver !== "function";
    if (!offer || !visible || this.seenIds.has(offer.id)) return;
    this.unseen = null;
    this.seenIds.add(offer.id);
    const forget = () => this.seenIds.delete(offer.id);
    this.request(`${this.accountPath}/seen-offers/${encodeURIComponent(offer.id)}`, { method: "PUT" })
      .then((response) => { if (response.status !== 200) forget(); }, forget);
  }

  attributeChangedCallback(_name, before, after) {
    if (this.started && before !== after && !this.inFlight) this.refresh();
  }

  get locale() {
    return this.getAttribute("locale") || navigator.language || "en-US";
  }

  get accountPath() {
    const base = (this.getAttribute("api-base") || "").replace(/\/+$/, "");
    const account = encodeURIComponent(this.getAttribute("account-id") || "");
    return `${base}/v1/accounts/${account}`;
  }

  request(url, options = {}) {
    return jsonRequest(url, this.getAttribute("session-token"), options);
  }

  // Re-read usage and offers. `notice` is shown above the result (e.g. "the price changed").
  async refresh(notice = null) {
    if (this.inFlight) return; // never swap the offer out from under a running upgrade
    const seq = ++this.loadSeq;
    this.notice = notice;
    if (!this.offer && this.state !== "success") this.show("loading", "Loading your plan…");
    const base = (this.getAttribute("api-base") || "").replace(/\/+$/, "");
    const catalog = this.catalog
      ? Promise.resolve(this.catalog)
      : fetch(`${base}/v1/catalog`).then((r) => (r.ok ? r.json() : null)).catch(() => null);
    const usage = this.request(`${this.accountPath}/usage`).catch(() => null);
    let offers;
    try {
      offers = await this.request(`${this.accountPath}/upgrade-offers`);
    } catch {
      if (seq === this.loadSeq) this.fail("We could not load your plan. Check your connection.");
      return;
    }
    const [catalogBody, usageResponse] = await Promise.all([catalog, usage]);
    if (seq !== this.loadSeq) return; // a newer refresh superseded this one
    this.catalog = catalogBody || this.catalog;
    if (usageResponse && usageResponse.status === 200) {
      this.usage = usageResponse.body.features;
      this.removeAttribute("usage-unavailable");
    } else {
      // The account's usage is optional decoration: without it the offer still works.
      this.usage = null;
      this.setAttribute("usage-unavailable", String(usageResponse ? usageResponse.status : 0));
    }
    if (offers.status === 401) return this.expired();
    if (offers.status !== 200) {
      return this.fail(problemText(offers.body, "We could not load your plan."));
    }
    this.showOffers(offers.body.offers, notice);
  }

  showOffers(offers, notice = null) {
    const top = offers[0] || null;
    this.offer = top;
    this.providerPrice = null;
    const due = top && top.quote ? formatMoney(top.quote.amount_due_now, this.locale) : null;
    if (notice && notice.kind === "changed") {
      const text = due ? `The price changed: ${due} due today.` : "That offer is no longer available.";
      this.show(top ? "offer" : "none", text);
    } else if (!top) {
      this.show("none", "No upgrade needed right now.");
    } else {
      this.show("offer", `Upgrade available: ${this.offerTitle(top)}${due ? `, ${due} due today` : ""}.`);
    }
  }

  expired() {
    this.offer = null;
    this.dispatchEvent(new CustomEvent("upshift-session-expired", { bubbles: true, composed: true }));
    this.show("expired", "Your session has expired.");
  }

  fail(message) {
    this.errorText = message;
    this.show("error", message);
  }

  // --- actions -----------------------------------------------------------------------------

  review() {
    this.notice = null;
    this.show("confirm", `Confirm: ${formatMoney(this.offer.quote.amount_due_now, this.locale)} due today.`, true);
  }

  cancel() {
    this.pendingKey = null;
    this.notice = null;
    this.show("offer", "Upgrade cancelled.", true);
  }

  async upgrade() {
    if (this.inFlight || !this.offer) return; // a second click while the first is out: ignored
    this.inFlight = true;
    // A fresh key per confirmed click; a retry of the same click keeps it, so the server
    // replays the first answer instead of charging twice.
    this.pendingKey = this.pendingKey || crypto.randomUUID();
    // While the bank's confirmation is awaited, asking again (same key) only reads the answer.
    const checking = this.state === "authenticate";
    this.stopPolling();
    if (!checking) this.show("upgrading", "Upgrading…", false);
    let response;
    try {
      const body = { offer_token: this.offer.offer_token };
      if (this.providerPrice) body.expected_amount_due_minor = this.providerPrice.amount_due.amount_minor;
      response = await this.request(`${this.accountPath}/upgrades`, {
        method: "POST",
        body,
        headers: { "Idempotency-Key": this.pendingKey },
      });
    } catch {
      this.inFlight = false;
      this.show("retry", "The connection failed before we heard back. Retrying is safe.", true);
      return;
    }
    this.inFlight = false;
    const problem = response.body || {};
    if (response.status === 200) {
      this.pendingKey = null;
      this.result = response.body;
      this.dispatchEvent(
        new CustomEvent("upshift-upgraded", { bubbles: true, composed: true, detail: response.body }),
      );
      this.show("success", `Upgrade complete. Charged ${formatMoney(response.body.amount_charged, this.locale)}.`, true);
      await this.reloadAfterUpgrade();
    } else if (response.status >= 500 || response.status === 429) {
      // Not an answer about the upgrade itself: the same click may be retried with its key.
      this.retryText = problemText(problem, "Billing is unavailable right now.");
      this.show("retry", `${this.retryText} Retrying is safe.`, true);
    } else if (response.status === 402 && problem.code === "requires_action") {
      // The bank wants the customer to confirm (3-D Secure) on the billing provider's page.
      // Nothing is charged yet; the same key asks again until the payment arrives.
      this.action = problem;
      if (!checking) {
        this.show("authenticate", "Your bank asks you to confirm this payment.", true);
      }
      this.pollTimer = setTimeout(() => this.upgrade(), this.pollMs || 5000);
    } else if (response.status === 402) {
      this.pendingKey = null;
      this.declineText = problemText(problem, "Your payment was declined.");
      this.show("declined", `Payment declined: ${this.declineText}`, true);
    } else if (response.status === 409 && problem.code === "quote_changed" && problem.amount_due &&
               !this.providerPrice) {
      // The billing provider prices this very offer differently from the list price (a
      // discount, tax, a credit balance): show its amount, and confirm exactly that.
      this.pendingKey = null;
      this.providerPrice = { amount_due: problem.amount_due, price_explained: problem.price_explained };
      const now = formatMoney(problem.amount_due, this.locale);
      this.show("confirm", `Your price is ${now} due today. Please review it.`, true);
    } else if (response.status === 409 || CHANGED_CODES.has(problem.code)) {
      this.providerPrice = null;
      this.pendingKey = null;
      const before = this.offer.quote.amount_due_now;
      this.offer = null;
      this.state = "loading";
      await this.refresh({ kind: "changed", before });
      this.focusHeading();
    } else if (response.status === 401) {
      this.pendingKey = null;
      this.expired();
    } else {
      this.pendingKey = null;
      this.fail(problemText(problem, "The upgrade could not be completed."));
      this.focusHeading();
    }
  }

  // The plan changed: read the meters (new limits, seats) and the offers again at once, while the
  // success message stays up, so nothing on screen describes the plan before the upgrade.
  async reloadAfterUpgrade() {
    const seq = ++this.loadSeq;
    const [usage, offers] = await Promise.all([
      this.request(`${this.accountPath}/usage`).catch(() => null),
      this.request(`${this.accountPath}/upgrade-offers`).catch(() => null),
    ]);
    if (seq !== this.loadSeq || this.state !== "success") return;
    if (usage && usage.status === 200) this.usage = usage.body.features;
    this.nextOffers = offers && offers.status === 200 ? offers.body.offers : null;
    this.show("success", null);
  }

  done() {
    this.result = null;
    this.offer = null;
    const next = this.nextOffers;
    this.nextOffers = null;
    if (next) {
      this.notice = null;
      this.showOffers(next);
      this.focusHeading();
      return;
    }
    this.state = "loading";
    this.refresh().then(() => this.focusHeading());
  }

  // --- rendering ---------------------------------------------------------------------------

  // Re-render for a state. Focus follows the user: it moves into the new view when asked to or
  // when it was inside the widget already, never when a background refresh re-renders.
  show(state, announcement, moveFocus = false) {
    const hadFocus = this.root.activeElement !== null;
    this.state = state;
    this.unseen = state === "offer" ? this.offer : null;
    this.setAttribute("state", state);
    this.card.setAttribute("aria-busy", String(state === "loading" || state === "upgrading"));
    this.card.replaceChildren(...this.view().filter(Boolean));
    if (announcement) this.announce(announcement);
    if (moveFocus || hadFocus) this.focusPrimary();
    this.reportSeen();
  }

  announce(text) {
    // Clearing first makes a repeated message (two declines in a row) be read again.
    this.status.textContent = "";
    requestAnimationFrame(() => {
      this.status.textContent = text;
    });
  }

  focusPrimary() {
    const target = this.card.querySelector("[data-autofocus]") || this.card.querySelector("h2");
    if (target) target.focus();
  }

  focusHeading() {
    const heading = this.card.querySelector("h2");
    if (heading) heading.focus();
  }

  heading(text) {
    return el("h2", { tabindex: "-1" }, text);
  }

  view() {
    const meters = this.state === "loading" ? null : this.meters();
    switch (this.state) {
      case "loading":
        return [this.heading("Your plan"), el("p", { class: "muted" }, "Loading your plan…")];
      case "error":
        return [
          this.heading("Your plan"),
          el("p", { class: "notice error" }, this.errorText),
          el("div", { class: "actions" },
            el("button", { class: "secondary", type: "button", onclick: () => this.refresh() }, "Try again")),
        ];
      case "expired":
        return [
          this.heading("Your plan"),
          el("p", { class: "notice error" }, "Your session has expired. Reload the page to see your plan."),
        ];
      case "none":
        return [meters, this.heading("You're all set"), this.noticeView(),
          el("p", { class: "muted" }, "No upgrade is needed right now. We'll let you know when you get close to a limit.")];
      case "offer":
        return [meters, this.offerView()];
      case "confirm":
      case "upgrading":
        return [meters, this.confirmView()];
      case "retry":
        return [meters, this.retryView()];
      case "declined":
        return [meters, this.declinedView()];
      case "authenticate":
        return [meters, this.authenticateView()];
      case "success":
        return [meters, this.successView()];
      default:
        return [];
    }
  }

  noticeView() {
    if (!this.notice) return null;
    if (this.notice.kind === "changed") {
      const was = formatMoney(this.notice.before, this.locale);
      if (!this.offer || !this.offer.quote) {
        return el("p", { class: "notice info" }, `Your plan changed, so that offer (${was} due today) is no longer available.`);
      }
      const now = formatMoney(this.offer.quote.amount_due_now, this.locale);
      return el("p", { class: "notice info", "data-testid": "price-changed" },
        `The price changed: ${now} due today (was ${was}). Please review it again.`);
    }
    return null;
  }

  featureName(key) {
    if (key === "seats") return "Seats";
    const feature = this.catalog && this.catalog.features.find((f) => f.key === key);
    return feature ? feature.name : key.replaceAll("_", " ");
  }

  tierName(key) {
    const tier = this.catalog && this.catalog.tiers.find((t) => t.key === key);
    return tier ? tier.name : key.charAt(0).toUpperCase() + key.slice(1);
  }

  addonName(key) {
    const addon = this.catalog && this.catalog.addons.find((a) => a.key === key);
    return addon ? addon.name : key.replaceAll("_", " ");
  }

  meters() {
    if (!this.usage) return null;
    const rows = this.usage
      .filter((f) => typeof f.limit === "number" || (f.limit === null && f.kind !== "boolean"))
      .sort((a, b) => (a.feature === "seats" ? -1 : b.feature === "seats" ? 1 : 0));
    if (!rows.length) return null;
    return el("div", { class: "meters", "data-testid": "meters" },
      el("h3", {}, "Usage"),
      rows.map((f) => {
        const name = this.featureName(f.feature);
        const used = formatCount(f.used, this.locale);
        if (f.limit === null) {
          return el("div", { class: "meter" },
            el("div", { class: "meter-label" }, el("span", {}, name),
              el("span", { class: "meter-figure" }, `${used} · unlimited`)));
        }
        const percent = f.utilization_percent ?? 0;
        const level = percent >= 100 ? "full" : percent >= 80 ? "warn" : "";
        const figure = f.feature === "seats"
          ? `${used} of ${formatCount(f.limit, this.locale)} seats in use`
          : `${used} of ${formatCount(f.limit, this.locale)}`;
        return el("div", { class: "meter", "data-feature": f.feature },
          el("div", { class: "meter-label" }, el("span", {}, name),
            el("span", { class: "meter-figure" }, figure)),
          el("div", {
            class: `bar ${level}`, role: "meter", "aria-label": name,
            "aria-valuemin": 0, "aria-valuemax": f.limit, "aria-valuenow": Math.min(f.used, f.limit),
            "aria-valuetext": `${figure} (${percent}%)`,
          }, el("span", { style: `width:${Math.min(percent, 100)}%` })));
      }));
  }

  offerTitle(offer) {
    const quote = offer.quote;
    if (offer.action === "contact_sales") return `Talk to us about ${this.tierName(offer.target_tier)}`;
    if (offer.engine === "seat" && quote) {
      const added = quote.target.seats - quote.current.seats;
      return `Add ${added} seat${added === 1 ? "" : "s"}`;
    }
    if (offer.engine === "addon" && quote) {
      const key = Object.keys(quote.target.addons)
        .find((k) => (quote.target.addons[k] || 0) > (quote.current.addons[k] || 0));
      return key ? `Add ${this.addonName(key)}` : "Add an add-on";
    }
    return `Upgrade to ${this.tierName(offer.target_tier)}`;
  }

  reasonText(code) {
    let match = code.match(/^(.+)_at_(\d+)_percent$/);
    if (match && match[1] === "seats") return `${match[2]}% of your purchased seats are in use.`;
    if (match) return `${this.featureName(match[1])}: ${match[2]}% of your limit used.`;
    match = code.match(/^([a-z0-9]+)_raises_(.+)$/);
    if (match) return `${this.tierName(match[1])} raises your ${this.featureName(match[2]).toLowerCase()} limit.`;
    match = code.match(/^([a-z0-9]+)_unlocks_(.+)$/);
    if (match) return `${this.tierName(match[1])} includes ${this.featureName(match[2])}.`;
    if (code === "high_contract_value") return "A team your size gets a tailored contract.";
    if (code === "no_self_serve_step_up") return "There is no self-serve plan above yours.";
    return code.replaceAll("_", " ");
  }

  // "Starter, 4 seats, API pack": the tier, the seats and every add-on, so an add-on offer
  // shows what changes ("2 × API pack" for a quantity above one).
  planLine(plan) {
    const seats = `${plan.seats} seat${plan.seats === 1 ? "" : "s"}`;
    const addons = Object.entries(plan.addons || {})
      .filter(([, quantity]) => quantity > 0)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, quantity]) => `${quantity > 1 ? `${quantity} × ` : ""}${this.addonName(key)}`);
    return [`${this.tierName(plan.tier)}`, seats, ...addons].join(", ");
  }

  priceView(quote) {
    const per = quote.interval === "year" ? "year" : "month";
    const due = quote.amount_due_now;
    return el("dl", { class: "price" },
      el("dt", {}, due.amount_minor < 0 ? "Credit today" : "Due today"),
      el("dd", { class: "due", "data-testid": "amount-due" }, formatMoney(due, this.locale)),
      el("dt", {}, "Then"),
      el("dd", {}, `${formatMoney(quote.new_recurring, this.locale)} / ${per}`),
      el("dt", {}, "Next invoice"),
      el("dd", {}, formatDate(quote.next_invoice_date, this.locale)));
  }

  offerView() {
    const offer = this.offer;
    const reasons = el("ul", { class: "reasons", "data-testid": "reasons" },
      offer.reasons.map((code) => el("li", {}, this.reasonText(code))));
    if (offer.action === "contact_sales" || !offer.quote) {
      return el("div", {}, this.heading(this.offerTitle(offer)), this.noticeView(), reasons,
        el("p", {}, "Your account team will reach out with a plan that fits. No payment is taken here."));
    }
    return el("div", {},
      el("h3", {}, "Recommended for you"),
      this.heading(this.offerTitle(offer)),
      this.noticeView(),
      reasons,
      el("p", { class: "muted", "data-testid": "plan-change" }, `${this.planLine(offer.quote.current)} → ${this.planLine(offer.quote.target)}`),
      this.priceView(offer.quote),
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", "data-autofocus": true, onclick: () => this.review() },
          "Review upgrade")));
  }

  confirmView() {
    const quote = this.offer.quote;
    // The billing provider's own price once it named one (a discount, tax, a credit balance).
    const provider = this.providerPrice;
    const due = formatMoney(provider ? provider.amount_due : quote.amount_due_now, this.locale);
    const busy = this.state === "upgrading";
    return el("div", {},
      this.heading("Confirm your upgrade"),
      el("p", {}, `${this.planLine(quote.current)} → ${this.planLine(quote.target)}.`),
      provider ? null : this.priceView(quote),
      provider
        ? el("p", { class: "notice info", "data-testid": "provider-price" },
          `Your price with your discounts, tax and credit: ${due} due today` +
          (provider.price_explained ? ` (${provider.price_explained}).` : "."))
        : null,
      el("p", { class: "muted" }, `${due} is charged to your card on file now.`),
      el("div", { class: "actions" },
        // aria-disabled, not disabled: the button keeps focus while the upgrade runs, and
        // upgrade() ignores clicks while one is in flight (a double click charges once).
        el("button", {
          class: "primary", type: "button", "data-autofocus": true, "aria-disabled": busy ? "true" : false,
          onclick: () => this.upgrade(),
        }, busy ? "Upgrading…" : `Upgrade now · ${due}`),
        el("button", {
          class: "secondary", type: "button", "aria-disabled": busy ? "true" : false,
          onclick: () => { if (!this.inFlight) this.cancel(); },
        }, "Cancel")));
  }

  retryView() {
    return el("div", {},
      this.heading("We didn't hear back"),
      el("p", { class: "notice error" },
        this.retryText || "The connection dropped before the upgrade was confirmed."),
      el("p", {}, "Retrying is safe: you will not be charged twice."),
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", "data-autofocus": true, onclick: () => this.upgrade() },
          "Retry upgrade"),
        el("button", { class: "secondary", type: "button", onclick: () => { this.retryText = null; this.pendingKey = null; this.done(); } },
          "Cancel")));
  }

  authenticateView() {
    const action = this.action || {};
    const due = action.amount_due ? formatMoney(action.amount_due, this.locale) : "";
    return el("div", {},
      this.heading("Confirm the payment with your bank"),
      el("p", { class: "notice info", "data-testid": "requires-action" },
        `Your bank asks you to confirm this payment${due ? ` of ${due}` : ""}. ` +
        "Nothing is charged and your plan is unchanged until you do."),
      el("div", { class: "actions" },
        action.hosted_invoice_url
          ? el("a", { class: "button primary", href: action.hosted_invoice_url, target: "_blank",
            rel: "noopener", "data-autofocus": true }, "Confirm payment")
          : null,
        el("button", { class: "secondary", type: "button", onclick: () => this.upgrade() },
          "I've confirmed it"),
        el("button", { class: "secondary", type: "button",
          onclick: () => { this.stopPolling(); this.pendingKey = null; this.action = null; this.done(); } },
          "Not now")),
      el("p", { class: "muted" }, "This page updates by itself once the payment arrives."));
  }

  declinedView() {
    return el("div", {},
      this.heading("Payment declined"),
      el("p", { class: "notice error", "data-testid": "decline-reason" }, this.declineText),
      el("p", {}, "Nothing was charged and your plan is unchanged. Update your card and try again."),
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", "data-autofocus": true, onclick: () => this.review() },
          "Try again"),
        el("button", { class: "secondary", type: "button", onclick: () => this.done() }, "Not now")));
  }

  successView() {
    const result = this.result;
    return el("div", {},
      this.heading("You're upgraded"),
      el("p", { class: "notice success", "data-testid": "success" },
        `Now on ${this.planLine(result.target)}. Charged ${formatMoney(result.amount_charged, this.locale)} today.`),
      el("p", { class: "muted" }, `New monthly price: ${formatMoney(result.new_mrr, this.locale)}.`),
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", "data-autofocus": true, onclick: () => this.done() },
          "Done")));
  }
}

if (!customElements.get("upshift-offers")) customElements.define("upshift-offers", UpshiftOffers);
