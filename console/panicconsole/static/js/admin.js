/* The administrator's page: accounts, the dispatch log (what gateways posted and why a
   request was refused), and the action plans in force. */
"use strict";

const Admin = {
  me: null,

  async start() {
    const r = await PC.api("GET", "/api/me");
    if (!r.ok) return;
    this.me = r.data.user;
    PC.csrf = r.data.csrf;
    await PC.loadLang(this.me.lang);
    document.getElementById("user-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.addUser();
    });
    await Promise.all([this.users(), this.receipts(), this.plans()]);
    document.body.dataset.ready = "1";
  },

  async users() {
    const r = await PC.api("GET", "/api/admin/users");
    if (!r.ok) return;
    const t = document.getElementById("users");
    t.replaceChildren(PC.el("tr", {}, ["username", "full_name", "role", "language", "state", ""]
      .map((k) => PC.el("th", {text: k ? PC.t(k) : ""}))),
    ...r.data.map((u) => {
      const role = PC.el("select", {class: "role", onchange: (e) => this.edit(u.username, {role: e.target.value})},
        ["operator", "supervisor", "admin"].map((x) => PC.el("option", {value: x, text: PC.t("role_" + x)})));
      role.value = u.role;
      return PC.el("tr", {dataset: {user: u.username}},
        PC.el("td", {text: u.username}), PC.el("td", {text: u.display_name}), PC.el("td", {}, role),
        PC.el("td", {text: u.lang}), PC.el("td", {text: PC.t(u.disabled ? "disabled" : "enabled")}),
        PC.el("td", {}, PC.el("button", {text: PC.t(u.disabled ? "enable" : "disable"),
          onclick: () => this.edit(u.username, {disabled: !u.disabled})})));
    }));
  },

  async addUser() {
    const body = {username: document.getElementById("new-username").value,
      name: document.getElementById("new-name").value,
      password: document.getElementById("new-password").value,
      role: document.getElementById("new-role").value,
      lang: document.getElementById("new-lang").value};
    const r = await PC.api("POST", "/api/admin/users", body);
    const msg = document.getElementById("user-msg");
    if (!r.ok) { msg.textContent = r.data.message || PC.errorText(r.data); return; }
    msg.textContent = "";
    document.getElementById("user-form").reset();
    await this.users();
  },

  async edit(username, change) {
    const r = await PC.api("POST", `/api/admin/users/${encodeURIComponent(username)}`, change);
    if (!r.ok) PC.toast(r.data.message || PC.errorText(r.data));
    await this.users();
  },

  async receipts() {
    const r = await PC.api("GET", "/api/admin/receipts?limit=100");
    if (!r.ok) return;
    const t = document.getElementById("receipts");
    t.replaceChildren(PC.el("tr", {}, ["time", "status", "verdict", "gateway", "from", "why"]
      .map((k) => PC.el("th", {text: PC.t(k)}))),
    ...r.data.map((x) => PC.el("tr", {class: x.status >= 300 ? "gw-bad" : ""},
      PC.el("td", {text: PC.dateTime(x.at)}), PC.el("td", {text: String(x.status)}),
      PC.el("td", {text: x.verdict}), PC.el("td", {text: x.gateway || "-"}),
      PC.el("td", {text: x.remote || ""}), PC.el("td", {text: (x.errors || []).join("; ")}))));
  },

  async plans() {
    const r = await PC.api("GET", "/api/admin/plans");
    if (!r.ok) return;
    document.getElementById("plans").replaceChildren(...r.data.map((p) => PC.el("div", {class: "card"},
      PC.el("b", {text: `${PC.t("ev_" + p.event)} · ${p.site === "*" ? PC.t("every_site") : p.site}`}),
      ` (${p.source})`,
      PC.el("ol", {}, p.steps.map((s) => PC.el("li", {text: s[PC.lang] || s.en}))))));
  },
};
document.addEventListener("DOMContentLoaded", () => Admin.start());
