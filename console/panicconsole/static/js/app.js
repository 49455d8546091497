/* The operator's screen: the queue, the selected alarm, the map, gateways and the event log,
   kept live over server-sent events.

   Live feed: /api/state gives a snapshot and the number of the last change in it; the stream
   sends every change after that number, each with its own number (SSE id). After a lost
   connection the page asks for the changes after the last number it applied, so nothing is
   missed, and a change it already has (same or lower number, or an older alarm version) is
   ignored, so nothing is doubled. The server's heartbeat sets the clock; without it the
   clock freezes and turns red, and a banner says the connection is lost. */
"use strict";

const App = {
  me: null,
  cfg: null,
  alarms: new Map(),      // id -> alarm (open lines)
  gateways: new Map(),    // id -> gateway
  log: [],                // newest first
  logIds: new Set(),
  lastSeq: 0,
  es: null,
  connected: false,
  lastHeard: 0,           // Date.now() of the last message from the stream
  serverOffset: 0,        // server clock - local clock, ms
  lostSince: null,
  reconnectTimer: null,
  selected: null,
  detail: null,
  detailVersion: null,
  renderTimer: null,
  shiftStarted: false,
  stats: {connects: 0, applied: 0, ignored: 0},

  async start() {
    const r = await PC.api("GET", "/api/me");
    if (!r.ok) return;
    this.me = r.data.user;
    this.cfg = r.data;
    PC.csrf = r.data.csrf;
    await PC.loadLang(this.me.lang);
    document.getElementById("lang").value = this.me.lang;
    document.getElementById("me-name").textContent =
      `${this.me.name} (${PC.t("role_" + this.me.role)})`;
    if (this.me.role === "admin") document.getElementById("admin-link").classList.remove("hidden");
    if (this.me.role !== "operator") document.getElementById("supervisor-panel").classList.remove("hidden");
    Sound.init();
    Sound.onChange(() => this.renderSound());
    MapView.init(this.cfg.map, (id) => this.select(id));
    this.bind();
    await this.loadState();
    this.connect();
    setInterval(() => this.everySecond(), 500);
    if (this.me.role !== "operator") {
      this.loadSupervisor();
      setInterval(() => this.loadSupervisor(), 3000);
    }
    this.renderSound();
    window.pcReadyMs = performance.now();  // navigation start -> usable queue (bench reads it)
    document.body.dataset.ready = "1";
  },

  bind() {
    document.getElementById("start-shift").addEventListener("click", () => this.startShift());
    document.getElementById("sound-status").addEventListener("click", () => Sound.unlock());
    document.getElementById("sound-blocked").addEventListener("click", () => this.startShift());
    // Any click is a user gesture that lets the browser play sound.
    document.addEventListener("click", () => { if (Sound.blocked()) Sound.unlock(); }, true);
    document.getElementById("lang").addEventListener("change", (e) => this.setLang(e.target.value));
    document.getElementById("logout").addEventListener("click", async () => {
      await PC.api("POST", "/logout");
      location.href = "/login";
    });
    document.getElementById("new-alarm").addEventListener("click", () => {
      const a = this.newest();
      if (a) this.select(a.id);
    });
  },

  startShift() {
    this.shiftStarted = true;
    document.getElementById("shift-overlay").classList.add("hidden");
    Sound.unlock().then(() => this.renderSound());
  },

  async setLang(lang) {
    const r = await PC.api("POST", "/api/me/lang", {lang});
    if (!r.ok) { PC.toast(PC.errorText(r.data)); return; }
    this.me.lang = lang;
    await PC.loadLang(lang);
    document.getElementById("me-name").textContent =
      `${this.me.name} (${PC.t("role_" + this.me.role)})`;
    this.render();
    this.renderDetail();
    this.renderSound();
  },

  // -- live feed ------------------------------------------------------------------------

  async loadState() {
    const r = await PC.api("GET", "/api/state");
    if (!r.ok) return false;
    const s = r.data;
    this.alarms.clear();
    for (const a of s.alarms) this.alarms.set(a.id, a);
    Detail.keepOnly(new Set(this.alarms.keys()));
    this.gateways.clear();
    for (const g of s.gateways) this.gateways.set(g.gateway_id, g);
    this.log = s.log;
    this.logIds = new Set(s.log.map((x) => x.id));
    this.lastSeq = s.seq;
    this.serverOffset = s.now * 1000 - Date.now();
    this.render();
    return true;
  },

  connect() {
    clearTimeout(this.reconnectTimer);
    if (this.es) this.es.close();
    const es = new EventSource(`/api/stream?since=${this.lastSeq}`);
    this.es = es;
    this.stats.connects += 1;
    const handle = (kind) => (e) => {
      const seq = Number(e.lastEventId || 0);
      this.heard();
      if (seq && seq <= this.lastSeq) { this.stats.ignored += 1; return; }
      if (seq) this.lastSeq = seq;
      this.apply(kind, JSON.parse(e.data));
    };
    es.addEventListener("alarm", handle("alarm"));
    es.addEventListener("gateway", handle("gateway"));
    es.addEventListener("log", handle("log"));
    es.addEventListener("tick", (e) => {
      const d = JSON.parse(e.data);
      this.serverOffset = d.now * 1000 - Date.now();
      this.heard();
      this.renderClock();
    });
    es.addEventListener("resync", async () => {
      es.close();
      await this.loadState();
      this.connect();
    });
    es.addEventListener("logout", () => { location.href = "/login"; });
    es.onerror = () => {
      if (this.es !== es) return;
      es.close();
      this.lost();
    };
  },

  heard() {
    this.lastHeard = Date.now();
    if (!this.connected) {
      this.connected = true;
      this.lostSince = null;
      this.renderConn();
    }
  },

  lost() {
    if (this.connected || this.lostSince === null) {
      this.connected = false;
      this.lostSince = this.lostSince || Date.now();
      this.renderConn();
    }
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.reconnect(), 1000);
  },

  async reconnect() {
    // Ask first whether we are still signed in (a stream cannot say 401 to EventSource).
    let r;
    try {
      r = await fetch("/api/me", {credentials: "same-origin", cache: "no-store"});
    } catch (e) {
      this.reconnectTimer = setTimeout(() => this.reconnect(), 1000);
      return;
    }
    if (r.status === 401) { location.href = "/login"; return; }
    if (!r.ok) { this.reconnectTimer = setTimeout(() => this.reconnect(), 1000); return; }
    this.connect();
  },

  apply(kind, d) {
    this.stats.applied += 1;
    if (kind === "alarm") {
      const have = this.alarms.get(d.id);
      if (have && have.version >= d.version) { this.stats.ignored += 1; return; }
      if (d.state === "open") this.alarms.set(d.id, d); else { this.alarms.delete(d.id); Detail.forget(d.id); }
      if (this.selected === d.id) this.loadDetail();
    } else if (kind === "gateway") {
      this.gateways.set(d.gateway_id, d);
    } else if (kind === "log") {
      if (this.logIds.has(d.id)) { this.stats.ignored += 1; return; }
      this.logIds.add(d.id);
      this.log.unshift(d);
      if (this.log.length > 200) this.log.length = 200;
    }
    this.updateAttention();
    this.scheduleRender();
  },

  scheduleRender() {
    if (this.renderTimer) return;
    this.renderTimer = setTimeout(() => { this.renderTimer = null; this.render(); }, 0);
  },

  // -- attention: sound, banner, title -------------------------------------------------------

  sorted() {
    return [...this.alarms.values()].sort((a, b) => a.priority - b.priority || a.opened_at - b.opened_at);
  },

  unowned() {
    return this.sorted().filter((a) => !a.owner && a.priority < 4);
  },

  newest() {
    const u = this.unowned();
    return u.length ? u[0] : null;
  },

  updateAttention() {
    const u = this.unowned();
    const sup = this.me.role !== "operator";
    const overdue = sup && this.sorted().some((a) => a.escalation === "overdue");
    let kind = null, loud = false;
    if (u.length) {
      const top = u[0];
      kind = top.priority === 1 ? "panic" : top.priority === 2 ? "tamper" : "trouble";
      loud = u.some((a) => a.escalation);
    } else if (overdue) {
      kind = "escalation";
      loud = true;
    }
    Sound.play(kind, loud);
    const banner = document.getElementById("new-alarm");
    if (u.length) {
      const a = u[0];
      const site = a.site ? a.site.name : (a.gateway_id || "");
      banner.textContent = PC.t(a.escalation ? "banner_escalated" : "banner_new",
        {event: PC.t("ev_" + a.event), site, count: u.length});
      banner.classList.remove("hidden");
      banner.classList.toggle("escalated", !!a.escalation);
    } else {
      banner.classList.add("hidden");
    }
    this.renderSound();
  },

  renderSound() {
    const btn = document.getElementById("sound-status");
    const blocked = Sound.blocked();
    btn.className = `pill ${blocked ? "off" : "on"}`;
    btn.textContent = PC.t(blocked ? "sound_blocked_short" : "sound_on");
    const b = document.getElementById("sound-blocked");
    if (blocked) {
      b.textContent = PC.t(this.unowned().length ? "sound_blocked_alarm" : "sound_blocked");
      b.classList.remove("hidden");
    } else {
      b.classList.add("hidden");
    }
    document.body.dataset.sound = blocked ? "blocked" : "on";
  },

  renderConn() {
    const c = document.getElementById("conn");
    c.className = `pill ${this.connected ? "live" : "lost"}`;
    c.textContent = PC.t(this.connected ? "live" : "offline");
    const b = document.getElementById("conn-lost");
    if (this.connected) {
      b.classList.add("hidden");
    } else {
      b.textContent = PC.t("conn_lost", {since: PC.time(this.lostSince / 1000)});
      b.classList.remove("hidden");
    }
    document.body.dataset.conn = this.connected ? "live" : "lost";
    this.renderClock();
  },

  everySecond() {
    // A stream that went quiet (half-open TCP, a proxy holding it) counts as lost.
    const hb = this.cfg.heartbeat_s * 1000;
    if (this.connected && Date.now() - this.lastHeard > 2.5 * hb + 500) {
      if (this.es) this.es.close();
      this.lost();
    }
    this.renderClock();
    this.renderAges();
    const u = this.unowned().length;
    const base = this.cfg.console;
    document.title = u ? ((Date.now() / 1000) % 2 < 1 ? `(${u}) ${PC.t("title_alarm")}` : base) : base;
  },

  // -- rendering -----------------------------------------------------------------------------

  renderClock() {
    const clock = document.getElementById("clock");
    if (this.connected) {
      clock.textContent = PC.time((Date.now() + this.serverOffset) / 1000);
      clock.classList.remove("stale");
    } else {
      clock.classList.add("stale");  // frozen at the last time the server was heard
    }
  },

  now() { return (Date.now() + this.serverOffset) / 1000; },

  ageClass(a) {
    if (a.owner || a.priority >= 4) return "";
    const age = this.now() - a.opened_at;
    if (age >= this.cfg.queue.danger_after_s) return "age-danger";
    if (age >= this.cfg.queue.warn_after_s) return "age-warn";
    return "";
  },

  renderAges() {
    for (const el of document.querySelectorAll("#queue .line")) {
      const a = this.alarms.get(Number(el.dataset.id));
      if (!a) continue;
      el.querySelector(".age").textContent = PC.duration(this.now() - a.opened_at);
      el.classList.remove("age-warn", "age-danger");
      const c = this.ageClass(a);
      if (c) el.classList.add(c);
    }
  },

  groupKey(a) { return a.site_key || `gw:${a.gateway_id}`; },

  render() {
    const q = document.getElementById("queue");
    const lines = this.sorted();
    const groups = new Map();
    for (const a of lines) {
      const k = this.groupKey(a);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(a);
    }
    q.replaceChildren(...[...groups.entries()].map(([k, g]) => this.renderGroup(k, g)));
    document.getElementById("queue-count").textContent = String(lines.length);
    this.renderAges();
    MapView.update(lines, [...this.gateways.values()]);
    this.renderGateways();
    this.renderLog();
    this.renderEscalations();
    this.updateAttention();
  },

  renderGroup(key, lines) {
    const first = lines[0];
    const name = first.site ? first.site.name : `${PC.t("gateway")} ${first.gateway_id}`;
    const head = lines.length > 1
      ? PC.el("div", {class: "group-head"}, PC.el("span", {text: name}),
          PC.el("span", {class: "group-count", text: PC.t("n_lines", {n: lines.length})}))
      : null;
    return PC.el("div", {class: "group", dataset: {site: key}}, head,
      lines.map((a) => this.renderLine(a)));
  },

  renderLine(a) {
    const mine = a.owner && a.owner.id === this.me.id;
    const site = a.site ? a.site.name : `${PC.t("gateway")} ${a.gateway_id}`;
    const badge = PC.t(`prio_${a.priority}`);
    const tags = [];
    if (a.press_count > 1) tags.push(PC.el("span", {class: "tag presses", text: `×${a.press_count}`}));
    if (a.escalation) tags.push(PC.el("span", {class: "tag esc", text: PC.t("esc_" + a.escalation)}));
    if (a.cancel_at) tags.push(PC.el("span", {class: "tag cancel", text: PC.t("cancel_pressed")}));
    if (a.restored_at) tags.push(PC.el("span", {class: "tag", text: PC.t("restored")}));
    const owner = a.owner
      ? PC.el("div", {class: `owner ${mine ? "mine" : ""}`},
          PC.t(mine ? "owner_you" : "owner_is", {name: a.owner.name}))
      : PC.el("div", {class: "owner"}, PC.t("unowned"));
    return PC.el("div", {
      class: `line prio-${a.priority} ${this.ageClass(a)} ${this.selected === a.id ? "selected" : ""}`,
      dataset: {id: a.id, incident: a.incident_id, event: a.event},
      onclick: () => this.select(a.id)},
      PC.el("span", {class: "badge", text: badge}),
      PC.el("span", {}, PC.el("span", {class: "site", text: site}), " ",
        PC.el("span", {class: "ev", text: PC.t("ev_" + a.event)}), ...tags),
      PC.el("span", {class: "age", text: PC.duration(this.now() - a.opened_at)}),
      owner);
  },

  renderGateways() {
    const t = document.getElementById("gateways");
    const rows = [...this.gateways.values()].sort((a, b) => a.gateway_id.localeCompare(b.gateway_id));
    const head = PC.el("tr", {}, PC.el("th", {text: PC.t("gateway")}),
      PC.el("th", {text: PC.t("last_checkin")}), PC.el("th", {text: PC.t("state")}));
    t.replaceChildren(head, ...rows.map((g) => {
      const troubles = [];
      if (g.silent) troubles.push(PC.t("gw_silent"));
      if (g.bridge_trouble) troubles.push(PC.t("gw_bridge_missing"));
      if (g.supervision_lost) troubles.push(PC.t("gw_lost_buttons", {n: g.supervision_lost}));
      const ci = g.last_checkin ? PC.t("ago", {t: PC.duration(this.now() - g.last_checkin)}) : PC.t("never");
      return PC.el("tr", {dataset: {gateway: g.gateway_id}},
        PC.el("td", {text: g.name || g.gateway_id}), PC.el("td", {class: "checkin", text: ci}),
        PC.el("td", {class: troubles.length ? "gw-bad" : "gw-ok",
          text: troubles.length ? troubles.join(", ") : PC.t("ok")}));
    }));
  },

  renderLog() {
    const ul = document.getElementById("log");
    ul.replaceChildren(...this.log.slice(0, 60).map((x) => PC.el("li", {dataset: {event: x.event}},
      PC.el("span", {class: "t", text: PC.time(x.at)}), " ",
      PC.el("b", {text: PC.t("ev_" + x.event)}), x.test ? PC.el("span", {class: "tag", text: "TEST"}) : null,
      " ", x.site || x.gateway_id || "", x.press_count > 1 ? ` ×${x.press_count}` : "")));
  },

  renderEscalations() {
    if (this.me.role === "operator") return;
    const box = document.getElementById("escalations");
    const esc = this.sorted().filter((a) => a.escalation);
    box.replaceChildren(...(esc.length ? esc.map((a) => PC.el("div", {
      class: `line prio-${a.priority}`, dataset: {id: a.id}, onclick: () => this.select(a.id)},
      PC.el("span", {class: "badge", text: PC.t("esc_" + a.escalation)}),
      PC.el("span", {class: "site", text: a.site ? a.site.name : a.gateway_id}),
      PC.el("span", {class: "age", text: PC.duration(this.now() - a.opened_at)}),
      PC.el("div", {class: "owner", text: a.owner ? PC.t("owner_is", {name: a.owner.name}) : PC.t("unowned")})))
      : [PC.el("p", {class: "muted", text: PC.t("no_escalations")})]));
  },

  async loadSupervisor() {
    const r = await PC.api("GET", "/api/supervisor");
    if (!r.ok) return;
    document.getElementById("operators").replaceChildren(...r.data.operators.map((o) =>
      PC.el("div", {class: "op"}, `${o.username}: `,
        PC.t("op_load", {screens: o.screens, owns: o.owns}))));
  },

  // -- the selected alarm ------------------------------------------------------------------------

  select(id) {
    this.selected = id;
    this.detail = null;
    this.render();
    this.loadDetail();
  },

  async loadDetail() {
    const id = this.selected;
    if (id === null) return;
    const r = await PC.api("GET", `/api/alarms/${id}`);
    if (this.selected !== id) return;
    if (!r.ok) { this.detail = null; this.renderDetail(); return; }
    // Answers can come back out of order: an older version never replaces a newer one.
    const shown = this.detail && this.detail.alarm.id === id ? this.detail.alarm.version : -1;
    if (r.data.alarm.version < shown) return;
    this.detail = r.data;
    this.renderDetail();
  },

  async act(action, body) {
    const id = this.selected;
    const r = await PC.api("POST", `/api/alarms/${id}/${action}`, body);
    if (!r.ok) {
      PC.toast(PC.errorText(r.data));
      await this.loadDetail();
      return false;
    }
    this.apply("alarm", r.data.alarm);
    await this.loadDetail();
    return true;
  },

  renderDetail() {
    Detail.render(this.detail, this);
  },
};
window.App = App;
document.addEventListener("DOMContentLoaded", () => App.start());
