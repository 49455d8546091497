/* The map: open alarms and gateway trouble as pins (Leaflet, shipped with the console).
   Tiles only when [map] tile_url is set; without them the pins stand on a plain grid, so a
   control room without internet still sees where its alarms are. */
"use strict";

const MapView = {
  map: null,
  layer: null,
  pins: new Map(),   // key -> marker
  lastKeys: "",
  onSelect: null,

  colours: {1: "#b91c1c", 2: "#c2410c", 3: "#1d4ed8", 4: "#6b7280"},

  init(cfg, onSelect) {
    this.onSelect = onSelect;
    if (!window.L) {
      document.getElementById("map").textContent = PC.t("map_unavailable");
      return;
    }
    this.map = L.map("map", {attributionControl: !!cfg.attribution, zoomControl: true,
      maxZoom: cfg.max_zoom}).setView([cfg.center_lat, cfg.center_lon], cfg.zoom);
    if (cfg.attribution) this.map.attributionControl.setPrefix(false);
    if (cfg.tile_url) {
      L.tileLayer(cfg.tile_url, {maxZoom: cfg.max_zoom, attribution: cfg.attribution || ""})
        .addTo(this.map);
    }
    this.layer = L.layerGroup().addTo(this.map);
  },

  update(alarms, gateways) {
    if (!this.map) return;
    const want = new Map();
    for (const a of alarms) {
      const s = a.site;
      if (!s || typeof s.lat !== "number" || typeof s.lon !== "number") continue;
      want.set(`a${a.id}`, {lat: s.lat, lon: s.lon, cls: `pin pin-alarm pin-prio-${a.priority}`,
        colour: this.colours[a.priority] || "#1d4ed8", label: `${PC.t("ev_" + a.event)}: ${s.name}`,
        id: a.id, radius: a.priority === 1 ? 11 : 8});
    }
    for (const g of gateways) {
      if (!(g.bridge_trouble || g.silent) || typeof g.lat !== "number") continue;
      want.set(`g${g.gateway_id}`, {lat: g.lat, lon: g.lon, cls: "pin pin-gateway",
        colour: "#7c3aed", label: `${PC.t("gateway")} ${g.name || g.gateway_id}: ` +
        PC.t(g.silent ? "gw_silent" : "gw_bridge_missing"), id: null, radius: 9});
    }
    for (const [k, m] of this.pins) {
      if (!want.has(k)) { this.layer.removeLayer(m); this.pins.delete(k); }
    }
    for (const [k, p] of want) {
      let m = this.pins.get(k);
      if (m && m.options.className !== p.cls) { this.layer.removeLayer(m); m = null; }
      if (!m) {
        m = L.circleMarker([p.lat, p.lon], {radius: p.radius, color: "#111827", weight: 2,
          fillColor: p.colour, fillOpacity: .9, className: p.cls});
        if (p.id !== null) m.on("click", () => this.onSelect && this.onSelect(p.id));
        m.addTo(this.layer);
        this.pins.set(k, m);
      }
      m.bindTooltip(p.label);
      m.setLatLng([p.lat, p.lon]);
    }
    const keys = [...want.keys()].sort().join(",");
    if (keys !== this.lastKeys && want.size) {
      const pts = [...want.values()].map((p) => [p.lat, p.lon]);
      this.map.fitBounds(pts, {padding: [30, 30], maxZoom: 15});
    }
    this.lastKeys = keys;
  },
};
window.MapView = MapView;
