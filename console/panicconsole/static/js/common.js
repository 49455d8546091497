/* Shared by the console's pages: the message catalogue, the JSON API with the CSRF token,
   small DOM helpers. Plain JavaScript, no build step. */
"use strict";

const PC = {
  lang: "id",
  messages: {},
  csrf: "",

  async loadLang(lang) {
    const r = await fetch(`/static/i18n/${lang}.json`, {cache: "no-cache"});
    PC.messages = await r.json();
    PC.lang = lang;
    document.documentElement.lang = lang;
    PC.translate(document);
  },

  /* The message `key` in the operator's language, `{name}` fields filled from `params`. */
  t(key, params) {
    let text = PC.messages[key];
    if (text === undefined) text = key;
    if (params) {
      text = text.replace(/\{(\w+)\}/g, (m, k) => (params[k] === undefined ? m : params[k]));
    }
    return text;
  },

  translate(root) {
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = PC.t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = PC.t(el.dataset.i18nTitle); });
    root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = PC.t(el.dataset.i18nPlaceholder);
    });
  },

  /* JSON API call; state changes carry the session's CSRF token. {ok, status, data}. */
  async api(method, url, body) {
    const opts = {method, headers: {}, credentials: "same-origin"};
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = PC.csrf;
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    let r;
    try {
      r = await fetch(url, opts);
    } catch (e) {
      return {ok: false, status: 0, data: {error: "err_network"}};
    }
    if (r.status === 401) {
      location.href = "/login";
      return {ok: false, status: 401, data: {error: "login_required"}};
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = {}; }
    return {ok: r.ok, status: r.status, data};
  },

  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  },

  /* Make `nodes` (strings become text) the children of `parent`, as replaceChildren does,
     but a node already there stays where it is instead of being taken out and put back:
     an input in it keeps its focus and caret. */
  setChildren(parent, nodes) {
    const want = nodes.flat().filter((n) => n !== null && n !== undefined && n !== false)
      .map((n) => (n instanceof Node ? n : document.createTextNode(String(n))));
    const keep = new Set(want);
    for (const n of [...parent.childNodes]) if (!keep.has(n)) n.remove();
    want.forEach((n, i) => {
      const at = parent.childNodes[i];
      if (at !== n) parent.insertBefore(n, at || null);
    });
  },

  toast(text) {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = text;
    t.classList.remove("hidden");
    clearTimeout(PC._toastTimer);
    PC._toastTimer = setTimeout(() => t.classList.add("hidden"), 5000);
  },

  errorText(data) {
    const code = (data && data.error) || "err_unknown";
    return PC.t(code, data || {});
  },

  pad(n) { return String(n).padStart(2, "0"); },

  /* Local wall-clock time of a unix time (seconds). */
  time(ts) {
    if (!ts) return "-";
    const d = new Date(ts * 1000);
    return `${PC.pad(d.getHours())}:${PC.pad(d.getMinutes())}:${PC.pad(d.getSeconds())}`;
  },

  dateTime(ts) {
    if (!ts) return "-";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${PC.pad(d.getMonth() + 1)}-${PC.pad(d.getDate())} ${PC.time(ts)}`;
  },

  duration(s) {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h}:${PC.pad(m)}:${PC.pad(sec)}` : `${PC.pad(m)}:${PC.pad(sec)}`;
  },
};
window.PC = PC;
