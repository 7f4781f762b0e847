// The live page of threeclients: a space-time diagram of the clients'
// messages, their cards, and a command form. Plain JS, no build step.
// The feed (/api/events) sends a snapshot, then one event per message;
// after a re-sync it sends a new snapshot, which replaces everything.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const MARGIN = 80, TOP = 14;
let COL_W = 200; // set from the pane's width at each snapshot
const PX_PER_MS = 0.08;          // 80 px per second of real time...
const GAP_MIN = 5, GAP_MAX = 140; // ...but at least 5 px and at most 140 px between events
const MAX_ARROWS = 3000;          // the diagram keeps this many arrows, the newest
const ARROW_KINDS = ["REQUEST", "REPLY", "RELEASE", "HELLO", "DATA"];

// The diagram's own style, inside the SVG so that an exported SVG looks
// the same.
const SVG_STYLE = `
.life { stroke: #99a; stroke-width: 1; }
.arrow line { stroke-width: 1.4; }
.arrow text { font: 10px ui-monospace, monospace; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.k-REQUEST line { stroke: #1f5fbf; } .k-REQUEST text { fill: #1f5fbf; }
.k-REPLY line { stroke: #1c8a3a; } .k-REPLY text { fill: #1c8a3a; }
.k-RELEASE line { stroke: #c0392b; } .k-RELEASE text { fill: #c0392b; }
.k-HELLO line { stroke: #999; stroke-dasharray: 2 3; } .k-HELLO text { fill: #888; }
.k-DATA line { stroke: #8e44ad; stroke-dasharray: 4 2; } .k-DATA text { fill: #8e44ad; }
.arrow.flight line { stroke-dasharray: 5 4; }
.arrow.partial line { stroke-dasharray: 1 3; }
.cs { fill: #c0392b; fill-opacity: .22; stroke: #c0392b; stroke-width: 1; }
.cs.open { fill-opacity: .35; }
.cstext { font: 10px system-ui, sans-serif; fill: #c0392b; }
.peerup { fill: #999; } .peerdown { fill: none; stroke: #c0392b; }
.now { stroke: #f39c12; stroke-width: 1; stroke-dasharray: 3 3; }
.hide-HELLO .k-HELLO, .hide-DATA .k-DATA { display: none; }
`;

const $ = (id) => document.getElementById(id);
const svg = $("diagram");

// Counters the tests and the measurements read.
window.liveStats = { events: 0, snapshots: 0, resyncs: 0, lastSeq: 0 };

let model;       // what the diagram shows; rebuilt from each snapshot
let serverNow;   // {t: server microseconds, at: performance.now()} of the last snapshot or event

function newModel(snap) {
  return {
    members: snap.members, local: snap.local,
    lastT: null, lastY: TOP,
    pending: new Map(),   // "from|to|kind|clock" -> [arrow], sends not yet received
    arrows: [], inFlight: new Set(),
    bands: new Map(),     // client -> open band
    cards: snap.cards || {},
    layers: null,
  };
}

function colX(id) {
  const i = model.members.indexOf(id);
  return MARGIN + (i < 0 ? model.members.length : i) * COL_W;
}

// yAt is the diagram's y for server time t (microseconds): real time,
// squeezed so that a busy second and an idle minute both fit.
function yAt(t) {
  if (model.lastT === null) return model.lastY;
  const gap = (t - model.lastT) / 1000 * PX_PER_MS;
  return model.lastY + Math.min(GAP_MAX, Math.max(0, gap));
}

