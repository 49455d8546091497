/* The selected alarm's pane: who owns it, the site card, the action plan, the note and close
   form, the audit trail.

   The pane is drawn again on every change to its line (a repeat press, an escalation, another
   operator's tick), and those come fastest during the most urgent alarms, while the operator
   is writing. So the controls that hold what the operator has not sent yet (the note, the
   disposition, the closing note, the take-over reason) are made once per alarm and stay in
   the page across those redraws: what was typed, the focus and the caret are not touched;
   only the parts around them are drawn again. What was typed is also kept per alarm as a
   draft, so switching to another alarm and back finds it again; a draft goes once it is sent,
   or when its alarm is closed. */
"use strict";

const Detail = {
  drafts: new Map(),   // alarm id -> {note, close, disposition, reason, takeover}
  controls: null,      // the shown alarm's draft controls (see make)

  /* Alarm `id`'s draft, kept from now on (write to it). */
  draft(id) {
    if (!this.drafts.has(id)) this.drafts.set(id, this.peek(id));
    return this.drafts.get(id);
  },

  /* Alarm `id`'s draft, or an empty one that is not kept (read only). */
  peek(id) {
    return this.drafts.get(id) || {note: "", close: "", disposition: "", reason: "", takeover: false};
  },

  /* A closed alarm takes no more input: its draft goes (App.apply and loadState call these). */
  forget(id) { this.drafts.delete(id); },

  keepOnly(openIds) {
    for (const id of [...this.drafts.keys()]) if (!openIds.has(id)) this.drafts.delete(id);
  },

  /* The controls of alarm `id` that hold a draft, filled from it and writing back to it. */
  make(id, app) {
    const d = this.peek(id);
    const keep = (key) => (e) => { this.draft(id)[key] = e.target.value; };
    const c = {id, lang: PC.lang};
    c.reason = PC.el("input", {id: "takeover-reason", placeholder: PC.t("take_over_reason"),
      oninput: keep("reason")});
    c.reason.value = d.reason;
    c.takeoverForm = PC.el("div", {id: "takeover-form", class: "row hidden"}, c.reason,
      PC.el("button", {id: "takeover-confirm", class: "danger", text: PC.t("take_over_confirm"),
        onclick: async () => { if (await app.act("take_over", {reason: c.reason.value})) this.tookOver(id); }}));
    c.ownerBox = PC.el("div", {id: "owner-box"});

    c.note = PC.el("textarea", {id: "note-text", oninput: keep("note")});
    c.note.value = d.note;
    c.addNote = PC.el("button", {id: "add-note", text: PC.t("add_note"),
      onclick: async () => {
        const text = c.note.value;
        if (await app.act("note", {text})) this.noteSent(id, text);
      }});
    c.disposition = PC.el("select", {id: "disposition", onchange: keep("disposition")},
      PC.el("option", {value: "", text: PC.t("choose_disposition")}),
      app.cfg.dispositions.map((x) => PC.el("option", {value: x, text: PC.t("disp_" + x)})));
    c.disposition.value = d.disposition;
    c.closeNote = PC.el("textarea", {id: "close-note", oninput: keep("close")});
    c.closeNote.value = d.close;
    c.close = PC.el("button", {id: "close", class: "primary", text: PC.t("close_alarm"),
      onclick: () => app.act("close", {disposition: c.disposition.value, note: c.closeNote.value})});
    c.inputs = [c.note, c.addNote, c.disposition, c.closeNote, c.close];
    c.form = [PC.el("h3", {text: PC.t("note")}), c.note, c.addNote,
      PC.el("h3", {text: PC.t("close_alarm")}), PC.el("div", {class: "row"}, c.disposition),
      PC.el("label", {}, PC.t("close_note"), c.closeNote), c.close];
    c.card = PC.el("div", {class: "card"});
    return c;
  },

  /* The note went into the audit trail: empty the box, but keep anything typed after it
     while it was on its way. */
  noteSent(id, text) {
    const d = this.draft(id);
    d.note = d.note.startsWith(text) ? d.note.slice(text.length).trimStart() : d.note;
    if (this.controls && this.controls.id === id) this.controls.note.value = d.note;
  },

  tookOver(id) {
    if (this.drafts.has(id)) Object.assign(this.drafts.get(id), {reason: "", takeover: false});
    if (this.controls && this.controls.id === id) this.controls.reason.value = "";
  },

  render(det, app) {
    const box = document.getElementById("detail");
    if (!det) {
      this.controls = null;
      box.replaceChildren(PC.el("p", {class: "muted", text: PC.t("select_alarm")}));
      return;
    }
    const a = det.alarm;
    if (!this.controls || this.controls.id !== a.id || this.controls.lang !== PC.lang) {
      this.controls = this.make(a.id, app);
    }
    const c = this.controls;
    const mine = !!a.owner && a.owner.id === app.me.id;
    const open = a.state === "open";
    const site = a.site || {};

    this.renderOwner(c, a, mine, open, app);
    for (const x of c.inputs) x.disabled = !(open && mine);
    PC.setChildren(c.card, [...c.form,
      !mine ? PC.el("p", {class: "muted", text: PC.t(a.owner ? "take_over_first" : "take_first")}) : null]);

    const audit = PC.el("ul", {class: "audit", id: "audit"}, det.audit.map((x) => PC.el("li",
      {dataset: {action: x.action}},
      `${PC.time(x.at)} `, PC.el("span", {class: "who", text: x.username}), ` ${PC.t("act_" + x.action)} `,
      x.detail || "")));

    PC.setChildren(box, [
      PC.el("div", {class: "detail-head"},
        PC.el("h2", {id: "detail-title", text: `${PC.t("ev_" + a.event)}: ${site.name || a.gateway_id}`}),
        PC.el("span", {class: "muted", text: `#${a.id} · ${a.contact_id || ""}`})),
      a.escalation ? PC.el("p", {class: "error", text: PC.t("esc_" + a.escalation)}) : null,
      a.cancel_at ? PC.el("p", {class: "error", text: `${PC.t("cancel_pressed")} ${PC.time(a.cancel_at)}`}) : null,
      a.restored_at ? PC.el("p", {class: "muted", text: `${PC.t("restored")} ${PC.time(a.restored_at)}`}) : null,
      c.ownerBox, this.siteCard(det),
      PC.el("h3", {text: PC.t("action_plan")}), this.steps(a, open && mine, app),
      open ? c.card : null,
      PC.el("h3", {text: PC.t("audit_trail")}), audit]);
    box.dataset.alarm = String(a.id);
    box.dataset.version = String(a.version);
  },

  renderOwner(c, a, mine, open, app) {
    const other = open && a.owner && !mine;
    c.ownerBox.className = `owner-box ${mine ? "mine" : a.owner ? "other" : ""}`;
    c.takeoverForm.classList.toggle("hidden", !this.peek(a.id).takeover);
    PC.setChildren(c.ownerBox, [
      !open ? PC.t("closed_by", {name: a.closed_by || "-", disposition: PC.t("disp_" + a.disposition)})
        : a.owner ? PC.t(mine ? "owner_you" : "owner_is", {name: a.owner.name}) : PC.t("unowned"),
      open && !a.owner ? PC.el("button", {id: "take", class: "primary", text: PC.t("take"),
        onclick: () => app.act("take")}) : null,
      other ? PC.el("button", {id: "take-over", class: "danger", text: PC.t("take_over"),
        onclick: () => {
          this.draft(a.id).takeover = true;
          c.takeoverForm.classList.remove("hidden");
        }}) : null,
      other ? c.takeoverForm : null]);
  },

  siteCard(det) {
    const a = det.alarm;
    const site = a.site || {};
    const dev = a.device || {};
    const reg = det.device || {};
    const h = det.history;
    const paths = (a.paths || []).map((p) => PC.el("li", {},
      `${p.path.toUpperCase()} ${p.rssi !== null ? `RSSI ${p.rssi} dBm` : ""} ` +
      `${p.snr !== null ? `SNR ${p.snr} dB` : ""} ${p.at ? p.at.replace("T", " ").slice(0, 19) : ""}`));
    return PC.el("div", {class: "card", id: "site-card"},
      PC.el("h3", {text: site.name || `${PC.t("gateway")} ${a.gateway_id}`}),
      PC.el("dl", {},
        site.name ? [PC.el("dt", {text: PC.t("kind")}), PC.el("dd", {text: PC.t("kind_" + site.kind)}),
          PC.el("dt", {text: PC.t("address")}), PC.el("dd", {id: "site-address", text: site.address}),
          PC.el("dt", {text: PC.t("contact")}), PC.el("dd", {text: site.contact || "-"}),
          PC.el("dt", {text: PC.t("phone")}), PC.el("dd", {id: "site-phone", text: site.phone || "-"}),
          PC.el("dt", {text: PC.t("coordinates")}), PC.el("dd", {text: `${site.lat}, ${site.lon}`})] : [],
        dev.id ? [PC.el("dt", {text: PC.t("device")}),
          PC.el("dd", {id: "device-label", text: `${dev.label || "-"} (${dev.id})`}),
          PC.el("dt", {text: PC.t("battery")}),
          PC.el("dd", {id: "device-battery", class: dev.low_battery ? "error" : "",
            text: dev.battery_mv ? `${dev.battery_mv} mV${dev.low_battery ? " · " + PC.t("low_battery") : ""}` : "-"}),
          PC.el("dt", {text: PC.t("firmware")}), PC.el("dd", {text: dev.firmware || reg.firmware || "-"})] : [],
        PC.el("dt", {text: PC.t("heard_on")}), PC.el("dd", {}, PC.el("ul", {id: "paths", class: "log"}, paths)),
        PC.el("dt", {text: PC.t("gateway")}), PC.el("dd", {text: a.gateway_id}),
        PC.el("dt", {text: PC.t("presses")}), PC.el("dd", {id: "press-count", text: String(a.press_count)}),
        PC.el("dt", {text: PC.t("first_heard")}), PC.el("dd", {text: a.first_heard || PC.dateTime(a.opened_at)}),
        a.detail ? [PC.el("dt", {text: PC.t("detail")}), PC.el("dd", {text: a.detail})] : []),
      site.name ? PC.el("p", {id: "history"}, PC.t("history_line", {days: h.days,
        falses: h.false_alarms, reals: h.real_alarms, total: h.alarms.length})) : null,
      site.name && h.alarms.length ? PC.el("ul", {class: "log", id: "history-list"},
        h.alarms.slice(0, 8).map((x) => PC.el("li", {},
          `${PC.dateTime(x.opened_at)} ${PC.t("ev_" + x.event)} `,
          x.state === "closed" ? PC.t("disp_" + x.disposition) : PC.t("state_open")))) : null);
  },

  steps(a, canTick, app) {
    return PC.el("ol", {class: "steps", id: "steps"}, a.steps.map((s, i) => {
      const text = (s.text && (s.text[PC.lang] || s.text.en)) || String(s.text);
      const cb = PC.el("input", {type: "checkbox", class: "step-check", dataset: {index: i},
        disabled: !canTick, onchange: (e) => app.act("step", {index: i, done: e.target.checked})});
      cb.checked = !!s.done;
      return PC.el("li", {class: s.done ? "done" : ""}, cb, PC.el("span", {class: "num", text: `${i + 1}.`}),
        PC.el("span", {class: "text", text}),
        s.done ? PC.el("span", {class: "by", text: `${s.by} ${PC.time(s.at)}`}) : null);
    }));
  },
};
window.Detail = Detail;
