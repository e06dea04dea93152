// dlc play: the page. Plain JavaScript, no build step, nothing fetched from outside this server.
//
// GET /api/model once, then frames from the event stream /api/events. Each frame's increments
// (history, path) are merged as it arrives; the pictures are drawn from the latest frame only,
// once per animation frame. Text from the server goes in with textContent; only the formulas'
// MathML (made by our own server) is inserted as HTML.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);

  // The counters the browser tests read.
  // framesReceived counts the frames that came, framesDrawn the pictures drawn (the latest frame each time),
  // pathPoints and epochsCharted the points of the optimizer's path and of the loss chart held so far.
  const counters = {
    framesDrawn: 0, firstFrameAt: null, lastFrame: null, framesReceived: 0, pathPoints: 0, epochsCharted: 0,
    drawMs: 0,  // the time spent drawing, in all
  };
  window.dlcPlay = counters;

  const state = {
    model: null,
    controls: null,
    history: [],        // [{epoch, loss, accuracy, val_loss, val_accuracy}], client-side
    path: [],           // [[a, b], ...] on the loss surface
    latest: null,       // the latest frame, drawn at the next animation frame
    fresh: true,        // the next frame is the first of a (re)connection: it carries everything
    chartDirty: true,
    surfaceDirty: true,
    scheduled: false,
    settingsError: null,
    frameError: null,
  };

  // ---------------------------------------------------------------- colours

  const ORANGE = [245, 147, 34];
  const BLUE = [8, 119, 189];
  const NEUTRAL = [232, 234, 235];
  const CLASS_COLOURS = [
    ORANGE, BLUE, [46, 157, 91], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
  ];
  // A perceptually even sequential scale (viridis' stops).
  const VIRIDIS = [
    [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37],
  ];

  const mix = (a, b, t) => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
  const rgb = (c) => `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`;
  const clamp01 = (x) => (x < 0 ? 0 : x > 1 ? 1 : x);

  function stopsAt(stops, t) {
    const x = clamp01(t) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    return mix(stops[i], stops[i + 1], x - i);
  }

  // A look-up table of 256 colours as packed RGBA bytes (Uint32, little-endian ABGR).
  function lut(colourOf) {
    const table = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      const c = colourOf(i);
      table[i] = (255 << 24) | ((c[2] & 255) << 16) | ((c[1] & 255) << 8) | (c[0] & 255);
    }
    return table;
  }

  // Orange below `zero`, neutral at it, blue above (TF Playground's diverging scale).
  function divergingColour(i, zero, strength) {
    if (i <= zero) return mix(NEUTRAL, ORANGE, zero === 0 ? 0 : ((zero - i) / zero) * strength);
    return mix(NEUTRAL, BLUE, ((i - zero) / (255 - zero)) * strength);
  }
  const lutCache = new Map();
  function cachedLut(key, colourOf) {
    let t = lutCache.get(key);
    if (!t) {
      t = lut(colourOf);
      lutCache.set(key, t);
    }
    return t;
  }
  const divergingLut = (zero, strength = 1) =>
    cachedLut(`d${zero}/${strength}`, (i) => divergingColour(i, zero, strength));
  const sequentialLut = () => cachedLut("viridis", (i) => stopsAt(VIRIDIS, i / 255));

  // The byte where a map scaled from [low, high] onto 0..255 crosses zero, or null when it does not.
  function zeroByte(low, high) {
    if (!(high > low) || !(low < 0 && high > 0)) return null;
    return Math.round((255 * -low) / (high - low));
  }
  function unitLut(range) {
    const z = range ? zeroByte(range[0], range[1]) : 128;
    return z === null ? sequentialLut() : divergingLut(z);
  }

  // ---------------------------------------------------------------- small helpers

  function bytes(b64) {
    const bin = atob(b64);
    const n = bin.length;
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function fmt(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (!Number.isFinite(x)) return x > 0 ? "∞" : "−∞";
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1e5 || a < 1e-3) return x.toExponential(digits - 1).replace("e", "e");
    return Number(x.toPrecision(digits)).toString();
  }

  function el(tag, props = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A canvas's drawing buffer sized for its CSS box and the screen's pixel ratio.
  function fitCanvas(canvas, cssWidth, cssHeight) {
    const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    const w = Math.round(cssWidth * dpr);
    const h = Math.round(cssHeight * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    return dpr;
  }

  // An offscreen canvas of size w x h with a reusable ImageData.
  function bitmap(w, h) {
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    return { canvas, ctx, image, pixels: new Uint32Array(image.data.buffer) };
  }

  // ---------------------------------------------------------------- the server

  async function request(url, options) {
    const response = await fetch(url, options);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error ? data.error : `${response.status} ${response.statusText}`;
      throw new Error(message);
    }
    return data;
  }
  const post = (url, body) =>
    request(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

  // ---------------------------------------------------------------- errors

  function showErrors() {
    const box = $("error");
    const text = [state.settingsError, state.frameError].filter(Boolean).join(" — ");
    $("error-text").textContent = text;
    box.hidden = !text;
  }
  // "lr: ..." unless the server's message already names what it refuses
  const named = (name, message) => (message.includes(name) ? message : `${name}: ${message}`);
  function setSettingsError(message) {
    state.settingsError = message || null;
    showErrors();
  }

  // ---------------------------------------------------------------- header

  function fillHeader(model) {
    $("model-name").textContent = model.name || "model";
    document.title = `dlc play · ${model.name || "model"}`;
    $("model-backend").textContent = model.backend || "?";
    $("model-dtype").textContent = model.dtype || "?";
    const d = model.data;
    let data = "none: the loss is a formula of the parameters";
    if (d) {
      data = `${d.name} · ${d.rows} rows`;
      if (d.val_rows) data += ` + ${d.val_rows} held out`;
    }
    $("model-data").textContent = data;
  }

  // ---------------------------------------------------------------- the model diagram

  const CHAR = 7.0;     // width of one monospace character at the diagram's text sizes
  function drawDiagram(diagram) {
    const root = $("diagram");
    root.replaceChildren();
    const nodes = (diagram && diagram.nodes) || [];
    const edges = (diagram && diagram.edges) || [];
    if (!nodes.length) return;

    const byDepth = new Map();
    for (const n of nodes) {
      const d = Number.isFinite(n.depth) ? n.depth : 0;
      if (!byDepth.has(d)) byDepth.set(d, []);
      byDepth.get(d).push(n);
    }
    const depths = [...byDepth.keys()].sort((a, b) => a - b);

    const box = new Map();
    const PAD = 8, KIND_H = 13, NAME_H = 16, PARAM_H = 14, VGAP = 12, HGAP = 34;
    const sizeOf = (n) => {
      const nameLen = `${n.name} ${n.shape || ""}`.length * (CHAR + 0.6);
      const paramLen = Math.max(0, ...(n.params || []).map((p) => p.length * CHAR));
      const w = Math.max(64, nameLen, paramLen) + 2 * PAD;
      const h = PAD + KIND_H + NAME_H + (n.params || []).length * PARAM_H + PAD - 2;
      return [w, h];
    };
    let x = 6;
    const columns = [];
    let tallest = 0;
    for (const d of depths) {
      const col = byDepth.get(d);
      const sizes = col.map(sizeOf);
      const width = Math.max(...sizes.map((s) => s[0]));
      const height = sizes.reduce((acc, s) => acc + s[1], 0) + VGAP * (col.length - 1);
      columns.push({ col, sizes, width, height, x });
      tallest = Math.max(tallest, height);
      x += width + HGAP;
    }
    const totalW = x - HGAP + 6;
    let totalH = tallest + 12;
    for (const c of columns) {
      let y = 6 + (tallest - c.height) / 2;
      c.col.forEach((n, i) => {
        const [w, h] = c.sizes[i];
        box.set(n.id, { x: c.x + (c.width - w) / 2, y, w, h, n });
        y += h + VGAP;
      });
    }

    root.style.maxWidth = `${Math.ceil(totalW * 1.15)}px`;
    root.style.minWidth = `${Math.ceil(totalW * 0.75)}px`;
    const defs = svg("defs");
    const marker = svg("marker", {
      id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    });
    marker.append(svg("path", { d: "M 0 1 L 9 5 L 0 9 z", fill: "#9aa0a8" }));
    defs.append(marker);
    root.append(defs);

    const edgeLayer = svg("g", { class: "edges" });
    root.append(edgeLayer);
    let lanes = 0;   // long edges that would cross boxes run below them, one lane each
    for (const [from, to] of edges) {
      const a = box.get(from), b = box.get(to);
      if (!a || !b) continue;
      let d;
      if (b.x > a.x + a.w / 2) {
        const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x - 1, y2 = b.y + b.h / 2;
        const between = [...box.values()].filter((c) => c.x > x1 && c.x + c.w < x2);
        const lo = Math.min(y1, y2) - 6, hi = Math.max(y1, y2) + 6;
        if (between.some((c) => c.y < hi && c.y + c.h > lo)) {
          const lane = Math.max(...between.map((c) => c.y + c.h)) + 12 + 8 * lanes++;
          totalH = Math.max(totalH, lane + 8);
          const r = 12;
          d = `M ${x1} ${y1} C ${x1 + r} ${y1}, ${x1 + r} ${lane}, ${x1 + 2 * r} ${lane}` +
            ` L ${x2 - 2 * r} ${lane} C ${x2 - r} ${lane}, ${x2 - r} ${y2}, ${x2} ${y2}`;
        } else {
          const mx = (x1 + x2) / 2;
          d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
        }
      } else if (b.x + b.w < a.x) {
        const x1 = a.x, y1 = a.y + a.h / 2, x2 = b.x + b.w + 1, y2 = b.y + b.h / 2;
        const mx = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mx} ${y1 - 20}, ${mx} ${y2 - 20}, ${x2} ${y2}`;
      } else {  // the same column: from one box's edge to the other's
        const down = b.y > a.y;
        const x1 = a.x + a.w / 2, y1 = down ? a.y + a.h : a.y;
        const x2 = b.x + b.w / 2, y2 = down ? b.y - 1 : b.y + b.h + 1;
        d = `M ${x1} ${y1} L ${x2} ${y2}`;
      }
      const path = svg("path", { d, class: "edge", "marker-end": "url(#arrow)" });
      edgeLayer.append(path);
    }
    root.setAttribute("viewBox", `0 0 ${totalW} ${totalH}`);

    for (const { x: bx, y: by, w, h, n } of box.values()) {
      const g = svg("g", { class: `node kind-${n.kind || "value"}`, "data-id": n.id, transform: `translate(${bx},${by})` });
      const title = svg("title", {}, `${n.kind || "value"} ${n.name} ${n.shape || ""}` +
        ((n.params || []).length ? `\nparameters: ${(n.params || []).join(", ")}` : ""));
      g.append(title);
      g.append(svg("rect", { width: w, height: h, rx: 6, ry: 6 }));
      g.append(svg("text", { x: PAD, y: PAD + 8, class: "kind" }, n.kind || ""));
      const name = svg("text", { x: PAD, y: PAD + KIND_H + 11, class: "name" });
      name.append(svg("tspan", {}, n.name));
      if (n.shape) name.append(svg("tspan", { class: "shape", dx: 6 }, n.shape));
      g.append(name);
      (n.params || []).forEach((p, i) => {
        const y = PAD + KIND_H + NAME_H + i * PARAM_H;
        g.append(svg("rect", { x: PAD - 3, y: y + 1, width: p.length * CHAR + 6, height: PARAM_H - 2, rx: 3, class: "param-box" }));
        g.append(svg("text", { x: PAD, y: y + 11, class: "param" }, p));
      });
      root.append(g);
    }
  }

  // ---------------------------------------------------------------- formulas and plugged-in values

  const plug = { el: null, id: null, eq: null, token: 0, inFlight: false, lastFetch: 0, at: null };

  const isUpdate = (section) => /^update/i.test(section.title || "");

  function sectionElement(section) {
    const s = el("section", { dataset: { update: String(isUpdate(section)) } }, el("h3", { text: section.title }));
    for (const eq of section.equations) {
      const math = el("span", { class: "eq-math" });
      math.innerHTML = eq.mathml;   // MathML from our own server
      const row = el("div", {
        class: "equation", tabindex: "0", role: "button",
        title: `${eq.text || ""}  (click: the values plugged in)`,
        "aria-label": `${eq.text || "equation"}: show its current values`,
        dataset: { id: String(eq.id) },
      }, math, eq.shape ? el("span", { class: "eq-shape", text: eq.shape }) : null);
      s.append(row);
    }
    return s;
  }

  function drawFormulas(sections) {
    const root = $("formulas");
    root.replaceChildren();
    for (const section of sections || []) {
      if (section.equations && section.equations.length) root.append(sectionElement(section));
    }
  }

  // The optimizer's update formulas change with the optimizer (POST /api/settings answers with them).
  function replaceUpdate(section) {
    if (!section || !section.equations) return;
    const root = $("formulas");
    const old = root.querySelector('section[data-update="true"]');
    const ids = (e) => [...e.querySelectorAll(".equation")].map((q) => q.dataset.id).join(",");
    const fresh = sectionElement(section);
    if (old && old.querySelector("h3").textContent === section.title && ids(old) === ids(fresh)) return;
    if (old && plug.eq && old.contains(plug.eq)) closePlug();
    if (old) old.replaceWith(fresh);
    else if (section.equations.length) root.append(fresh);
  }

  function bindFormulas() {
    const root = $("formulas");
    root.addEventListener("click", (ev) => {
      const eq = ev.target.closest(".equation");
      if (eq && root.contains(eq)) togglePlug(eq);
    });
    root.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      const eq = ev.target.closest(".equation");
      if (eq) {
        ev.preventDefault();
        togglePlug(eq);
      }
    });
  }

  function closePlug() {
    if (plug.el) plug.el.remove();
    if (plug.eq) plug.eq.classList.remove("selected");
    plug.el = plug.eq = plug.id = null;
    plug.token++;
  }

  function togglePlug(eq) {
    if (plug.eq === eq) {
      closePlug();
      return;
    }
    closePlug();
    plug.eq = eq;
    plug.id = eq.dataset.id;
    eq.classList.add("selected");
    const head = el("div", { class: "plugged-head", text: "the values plugged in" });
    const body = el("div", { class: "plugged-body", text: "computing…" });
    const close = el("button", { type: "button", class: "close", "aria-label": "Close the values", title: "Close", text: "×" });
    close.addEventListener("click", (ev) => {
      ev.stopPropagation();
      closePlug();
    });
    plug.el = el("div", { id: "plugged", class: "plugged loading", role: "region", "aria-live": "polite" }, close, head, body);
    eq.insertAdjacentElement("afterend", plug.el);
    fetchPlug();
  }

  async function fetchPlug() {
    if (!plug.el || plug.inFlight) return;
    const token = plug.token;
    const f = state.latest;
    plug.inFlight = true;
    plug.lastFetch = performance.now();
    plug.at = f ? `${f.epoch}/${f.step}` : null;
    try {
      const data = await request(`/api/plug/${encodeURIComponent(plug.id)}`);
      if (token !== plug.token || !plug.el) return;
      const body = plug.el.querySelector(".plugged-body");
      body.innerHTML = data.mathml;   // MathML from our own server
      plug.el.classList.remove("loading");
      const example = state.model && state.model.data ? " · first training example" : "";
      plug.el.querySelector(".plugged-head").textContent = f
        ? `the values plugged in · epoch ${f.epoch}, step ${f.step}${example}`
        : `the values plugged in${example}`;
    } catch (err) {
      if (token !== plug.token || !plug.el) return;
      plug.el.querySelector(".plugged-body").textContent = `could not compute the values: ${err.message}`;
    } finally {
      plug.inFlight = false;
    }
  }

  // Keep the open values current: at once when paused and the state moved, every 1.5 s while training.
  function refreshPlug(f) {
    if (!plug.el || plug.inFlight) return;
    const at = `${f.epoch}/${f.step}`;
    if (at === plug.at) return;
    if (!f.playing || performance.now() - plug.lastFetch > 1500) fetchPlug();
  }

  // ---------------------------------------------------------------- controls

  function bindControls() {
    for (const action of ["play", "pause", "step", "epoch", "reset"]) {
      $(action).addEventListener("click", async () => {
        try {
          await post("/api/control", { action });
          if (state.settingsError) setSettingsError(null);
        } catch (err) {
          setSettingsError(`${action}: ${err.message}`);
        }
      });
    }
    $("error-close").addEventListener("click", () => {
      state.settingsError = null;
      state.frameError = null;
      showErrors();
    });
    $("optimizer").addEventListener("change", async (ev) => {
      const select = ev.target;
      const before = state.controls.optimizer;
      try {
        const data = await post("/api/settings", { optimizer: select.value });
        setSettingsError(null);
        answered(data, null, { ...state.controls, optimizer: select.value });
      } catch (err) {
        select.value = before;
        setSettingsError(named("optimizer", err.message));
      }
    });
    bindInteger($("batch-size"), "batch_size", 1);
    bindInteger($("seed"), "seed", 0);
  }

  // Enter commits a number field (as leaving it does).
  function commitOnEnter(input) {
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        input.dispatchEvent(new Event("change"));
      }
    });
  }

  function bindInteger(input, key, min) {
    commitOnEnter(input);
    input.addEventListener("change", async () => {
      const old = input.dataset.committed;
      const value = Number(input.value);
      if (input.value.trim() === "" || !Number.isInteger(value) || value < min) {
        setSettingsError(`${key.replace("_", " ")}: a whole number ≥ ${min}, not "${input.value}"`);
        flagBad(input);
        input.value = old;
        return;
      }
      if (String(value) === old) return;
      try {
        const data = await post("/api/settings", { [key]: value });
        input.dataset.committed = String(value);
        setSettingsError(null);
        answered(data, input);
      } catch (err) {
        setSettingsError(named(key.replace("_", " "), err.message));
        flagBad(input);
        input.value = old;
      }
    });
  }

  // The server's answer to a change of settings: its controls, and the optimizer's update formulas.
  function answered(data, input, fallback) {
    if (data && data.controls) applyControls(data.controls, input);
    else if (fallback) applyControls(fallback, input);
    if (data && data.update) replaceUpdate(data.update);
  }

  function flagBad(input) {
    input.classList.add("bad");
    setTimeout(() => input.classList.remove("bad"), 1600);
  }

  async function commitSetting(name, value, input, restore) {
    try {
      const data = await post("/api/settings", { settings: { [name]: value } });
      setSettingsError(null);
      answered(data, input, { ...state.controls, settings: { ...state.controls.settings, [name]: value } });
      return true;
    } catch (err) {
      setSettingsError(named(name, err.message));
      if (input) flagBad(input);
      restore();
      return false;
    }
  }

  const LR_MIN = -5, LR_MAX = 1;   // the slider's range, as powers of ten

  function settingField(name, value) {
    const id = `setting-${name}`;
    if (typeof value === "boolean") {
      const box = el("input", { type: "checkbox", id, "data-setting": name, "aria-label": name });
      box.checked = value;
      box.addEventListener("change", () =>
        commitSetting(name, box.checked, box, () => { box.checked = !box.checked; }));
      return el("label", { class: "field checkbox", for: id }, box, el("span", { text: name }));
    }
    const input = el("input", { type: "number", step: "any", id, "data-setting": name, "aria-label": name });
    input.value = String(value);
    input.dataset.committed = String(value);
    commitOnEnter(input);
    let slider = null;
    const syncSlider = () => {
      if (slider && Number(input.value) > 0) slider.value = String(Math.log10(Number(input.value)));
    };
    input.addEventListener("change", async () => {
      const old = input.dataset.committed;
      const v = Number(input.value);
      if (input.value.trim() === "" || !Number.isFinite(v)) {
        setSettingsError(`${name}: a number, not "${input.value}"`);
        flagBad(input);
        input.value = old;
        syncSlider();
        return;
      }
      if (String(v) === old) return;
      const ok = await commitSetting(name, v, input, () => {
        input.value = old;
        syncSlider();
      });
      if (ok) {
        input.dataset.committed = String(v);
        syncSlider();
      }
    });
    if (name !== "lr" && name !== "learning_rate") {
      return el("label", { class: "field", for: id }, el("span", { text: name.replace(/_/g, " ") }), input);
    }

    // the learning rate: a log-scale slider beside the number
    slider = el("input", {
      type: "range", min: String(LR_MIN), max: String(LR_MAX), step: "0.01",
      "aria-label": "learning rate (log scale)", title: "learning rate, log scale",
    });
    syncSlider();
    slider.addEventListener("input", () => {
      input.value = String(Number((10 ** Number(slider.value)).toPrecision(2)));
    });
    slider.addEventListener("change", () => input.dispatchEvent(new Event("change")));
    return el("label", { class: "field lr-field", for: id },
      el("span", { text: name === "lr" ? "learning rate (lr)" : "learning rate" }), el("div", { class: "lr-row" }, input, slider));
  }

  function buildSettings() {
    const c = state.controls;
    const holder = $("optimizer-settings");
    holder.replaceChildren();
    const defaults = (state.model.optimizers || {})[c.optimizer] || [];
    const names = defaults.map((s) => s.name);
    for (const k of Object.keys(c.settings || {})) if (!names.includes(k)) names.push(k);
    for (const name of names) {
      const current = c.settings && name in c.settings ? c.settings[name]
        : (defaults.find((s) => s.name === name) || {}).value;
      holder.append(settingField(name, current));
    }
  }

  // New controls from the server: the fields follow them (except the one being typed in).
  function applyControls(controls, except) {
    const before = state.controls;
    state.controls = controls;
    const select = $("optimizer");
    if (select.value !== controls.optimizer) select.value = controls.optimizer;
    const sameKeys = before && before.optimizer === controls.optimizer &&
      JSON.stringify(Object.keys(before.settings || {})) === JSON.stringify(Object.keys(controls.settings || {}));
    if (!sameKeys) buildSettings();
    else {
      for (const [name, value] of Object.entries(controls.settings || {})) {
        const input = document.querySelector(`[data-setting="${CSS.escape(name)}"]`);
        if (!input || input === except || input === document.activeElement) continue;
        if (input.type === "checkbox") input.checked = Boolean(value);
        else {
          input.value = String(value);
          input.dataset.committed = String(value);
        }
      }
    }
    for (const [id, key] of [["batch-size", "batch_size"], ["seed", "seed"]]) {
      const input = $(id);
      const v = controls[key];
      // without data there are no batches
      input.closest(".field").hidden = v === null || v === undefined || (key === "batch_size" && !state.model.data);
      if (input !== except && input !== document.activeElement && v !== null && v !== undefined) {
        input.value = String(v);
        input.dataset.committed = String(v);
      }
    }
  }

  function fillControls(model) {
    const select = $("optimizer");
    select.replaceChildren();
    for (const name of Object.keys(model.optimizers || {})) select.append(el("option", { value: name, text: name }));
    state.controls = null;
    applyControls(model.controls);
    buildSettings();
  }

  // ---------------------------------------------------------------- status

  function showStatus(f) {
    const status = $("status");
    status.dataset.epoch = String(f.epoch);
    status.dataset.step = String(f.step);
    status.dataset.loss = f.loss === null || f.loss === undefined ? "" : String(f.loss);
    status.dataset.playing = String(Boolean(f.playing));
    const epochs = state.controls && state.controls.epochs;
    $("status-epoch").textContent = epochs && f.epoch <= epochs ? `${f.epoch} / ${epochs}` : String(f.epoch);
    $("status-step").textContent = `${f.step} / ${f.steps}`;
    $("status-loss").textContent = f.loss === null || f.loss === undefined ? "–" : fmt(f.loss, 4);
    $("play").disabled = Boolean(f.playing);
    $("pause").disabled = !f.playing;
  }

  // ---------------------------------------------------------------- the plane: output and hidden units

  const plane = { view: null, map: null, points: null, pointsKey: null, layers: [], lastOutput: null };

  function setupPlane(view) {
    plane.view = view;
    $("plane-view").hidden = false;
    plane.map = bitmap(view.size, view.size);
    const captions = {
      binary: "The network's output over the input plane: blue where it says class 1, orange where it says class 0, the dots are the training data.",
      classes: "The class the network picks at each point of the input plane (colour), paler where it is less sure; the dots are the training data.",
      value: "The network's output value over the input plane; the dots are the training data, coloured by their target value.",
    };
    $("plane-caption").textContent = captions[view.output] || captions.value;
    drawPlaneLegend(view, null, null);

    const holder = $("units");
    holder.replaceChildren();
    plane.layers = [];
    const us = view.unit_size || 0;
    const units = view.units || [];
    if (!units.length) holder.previousElementSibling.hidden = true;
    for (const layer of units) {
      const grid = el("div", { class: layer.count <= 4 ? "unit-grid big" : "unit-grid" });
      const canvases = [];
      for (let k = 0; k < layer.count; k++) {
        const c = el("canvas", { width: String(us), height: String(us), title: `${layer.name}[${k}]`, "aria-label": `unit ${k} of ${layer.name}` });
        canvases.push(c.getContext("2d"));
        grid.append(c);
      }
      const name = el("div", { class: "layer-name" }, layer.name, el("span", { class: "count", text: `  ${layer.count} unit${layer.count === 1 ? "" : "s"}` }));
      holder.append(el("div", { class: "unit-layer" }, name, grid));
      const image = canvases.length ? canvases[0].createImageData(us, us) : null;
      plane.layers.push({ name: layer.name, count: layer.count, ctxs: canvases, image, pixels: image ? new Uint32Array(image.data.buffer) : null });
    }
  }

  function drawPlaneLegend(view, low, high) {
    const legend = $("plane-legend");
    legend.replaceChildren();
    if (view.output === "binary") {
      legend.append(el("span", {}, swatch(ORANGE), "class 0"), legendBar(divergingLut(128)), el("span", {}, swatch(BLUE), "class 1"));
    } else if (view.output === "classes") {
      for (let c = 0; c < (view.classes || 0); c++) legend.append(el("span", {}, swatch(CLASS_COLOURS[c % CLASS_COLOURS.length]), `class ${c}`));
    } else {
      legend.append(el("span", { text: fmt(low) }), legendBar(sequentialLut()), el("span", { text: fmt(high) }));
    }
  }
  function swatch(c) {
    const s = el("span", { class: "swatch" });
    s.style.background = rgb(c);
    return s;
  }
  function legendBar(table) {
    const c = el("canvas", { width: "256", height: "1", "aria-hidden": "true" });
    const ctx = c.getContext("2d");
    const image = ctx.createImageData(256, 1);
    new Uint32Array(image.data.buffer).set(table);
    ctx.putImageData(image, 0, 0);
    return c;
  }

  const classLuts = new Map();
  function classColour(c, conf, k) {
    let table = classLuts.get(c);
    if (!table) {
      const base = CLASS_COLOURS[c % CLASS_COLOURS.length];
      const floor = k > 1 ? 1 / k : 0;
      table = lut((i) => mix([246, 246, 246], base, 0.12 + 0.78 * clamp01((i / 255 - floor) / (1 - floor))));
      classLuts.set(c, table);
    }
    return table[conf];
  }

  function drawPlane(f) {
    const view = plane.view;
    const p = f.plane;
    if (!p || !p.output) return;
    const canvas = $("boundary");
    const dpr = fitCanvas(canvas, 320, 320);
    const W = canvas.width, H = canvas.height;
    const ctx = canvas.getContext("2d");

    const out = bytes(p.output);
    const px = plane.map.pixels;
    const n = Math.min(px.length, out.length);
    if (view.output === "classes" && p.confidence) {
      const conf = bytes(p.confidence);
      const k = view.classes || 2;
      for (let i = 0; i < n; i++) px[i] = classColour(out[i], conf[i], k);
    } else {
      const table = view.output === "binary" ? divergingLut(128, 0.68) : sequentialLut();
      for (let i = 0; i < n; i++) px[i] = table[out[i]];
    }
    plane.map.ctx.putImageData(plane.map.image, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "low";  // bilinear: smooth enough for a map enlarged five times, and cheap
    ctx.drawImage(plane.map.canvas, 0, 0, W, H);
    ctx.drawImage(pointsLayer(view, p.low, p.high, W, H, dpr), 0, 0);

    if (view.output === "value" && `${p.low},${p.high}` !== plane.legendKey) {
      plane.legendKey = `${p.low},${p.high}`;
      drawPlaneLegend(view, p.low, p.high);
    }

    if (p.units) {
      for (const layer of plane.layers) {
        const b64 = p.units[layer.name];
        if (!b64 || !layer.image) continue;
        const data = bytes(b64);
        const range = p.unit_range ? p.unit_range[layer.name] : null;
        const table = unitLut(range);
        const size = layer.pixels.length;
        for (let k = 0; k < layer.count; k++) {
          const off = k * size;
          if (off + size > data.length) break;
          for (let i = 0; i < size; i++) layer.pixels[i] = table[data[off + i]];
          layer.ctxs[k].putImageData(layer.image, 0, 0);
        }
      }
    }
  }

  // The data points, drawn once into their own layer (again when a value scale's range changes).
  function pointsLayer(view, low, high, W, H, dpr) {
    const key = view.output === "value" ? `${W}x${H}:${low},${high}` : `${W}x${H}`;
    if (plane.points && plane.pointsKey === key) return plane.points;
    const layer = plane.points && plane.points.width === W && plane.points.height === H ? plane.points : document.createElement("canvas");
    layer.width = W;
    layer.height = H;
    const ctx = layer.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    const [x0, x1, y0, y1] = view.extent;
    const pts = view.points || [];
    const r = (pts.length > 1500 ? 2.2 : pts.length > 600 ? 2.8 : pts.length > 40 ? 3.4 : 6) * dpr;
    const seq = sequentialLut();
    for (const [x, y, c] of pts) {
      const cx = ((x - x0) / (x1 - x0)) * W;
      const cy = ((y1 - y) / (y1 - y0)) * H;
      let colour;
      if (view.output === "value") {
        const t = high > low ? clamp01((c - low) / (high - low)) : 0.5;
        const packed = seq[Math.round(t * 255)];
        colour = `rgb(${packed & 255},${(packed >> 8) & 255},${(packed >> 16) & 255})`;
      } else {
        colour = rgb(CLASS_COLOURS[Math.round(c) % CLASS_COLOURS.length] || [0, 0, 0]);
      }
      ctx.beginPath();
      ctx.arc(cx, cy, r, 0, 2 * Math.PI);
      ctx.fillStyle = colour;
      ctx.fill();
      ctx.lineWidth = 1.1 * dpr;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(cx, cy, r + 1.0 * dpr, 0, 2 * Math.PI);
      ctx.lineWidth = 0.7 * dpr;
      ctx.strokeStyle = "rgba(0,0,0,0.45)";
      ctx.stroke();
    }
    plane.points = layer;
    plane.pointsKey = key;
    return layer;
  }

  // ---------------------------------------------------------------- the loss surface and the path

  const surface = { view: null, base: null, W: 0, H: 0 };

  function setupSurface(view) {
    surface.view = view;
    $("surface-view").hidden = false;
    const [n0, n1] = view.names || ["a", "b"];
    $("surface-caption").textContent =
      `The loss as a function of the two parameters ${n0} (across) and ${n1} (up): dark is low, bright is high. ` +
      "The white line is the optimizer's path, the orange dot where it is now.";
    const legend = $("surface-legend");
    legend.replaceChildren(el("span", { text: `${fmt(view.low)} (low)` }), legendBar(surfaceLut()), el("span", { text: `${fmt(view.high)} (high)` }));
  }

  const surfaceLut = () => cachedLut("surface", (i) => stopsAt(VIRIDIS, Math.pow(i / 255, 0.7)));

  // The surface's picture, bilinearly resampled to the canvas and banded like a contour map; drawn once.
  function surfaceBase(W, H) {
    if (surface.base && surface.W === W && surface.H === H) return surface.base;
    const view = surface.view;
    const n = view.size;
    const v = bytes(view.values);
    const b = bitmap(W, H);
    const table = surfaceLut();
    const BANDS = 14;
    const value = new Float32Array(W * H);
    for (let py = 0; py < H; py++) {
      const fy = (py / (H - 1)) * (n - 1);
      const iy = Math.min(n - 2, Math.floor(fy)), ty = fy - iy;
      for (let px = 0; px < W; px++) {
        const fx = (px / (W - 1)) * (n - 1);
        const ix = Math.min(n - 2, Math.floor(fx)), tx = fx - ix;
        const a = v[iy * n + ix], bb = v[iy * n + ix + 1], c = v[(iy + 1) * n + ix], d = v[(iy + 1) * n + ix + 1];
        value[py * W + px] = (a * (1 - tx) + bb * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty;
      }
    }
    const band = (x) => Math.floor((Math.pow(x / 255, 0.7) * BANDS));
    for (let py = 0; py < H; py++) {
      for (let px = 0; px < W; px++) {
        const i = py * W + px;
        const here = band(value[i]);
        const edge = (px + 1 < W && band(value[i + 1]) !== here) || (py + 1 < H && band(value[i + W]) !== here);
        let colour = table[Math.max(0, Math.min(255, Math.round(value[i])))];
        if (edge) {  // a contour line: the colour darkened
          const r = (colour & 255) * 0.7, g = ((colour >> 8) & 255) * 0.7, bl = ((colour >> 16) & 255) * 0.7;
          colour = (255 << 24) | ((bl & 255) << 16) | ((g & 255) << 8) | (r & 255);
        }
        b.pixels[i] = colour;
      }
    }
    b.ctx.putImageData(b.image, 0, 0);
    surface.base = b.canvas;
    surface.W = W;
    surface.H = H;
    return surface.base;
  }

  function drawSurface() {
    const view = surface.view;
    const canvas = $("surface");
    const dpr = fitCanvas(canvas, 320, 320);
    const W = canvas.width, H = canvas.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(surfaceBase(W, H), 0, 0);
    const [a0, a1, b0, b1] = view.extent;
    const X = (a) => ((a - a0) / (a1 - a0)) * W;
    const Y = (b) => ((b1 - b) / (b1 - b0)) * H;

    // axes' names and ends
    ctx.font = `${11 * dpr}px ui-monospace, monospace`;
    ctx.fillStyle = "rgba(255,255,255,0.92)";
    ctx.textBaseline = "bottom";
    const [n0, n1] = view.names || ["a", "b"];
    ctx.textAlign = "left";
    ctx.fillText(fmt(a0), 4 * dpr, H - 3 * dpr);
    ctx.textAlign = "right";
    ctx.fillText(`${fmt(a1)}  ${n0} →`, W - 4 * dpr, H - 3 * dpr);
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(`${n1} ↑ ${fmt(b1)}`, 4 * dpr, 4 * dpr);

    const path = state.path;
    if (!path.length) return;
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    const trace = () => {
      ctx.beginPath();
      ctx.moveTo(X(path[0][0]), Y(path[0][1]));
      for (let i = 1; i < path.length; i++) ctx.lineTo(X(path[i][0]), Y(path[i][1]));
    };
    trace();
    ctx.strokeStyle = "rgba(0,0,0,0.5)";
    ctx.lineWidth = 3.6 * dpr;
    ctx.stroke();
    trace();
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 1.8 * dpr;
    ctx.stroke();
    // the start, hollow; the current point, filled
    ctx.beginPath();
    ctx.arc(X(path[0][0]), Y(path[0][1]), 4 * dpr, 0, 2 * Math.PI);
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
    const last = path[path.length - 1];
    ctx.beginPath();
    ctx.arc(X(last[0]), Y(last[1]), 5.5 * dpr, 0, 2 * Math.PI);
    ctx.fillStyle = rgb(ORANGE);
    ctx.fill();
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    ctx.fillStyle = "rgba(255,255,255,0.95)";
    ctx.fillText(`${n0} = ${fmt(last[0])}, ${n1} = ${fmt(last[1])}`, W - 4 * dpr, 4 * dpr);
  }

  // ---------------------------------------------------------------- weights as images

  const weights = { groups: [] };

  function setupWeights(list) {
    $("weights-view").hidden = false;
    const holder = $("weights");
    holder.replaceChildren();
    weights.groups = [];
    for (const w of list) {
      const grid = el("div", { class: "weights-grid" });
      const ctxs = [];
      for (let r = 0; r < w.rows; r++) {
        const c = el("canvas", { width: String(w.w), height: String(w.h), title: `${w.name}[${r}]`, "aria-label": `row ${r} of ${w.name}` });
        ctxs.push(c.getContext("2d"));
        grid.append(c);
      }
      const all = rowsOf(w.name);
      const which = all && all > w.rows ? `the first ${w.rows} of its ${all} rows` : `${w.rows} row${w.rows === 1 ? "" : "s"}`;
      holder.append(el("div", { class: "weights-group" },
        el("div", { class: "layer-name", text: `${w.name}: ${which}, each drawn ${w.h}×${w.w}` }), grid));
      const image = ctxs.length ? ctxs[0].createImageData(w.w, w.h) : null;
      weights.groups.push({ ...w, ctxs, image, pixels: image ? new Uint32Array(image.data.buffer) : null });
    }
  }

  // A parameter's first dimension, from the diagram's "W1 [128, 64]".
  function rowsOf(name) {
    for (const n of (state.model.diagram && state.model.diagram.nodes) || []) {
      for (const p of n.params || []) {
        const m = /^(\S+) \[(\d+)/.exec(p);
        if (m && m[1] === name) return Number(m[2]);
      }
    }
    return null;
  }

  function drawWeights(f) {
    if (!f.weights) return;
    const table = divergingLut(128);
    for (const g of weights.groups) {
      const b64 = f.weights[g.name];
      if (!b64 || !g.image) continue;
      const data = bytes(b64);
      const size = g.h * g.w;
      for (let r = 0; r < g.rows; r++) {
        const off = r * size;
        if (off + size > data.length) break;
        for (let i = 0; i < size; i++) g.pixels[i] = table[data[off + i]];
        g.ctxs[r].putImageData(g.image, 0, 0);
      }
    }
  }

  // ---------------------------------------------------------------- per-parameter norms

  const statRows = new Map();
  function drawStats(stats) {
    if (!stats) return;
    const body = $("stats").tBodies[0];
    for (const s of stats) {
      let row = statRows.get(s.name);
      if (!row) {
        const cells = [0, 1, 2, 3].map(() => el("td"));
        const fill = el("i");
        const bar = el("div", { class: "bar", title: "‖Δw‖ / ‖w‖ per step, log scale from 1e-6 to 1" }, fill);
        const tr = el("tr", {}, ...cells, el("td", {}, bar));
        cells[0].textContent = s.name;
        body.append(tr);
        row = { cells, fill };
        statRows.set(s.name, row);
      }
      row.cells[1].textContent = fmt(s.weight);
      row.cells[2].textContent = fmt(s.grad);
      row.cells[3].textContent = fmt(s.update);
      const ratio = s.weight > 0 ? s.update / s.weight : 0;
      const t = ratio > 0 ? clamp01((Math.log10(ratio) + 6) / 6) : 0;
      row.fill.style.width = `${(t * 100).toFixed(1)}%`;
    }
  }

  // ---------------------------------------------------------------- the loss chart

  const SERIES = [
    { key: "loss", label: "loss", colour: "#0877bd", axis: "loss", dash: [] },
    { key: "val_loss", label: "validation loss", colour: "#0877bd", axis: "loss", dash: [5, 4] },
    { key: "accuracy", label: "accuracy", colour: "#e0760b", axis: "acc", dash: [] },
    { key: "val_accuracy", label: "validation accuracy", colour: "#e0760b", axis: "acc", dash: [5, 4] },
  ];
  let legendKey = "";

  function niceStep(range, count) {
    const raw = range / Math.max(1, count);
    const p = 10 ** Math.floor(Math.log10(raw));
    const m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
  }

  function tickLabel(v, log) {
    if (log) {
      const p = Math.floor(Math.log10(v) + 1e-9);
      const m = Math.round(v / 10 ** p);
      if (p >= -3 && p <= 4) return String(Number(v.toPrecision(1)));
      return m === 1 ? `1e${p}` : `${m}e${p}`;
    }
    return fmt(v, 3);
  }

  function drawChart() {
    const canvas = $("loss-chart");
    const box = canvas.parentElement.getBoundingClientRect();
    if (box.width < 10) return;
    const dpr = fitCanvas(canvas, box.width, box.height);
    const ctx = canvas.getContext("2d");
    const W = box.width, H = box.height;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);

    const h = state.history;
    const present = SERIES.filter((s) => h.some((e) => e[s.key] !== null && e[s.key] !== undefined && Number.isFinite(e[s.key])));
    const key = present.map((s) => s.key).join(",");
    if (key !== legendKey) {
      legendKey = key;
      const legend = $("chart-legend");
      legend.replaceChildren();
      for (const s of present) {
        const line = el("span", { class: s.dash.length ? "line dashed" : "line" });
        line.style.borderTopColor = s.colour;
        legend.append(el("span", { class: "key" }, line, s.label));
      }
    }
    const hasAcc = present.some((s) => s.axis === "acc");
    const R = hasAcc ? 40 : 12, T = 10, B = 36;
    const ph = H - T - B;
    let L = 52, pw = W - L - R;

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#80868f";
    if (!h.length) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("press play (or step) to train: the loss per epoch appears here", L + pw / 2, T + ph / 2);
      ctx.strokeStyle = "#e3e3de";
      ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);
      return;
    }

    const losses = [];
    for (const e of h) for (const k of ["loss", "val_loss"]) if (Number.isFinite(e[k])) losses.push(e[k]);
    let lo = Math.min(...losses), hi = Math.max(...losses);
    if (!losses.length) { lo = 0; hi = 1; }
    const log = lo > 0 && hi / lo > 4;
    let yOf, ticks = [];
    if (log) {
      const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
      const l0 = Math.log10(lo) - 0.02 * (b - a), l1 = Math.log10(hi) + 0.02 * (b - a);
      yOf = (v) => T + ph * (1 - (Math.log10(v) - l0) / (l1 - l0));
      const every = Math.max(1, Math.ceil((b - a) / 6));   // at most about 6 powers of ten
      for (let p = Math.ceil(a / every) * every; p <= b; p += every) {
        for (const m of b - a <= 2 ? [1, 2, 5] : [1]) {
          const v = m * 10 ** p;
          if (v >= 10 ** l0 && v <= 10 ** l1) ticks.push(v);
        }
      }
    } else {
      if (hi === lo) { hi += Math.abs(hi) * 0.1 + 1e-3; lo -= Math.abs(lo) * 0.1 + 1e-3; }
      const pad = (hi - lo) * 0.06;
      lo -= pad; hi += pad;
      const step = niceStep(hi - lo, 5);
      for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
      yOf = (v) => T + ph * (1 - (v - lo) / (hi - lo));
    }
    // room on the left for the widest tick label and the axis' title
    const labels = ticks.map((v) => tickLabel(v, log));
    L = Math.max(44, Math.ceil(Math.max(0, ...labels.map((t) => ctx.measureText(t).width))) + 30);
    pw = W - L - R;
    const e0 = Math.min(0, h[0].epoch - 1), e1 = Math.max(h[h.length - 1].epoch, e0 + 5);
    const xOf = (e) => L + (pw * (e - e0)) / (e1 - e0);
    const accY = (v) => T + ph * (1 - v);

    // grid and axes
    ctx.strokeStyle = "#eeeeea";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ticks.forEach((v, i) => {
      const y = Math.round(yOf(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(L, y);
      ctx.lineTo(L + pw, y);
      ctx.stroke();
      ctx.fillText(labels[i], L - 6, y);
    });
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xstep = niceStep(e1 - e0, 6);
    for (let e = Math.ceil(e0 / xstep) * xstep; e <= e1; e += xstep) {
      const x = Math.round(xOf(e)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, T + ph);
      ctx.lineTo(x, T + ph + 4);
      ctx.strokeStyle = "#c9c9c3";
      ctx.stroke();
      ctx.fillText(String(Math.round(e)), x, T + ph + 6);
    }
    ctx.textAlign = "center";
    ctx.fillText("epoch", L + pw / 2, T + ph + 21);
    if (hasAcc) {
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      for (const v of [0, 0.25, 0.5, 0.75, 1]) ctx.fillText(`${Math.round(v * 100)}%`, L + pw + 5, accY(v));
    }
    ctx.save();
    ctx.translate(12, T + ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(log ? "loss (log scale)" : "loss", 0, 0);
    ctx.restore();
    ctx.strokeStyle = "#c9c9c3";
    ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);

    // the series
    ctx.save();
    ctx.beginPath();
    ctx.rect(L, T, pw, ph);
    ctx.clip();
    // at most about two epochs per pixel across (and always the last): a long run draws as fast as a short one
    const stride = Math.max(1, Math.floor(h.length / (2 * pw)));
    const drawn = h.filter((_, i) => i % stride === 0 || i === h.length - 1);
    for (const s of present) {
      const y = s.axis === "acc" ? accY : yOf;
      ctx.beginPath();
      let pen = false;
      for (const e of drawn) {
        const v = e[s.key];
        if (!Number.isFinite(v) || (log && s.axis === "loss" && v <= 0)) {
          pen = false;
          continue;
        }
        const px = xOf(e.epoch), py = y(v);
        if (pen) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
        pen = true;
      }
      ctx.setLineDash(s.dash);
      ctx.strokeStyle = s.colour;
      ctx.lineWidth = s.axis === "acc" ? 1.6 : 2;
      ctx.globalAlpha = s.axis === "acc" ? 0.85 : 1;
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    ctx.setLineDash([]);
    const last = h[h.length - 1];
    if (Number.isFinite(last.loss) && (!log || last.loss > 0)) {
      ctx.beginPath();
      ctx.arc(xOf(last.epoch), yOf(last.loss), 3, 0, 2 * Math.PI);
      ctx.fillStyle = "#0877bd";
      ctx.fill();
    }
    ctx.restore();
  }

  // ---------------------------------------------------------------- frames

  function ingest(f) {
    counters.framesReceived++;
    if (f.reset || state.fresh) {
      state.history = [];
      state.path = [];
      state.chartDirty = true;
      state.surfaceDirty = true;
    }
    state.fresh = false;
    for (const e of f.history || []) {
      // an epoch the chart already has is replaced, with everything after it
      while (state.history.length && state.history[state.history.length - 1].epoch >= e.epoch) state.history.pop();
      state.history.push(e);
      state.chartDirty = true;
    }
    if (f.surface) {  // the path left the surface: the server drew it wider
      setupSurface(f.surface);
      surface.base = null;
      state.surfaceDirty = true;
    }
    if (f.path && f.path.length) {
      for (const p of f.path) state.path.push(p);
      state.surfaceDirty = true;
    }
    state.latest = f;
    counters.lastFrame = f;
    counters.pathPoints = state.path.length;
    counters.epochsCharted = state.history.length;
    if ((f.error || null) !== state.frameError) {
      state.frameError = f.error || null;
      showErrors();
    }
    showStatus(f);
    refreshPlug(f);
    schedule();
  }

  function schedule() {
    if (state.scheduled) return;
    state.scheduled = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    state.scheduled = false;
    const f = state.latest;
    if (!f) {
      if (state.chartDirty) drawChart();
      state.chartDirty = false;
      return;
    }
    const began = performance.now();
    try {
      if (plane.view) drawPlane(f);
      if (surface.view && state.surfaceDirty) {
        drawSurface();
        state.surfaceDirty = false;
      }
      if (weights.groups.length) drawWeights(f);
      drawStats(f.stats);
      if (state.chartDirty) {
        drawChart();
        state.chartDirty = false;
      }
    } finally {
      counters.drawMs += performance.now() - began;
      counters.framesDrawn++;
      if (counters.firstFrameAt === null) counters.firstFrameAt = performance.now();
    }
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("open", () => {
      state.fresh = true;
    });
    source.addEventListener("frame", (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (err) {
        console.error("dlc play: a frame that is not JSON", err);
        return;
      }
      ingest(f);
    });
    source.addEventListener("error", () => {
      // EventSource reconnects by itself; the next frame is a full one again
      state.fresh = true;
    });
  }

  // ---------------------------------------------------------------- start

  async function start() {
    bindControls();
    let model;
    try {
      model = await request("/api/model");
    } catch (err) {
      state.frameError = `could not load the model from the server: ${err.message}`;
      showErrors();
      return;
    }
    state.model = model;
    fillHeader(model);
    fillControls(model);
    drawDiagram(model.diagram);
    drawFormulas(model.formulas);
    bindFormulas();
    const views = model.views || {};
    if (views.plane) setupPlane(views.plane);
    if (views.surface) setupSurface(views.surface);
    if (views.weights && views.weights.length) setupWeights(views.weights);
    if (!views.plane && !views.surface && !(views.weights && views.weights.length)) $("no-view").hidden = false;
    if (surface.view) drawSurface();
    drawChart();
    new ResizeObserver(() => {
      state.chartDirty = true;
      schedule();
    }).observe($("loss-chart").parentElement);
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