function place(t) {
  let y = TOP + 10;
  if (model.lastT !== null) {
    const gap = (t - model.lastT) / 1000 * PX_PER_MS;
    y = model.lastY + Math.min(GAP_MAX, Math.max(GAP_MIN, gap));
  }
  model.lastT = t; model.lastY = y;
  return y;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function resetDiagram() {
  svg.textContent = "";
  const style = el("style", {}, svg);
  style.textContent = SVG_STYLE;
  const defs = el("defs", {}, svg);
  for (const [k, c] of [["REQUEST", "#1f5fbf"], ["REPLY", "#1c8a3a"], ["RELEASE", "#c0392b"], ["HELLO", "#999"], ["DATA", "#8e44ad"]]) {
    const m = el("marker", { id: "head-" + k, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: c }, m);
  }
  model.layers = { life: el("g", {}, svg), bands: el("g", {}, svg), arrows: el("g", {}, svg), marks: el("g", {}, svg) };
  model.nowLine = el("line", { class: "now" }, svg);
  applyToggles();
}

function applyToggles() {
  for (const k of ["HELLO", "DATA"]) svg.classList.toggle("hide-" + k, !$("show-" + k).checked);
}

// apply adds one event of the feed to the model and the diagram.
function apply(ev) {
  window.liveStats.events++;
  window.liveStats.lastSeq = ev.seq;
  serverNow = { t: ev.t, at: performance.now() };
  switch (ev.type) {
    case "msg": return applyMsg(ev);
    case "enter": return applyBand(ev, true);
    case "exit": return applyBand(ev, false);
    case "client": model.cards[ev.client] = ev.card; return scheduleCards();
    case "out": return addOutput(ev.text);
    case "lost": return addOutput(`(${ev.lost} events of the feed were lost: the page's hub fell behind)`);
  }
}

function applyMsg(ev) {
  if (ev.kind === "PEERUP" || ev.kind === "PEERDOWN") {
    const y = place(ev.t);
    const up = ev.kind === "PEERUP";
    el("circle", { class: up ? "peerup" : "peerdown", cx: colX(ev.client), cy: y, r: 3 }, model.layers.marks)
      .appendChild(title(`client ${ev.client}: peer ${ev.from} ${up ? "up" : "down"}`));
    return;
  }
  if (!ARROW_KINDS.includes(ev.kind)) return;
  const key = `${ev.from}|${ev.to}|${ev.kind}|${ev.clock}`;
  const y = place(ev.t);
  if (ev.sent && !model.local.includes(ev.to)) { // its receive is not on this page: another process's
    const b = addArrow(ev, y, y + 24);
    b.g.classList.add("partial");
    return;
  }
  if (ev.sent) {
    const a = addArrow(ev, y, null);
    if (!model.pending.has(key)) model.pending.set(key, []);
    model.pending.get(key).push(a);
    model.inFlight.add(a);
    return;
  }
  const q = model.pending.get(key);
  const a = q && q.shift();
  if (q && q.length === 0) model.pending.delete(key);
  if (a) {
    model.inFlight.delete(a);
    a.y2 = y;
    a.g.classList.remove("flight");
    a.g.dataset.state = "done";
    drawArrow(a);
  } else { // its send is not on this page (another process, or before the history)
    const b = addArrow(ev, y - 24, y);
    b.g.classList.add("partial");
    b.g.dataset.state = "done";
  }
}

function title(text) {
  const t = document.createElementNS(SVGNS, "title");
  t.textContent = text;
  return t;
}

function addArrow(ev, y1, y2) {
  const g = el("g", { class: `arrow k-${ev.kind}` + (y2 === null ? " flight" : "") }, model.layers.arrows);
  g.dataset.from = ev.from; g.dataset.to = ev.to; g.dataset.kind = ev.kind; g.dataset.clock = ev.clock;
  g.dataset.state = y2 === null ? "flight" : "done";
  const a = { g, from: ev.from, to: ev.to, y1, y2, line: el("line", { "marker-end": `url(#head-${ev.kind})` }, g), text: el("text", {}, g) };
  a.text.textContent = `${ev.kind}@${ev.clock}`;
  g.appendChild(title(`${ev.kind}@${ev.clock} from ${ev.from} to ${ev.to}`));
  model.arrows.push(a);
  if (model.arrows.length > MAX_ARROWS + 500) prune();
  drawArrow(a);
  return a;
}

// prune drops the oldest arrows beyond MAX_ARROWS, and the bands and marks
// above the oldest arrow kept.
function prune() {
  const old = model.arrows.splice(0, model.arrows.length - MAX_ARROWS);
  for (const o of old) { o.g.remove(); model.inFlight.delete(o); }
  const cut = model.arrows[0].y1;
  for (const layer of [model.layers.bands, model.layers.marks]) {
    for (const e of [...layer.children]) {
      const y = +(e.getAttribute("y") || e.getAttribute("cy"));
      const h = +(e.getAttribute("height") || 0);
      if (y + h < cut && !e.classList.contains("open")) e.remove();
    }
  }
}

function drawArrow(a, nowY) {
  const x1 = colX(a.from), x2 = colX(a.to);
  const y2 = a.y2 !== null ? a.y2 : nowY !== undefined ? nowY : a.y1 + 2;
  // An arrow in flight runs toward the receiver's line as far as time has gone.
  const f = a.y2 !== null ? 1 : Math.min(1, Math.max(0.05, (y2 - a.y1) / GAP_MAX));
  const xe = x1 + (x2 - x1) * f;
  a.line.setAttribute("x1", x1); a.line.setAttribute("y1", a.y1);
  a.line.setAttribute("x2", xe); a.line.setAttribute("y2", y2);
  const mx = (x1 + xe) / 2, my = (a.y1 + y2) / 2;
  a.text.setAttribute("x", mx + (x2 > x1 ? 4 : -4)); a.text.setAttribute("y", my - 3);
  a.text.setAttribute("text-anchor", x2 > x1 ? "start" : "end");
}

function applyBand(ev, enter) {
  const y = place(ev.t);
  const x = colX(ev.client);
  if (enter) {
    const r = el("rect", { class: "cs open", x: x - 7, y, width: 14, height: 1 }, model.layers.bands);
    r.dataset.client = ev.client; r.dataset.clock = ev.clock;
    r.appendChild(title(`client ${ev.client} holds the lock, granted at (${ev.clock}, ${ev.client})`));
    const label = el("text", { class: "cstext", x: x + 10, y: y + 10 }, model.layers.bands);
    label.textContent = `CS (${ev.clock},${ev.client})`;
    model.bands.set(ev.client, { r, y });
    return;
  }
  const b = model.bands.get(ev.client);
  if (!b) return;
  b.r.setAttribute("height", Math.max(1, y - b.y));
  b.r.classList.remove("open");
  b.r.dataset.blocks = ev.blocks || 0;
  model.bands.delete(ev.client);
}

// frame redraws what moves with time: arrows in flight, open bands, the
// line of now; and keeps the newest events in view.
function frame() {
  requestAnimationFrame(frame);
  if (!model || !serverNow) return;
  const t = serverNow.t + (performance.now() - serverNow.at) * 1000;
  const ny = yAt(t);
  for (const a of model.inFlight) drawArrow(a, ny);
  for (const b of model.bands.values()) b.r.setAttribute("height", Math.max(1, ny - b.y));
  const w = MARGIN * 2 + (model.members.length - 1) * COL_W;
  model.nowLine.setAttribute("x1", MARGIN - 40); model.nowLine.setAttribute("x2", w - MARGIN + 40);
  model.nowLine.setAttribute("y1", ny); model.nowLine.setAttribute("y2", ny);
  const h = Math.max(ny + 60, 300);
  if (svg.getAttribute("height") != Math.ceil(h)) {
    svg.setAttribute("height", Math.ceil(h)); svg.setAttribute("width", w);
    svg.setAttribute("viewBox", `0 0 ${w} ${Math.ceil(h)}`);
    drawLifelines(h);
  }
  if ($("follow").checked) {
    const s = $("diagram-scroll");
    s.scrollTop = s.scrollHeight;
  }
}

function drawLifelines(h) {
  model.layers.life.textContent = "";
  for (const id of model.members) {
    el("line", { class: "life", x1: colX(id), x2: colX(id), y1: 0, y2: h }, model.layers.life);
  }
}

// ---- the cards ----

let cardsDue = false;
function scheduleCards() {
  if (cardsDue) return;
  cardsDue = true;
  setTimeout(() => { cardsDue = false; renderCards(); }, 30);
}

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    if (k === "class") e.className = attrs[k];
    else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())] = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// peerView says how the clients of this process see member id: "up" when
