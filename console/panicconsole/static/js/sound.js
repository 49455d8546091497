/* Alarm sounds with the Web Audio API. Each priority has its own pattern, rendered once into
   an AudioBuffer and played as a looping source: the loop runs on the audio thread, so it
   keeps sounding in a background tab where timers are throttled.

   Browsers start an AudioContext "suspended" until the page has been clicked (autoplay
   policy). Sound.blocked() is true then, and the page says so loudly; the operator's
   "start shift" click (or any click) resumes it. */
"use strict";

const Sound = {
  ctx: null,
  master: null,
  analyser: null,
  source: null,
  gain: null,
  current: null,      // "panic" | "tamper" | "trouble" | "escalation" | null
  loud: false,
  buffers: {},
  log: [],            // every start: {kind, loud, at, hidden, state} (tests read it)
  listeners: [],

  init() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    this.ctx = new AC();
    this.master = this.ctx.createGain();
    this.master.gain.value = 1.0;
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 2048;
    this.master.connect(this.analyser);
    this.analyser.connect(this.ctx.destination);
    this.ctx.onstatechange = () => this.changed();
    for (const kind of Object.keys(this.patterns)) this.buffers[kind] = this.render(this.patterns[kind]);
  },

  /* kind -> [loop seconds, [[start s, length s, frequency Hz], ...]] */
  patterns: {
    panic: [1.6, [[0, .2, 880], [.2, .2, 660], [.4, .2, 880], [.6, .2, 660], [.8, .2, 880], [1.0, .2, 660]]],
    tamper: [1.5, [[0, .15, 1250], [.25, .15, 1250]]],
    trouble: [3.0, [[0, .35, 440]]],
    escalation: [0.8, [[0, .12, 1000], [.2, .12, 1400], [.4, .12, 1000]]],
  },

  render([seconds, tones]) {
    const rate = this.ctx.sampleRate;
    const buf = this.ctx.createBuffer(1, Math.round(seconds * rate), rate);
    const data = buf.getChannelData(0);
    for (const [start, len, freq] of tones) {
      const s0 = Math.round(start * rate), n = Math.round(len * rate);
      for (let i = 0; i < n && s0 + i < data.length; i++) {
        const t = i / rate;
        const env = Math.min(1, i / (rate * .01), (n - i) / (rate * .01));  // no clicks
        // a square-ish tone (fundamental + odd harmonics) cuts through a noisy room
        const w = 2 * Math.PI * freq * t;
        data[s0 + i] = env * .6 * (Math.sin(w) + Math.sin(3 * w) / 3 + Math.sin(5 * w) / 5);
      }
    }
    return buf;
  },

  blocked() { return !this.ctx || this.ctx.state !== "running"; },

  /* Called from a click: browsers allow resume() only then. */
  unlock() {
    if (!this.ctx) return Promise.resolve(false);
    return this.ctx.resume().then(() => { this.changed(); return !this.blocked(); },
      () => { this.changed(); return false; });
  },

  /* Play `kind` in a loop (null: silence). Louder when escalated. Idempotent. */
  play(kind, loud) {
    loud = !!loud;
    if (kind === this.current && loud === this.loud) return;
    this.stop();
    if (!kind || !this.ctx) return;
    const src = this.ctx.createBufferSource();
    src.buffer = this.buffers[kind];
    src.loop = true;
    const g = this.ctx.createGain();
    g.gain.value = loud ? 1.0 : 0.45;
    src.connect(g);
    g.connect(this.master);
    src.start();
    this.source = src;
    this.gain = g;
    this.current = kind;
    this.loud = loud;
    this.log.push({kind, loud, at: Date.now(), hidden: document.hidden, state: this.ctx.state});
    this.changed();
  },

  stop() {
    if (this.source) {
      try { this.source.stop(); } catch (e) { /* already stopped */ }
      this.source.disconnect();
      this.gain.disconnect();
    }
    this.source = null;
    this.gain = null;
    this.current = null;
    this.loud = false;
  },

  /* RMS of what is being played right now (0 when silent or blocked). */
  level() {
    if (!this.analyser) return 0;
    const a = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(a);
    let s = 0;
    for (const v of a) s += v * v;
    return Math.sqrt(s / a.length);
  },

  /* Largest RMS seen over `ms` milliseconds (a pattern has pauses between tones). */
  peak(ms) {
    return new Promise((resolve) => {
      let best = 0;
      const end = Date.now() + ms;
      const step = () => {
        best = Math.max(best, this.level());
        if (Date.now() >= end) resolve(best); else setTimeout(step, 20);
      };
      step();
    });
  },

  onChange(fn) { this.listeners.push(fn); },
  changed() { for (const fn of this.listeners) fn(); },
};
window.Sound = Sound;