// every one that has it as a peer sees it up.
function peerView(id) {
  let seen = 0, down = 0;
  for (const c of Object.values(model.cards)) {
    const s = c.peers && c.peers[id];
    if (s === undefined) continue;
    seen++;
    if (s !== "up") down++;
  }
  return seen === 0 ? "unknown" : down > 0 ? "down" : "up";
}

function renderCards() {
  if (!model) return;
  const heights = Object.values(model.cards).map((c) => c.height);
  const top = heights.length ? Math.max(...heights) : 0;
  const root = $("cards");
  root.textContent = "";
  const cols = $("columns");
  cols.textContent = "";
  for (const id of model.members) {
    const c = model.cards[id];
    const view = peerView(id);
    const col = h("div", { class: "col" + (c && c.held ? " held" : ""), style: `left:${colX(id)}px` }, `client ${id}`,
      h("span", { class: "clk" }, c ? `clock ${c.clock}` : view === "down" ? "down" : "remote"));
    cols.append(col);
    const card = h("div", { class: "card" + (c && c.held ? " held" : ""), id: "card-" + id, "data-id": id }, h("h3", {}, `client ${id}`));
    const head = card.firstChild;
    if (view === "down") head.append(h("span", { class: "marker down" }, "down"));
    if (!c) {
      head.append(h("span", { class: "marker" }, "in another process"));
      root.append(card);
      continue;
    }
    if (c.held) head.append(h("span", { class: "marker holds" }, "holds the lock"));
    if (c.height < top) head.append(h("span", { class: "marker behind" }, `behind by ${top - c.height}`));
    if (c.failed) head.append(h("span", { class: "marker down" }, c.failed === "exited" ? "exited" : "stopped: " + c.failed));
    card.append(h("div", { class: "row" }, h("span", { class: "k" }, "clock "), h("b", { class: "clock" }, String(c.clock)),
      c.waiting ? h("span", { class: "k" }, ` · ${c.waiting} waiting`) : null));
    const q = h("ol", { class: "queue" });
    c.queue.forEach((t, i) => q.append(h("li", { class: i === 0 ? "head" : "", "data-clock": t.clock, "data-id": t.id, title: i === 0 ? "head of the queue" : "" }, `(${t.clock},${t.id})`)));
    card.append(h("div", { class: "row" }, h("span", { class: "k" }, "queue "), c.queue.length ? q : h("span", { class: "k" }, "empty")));
    if (c.missing.length) card.append(h("div", { class: "row missing", "data-missing": c.missing.join(",") }, h("span", { class: "k" }, "waits for "), c.missing.join(", ")));
    const peers = Object.entries(c.peers).map(([p, s]) => `${p} ${s}`).join(", ");
    card.append(h("div", { class: "row" }, h("span", { class: "k" }, "peers "), peers));
    const bal = h("table", { class: "balances" });
    for (const m of model.members) bal.append(h("tr", { "data-id": m }, h("td", {}, m), h("td", { class: "amount" }, String(c.balances[m]))));
    card.append(h("div", { class: "row" }, h("span", { class: "k" }, `chain, height ${c.height}`)));
    const chain = h("ol", { class: "chain" });
    for (const b of c.chain) {
      const li = h("li", { "data-height": b.height, "data-hash": b.hash, "data-prev": b.prev || "", "data-from": b.from || "", "data-to": b.to || "", "data-amount": b.amount || 0, "data-clock": b.clock },
        `#${b.height} `, h("span", { class: "hash" }, b.hash));
      if (b.height > 0) li.append(" ← ", h("span", { class: "prev" }, b.prev), `: ${b.from} → ${b.to} ${b.amount} @${b.clock}`);
      else li.append(" genesis");
      chain.append(li);
    }
    card.append(chain, h("div", { class: "row" }, h("span", { class: "k" }, "balances")), bal);
    root.append(card);
  }
}

// ---- output and commands ----

// Output lines wait in outLines and reach the DOM once per frame, so that
// a burst of lines costs one layout.
const OUT_LINES = 400;
let outLines = [], outDue = false;
function addOutput(text) {
  outLines.push(text);
  if (outLines.length > 2 * OUT_LINES) outLines.splice(0, outLines.length - OUT_LINES);
  if (!outDue) { outDue = true; requestAnimationFrame(flushOutput); }
}

function flushOutput() {
  outDue = false;
  if (outLines.length > OUT_LINES) outLines.splice(0, outLines.length - OUT_LINES);
  const out = $("out");
  out.textContent = outLines.join("\n") + "\n";
  out.scrollTop = out.scrollHeight;
}

$("command").addEventListener("submit", async (e) => {
  e.preventDefault();
  const line = $("cmd-line").value;
  $("cmd-error").textContent = "";
  try {
    const r = await fetch("api/command", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ client: $("cmd-client").value, line }) });
    if (!r.ok) { $("cmd-error").textContent = (await r.text()).trim(); return; }
    $("cmd-line").value = "";
  } catch (err) {
    $("cmd-error").textContent = String(err);
  }
});

function fillClients() {
  const sel = $("cmd-client");
  const was = sel.value;
  sel.textContent = "";
  for (const id of model.local) sel.append(h("option", { value: id }, id));
  if (model.local.includes(was)) sel.value = was;
}

// ---- export ----

// exportSVG returns the diagram as a standalone SVG document: its own
// style inside, the clients named, without the line of now and the kinds
// hidden by the check boxes.
function exportSVG() {
  const copy = svg.cloneNode(true);
  copy.querySelectorAll(".now").forEach((n) => n.remove());
  for (const k of ["HELLO", "DATA"]) if (!$("show-" + k).checked) copy.querySelectorAll(".k-" + k).forEach((n) => n.remove());
  const names = el("g", {}, copy);
  for (const id of model.members) el("text", { x: colX(id) - 20, y: 11, "font-family": "sans-serif", "font-size": 12, "font-weight": "bold" }, names).textContent = `client ${id}`;
  return new XMLSerializer().serializeToString(copy);
}
window.exportSVG = exportSVG;

$("export-svg").addEventListener("click", () => {
  const blob = new Blob([exportSVG()], { type: "image/svg+xml" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "threeclients-diagram.svg";
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
});

for (const k of ["HELLO", "DATA"]) $("show-" + k).addEventListener("change", applyToggles);

// ---- the feed ----

function loadSnapshot(snap) {
  window.liveStats.snapshots++;
  if (snap.resync) window.liveStats.resyncs++;
  model = newModel(snap);
  const width = $("diagram-scroll").clientWidth || 800;
  COL_W = Math.max(160, Math.floor((width - 2 * MARGIN) / Math.max(1, model.members.length - 1)));
  resetDiagram();
  outLines = [];
  for (const ev of snap.output || []) addOutput(ev.text);
  for (const ev of snap.events || []) apply(ev);
  window.liveStats.lastSeq = snap.seq;
  serverNow = { t: snap.now, at: performance.now() };
  fillClients();
  renderCards();
  svg.removeAttribute("height");
}

function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("snapshot", (m) => {
    loadSnapshot(JSON.parse(m.data));
    $("conn").textContent = "live"; $("conn").className = "conn live";
  });
  es.onmessage = (m) => { if (model) apply(JSON.parse(m.data)); };
  es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn down"; };
}

setInterval(() => {
  const s = window.liveStats;
  $("feedstats").textContent = `${s.events} events · ${s.resyncs} re-syncs`;
}, 500);

connect();
requestAnimationFrame(frame);
