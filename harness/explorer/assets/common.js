"use strict";
// Shared helpers of the explorer pages. Every text a page shows goes through textContent:
// data never becomes markup.
const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = String(v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  setAttrs(e, attrs);
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

async function readRows() {
  const plain = readJson("rows");
  if (plain) return plain;
  const node = document.getElementById("rows-gz");
  if (!node) return null;
  const bin = atob(node.textContent.trim());
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

// A score: the number itself, or an object's score/value.
function num(v) {
  if (typeof v === "number") return v;
  if (v && typeof v === "object") {
    for (const k of ["score", "value", "mean"]) if (typeof v[k] === "number") return v[k];
  }
  return null;
}

// Integers as integers, other numbers with 4 decimals.
function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v !== "number") return typeof v === "string" ? v : JSON.stringify(v);
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(4);
}

// A confidence interval [lo, hi] (or {lo, hi} / {low, high}) as text, or "".
function ci(v) {
  if (!v) return "";
  let lo, hi;
  if (Array.isArray(v) && v.length === 2) [lo, hi] = v;
  else if (typeof v === "object") {
    lo = v.lo ?? v.low ?? v.lower;
    hi = v.hi ?? v.high ?? v.upper;
  }
  if (typeof lo !== "number" || typeof hi !== "number") return "";
  return `[${lo.toFixed(4)}, ${hi.toFixed(4)}]`;
}

function numCell(v, attrs) {
  const n = typeof v === "number" ? v : num(v);
  return el("td", Object.assign({ class: "num", "data-value": n === null ? "" : String(n) }, attrs || {}), fmt(n));
}

// A score (a fraction): always 4 decimals, 0 included.
function scoreCell(v, attrs) {
  const cell = numCell(v, attrs);
  const n = Number(cell.getAttribute("data-value"));
  if (cell.getAttribute("data-value") !== "" && Number.isFinite(n)) cell.textContent = n.toFixed(4);
  return cell;
}

function table(head, rows, attrs) {
  return el(
    "table",
    attrs,
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows),
  );
}

function section(title, id, ...children) {
  return el("section", { id }, el("h2", {}, title), ...children);
}

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"];

// Grouped horizontal bars: groups [{label, values: [number|null]}], series names.
function barChart(groups, series, opts) {
  const o = Object.assign({ max: 1, width: 720, bar: 9, label: 150 }, opts || {});
  const rowH = o.bar * series.length + 8;
  const h = groups.length * rowH + 40;
  const plotW = o.width - o.label - 60;
  const max = o.max || Math.max(1e-9, ...groups.flatMap((g) => g.values.filter((v) => v !== null)));
  const root = svg("svg", { width: o.width, height: h, viewBox: `0 0 ${o.width} ${h}`, class: "chart", role: "img" });
  if (o.title) root.append(svg("title", {}, o.title));
  for (let t = 0; t <= 4; t++) {
    const x = o.label + (plotW * t) / 4;
    root.append(svg("line", { x1: x, x2: x, y1: 4, y2: h - 30, class: "grid" }));
    root.append(svg("text", { x, y: h - 16, "text-anchor": "middle", class: "tick" }, ((max * t) / 4).toFixed(2)));
  }
  groups.forEach((g, i) => {
    const y0 = 6 + i * rowH;
    root.append(svg("text", { x: o.label - 6, y: y0 + rowH / 2, "text-anchor": "end", class: "label" }, g.label));
    g.values.forEach((v, j) => {
      if (v === null || v === undefined) return;
      const w = Math.max(0, (plotW * v) / max);
      root.append(
        svg("rect", { x: o.label, y: y0 + j * o.bar, width: w, height: o.bar - 1, fill: PALETTE[j % PALETTE.length] },
          svg("title", {}, `${g.label} · ${series[j]}: ${fmt(v)}`)),
      );
    });
  });
  series.forEach((s, j) => {
    const x = o.label + j * 130;
    root.append(svg("rect", { x, y: h - 12, width: 10, height: 10, fill: PALETTE[j % PALETTE.length] }));
    root.append(svg("text", { x: x + 14, y: h - 3, class: "legend" }, s));
  });
  return root;
}

// Scatter of points [{x, y, label, best}] with numeric or categorical x.
function scatter(points, xName, yName, opts) {
  const o = Object.assign({ width: 360, height: 260 }, opts || {});
  const m = { l: 50, r: 12, t: 12, b: 46 };
  const numeric = points.every((p) => typeof p.x === "number");
  const cats = numeric ? [] : [...new Set(points.map((p) => JSON.stringify(p.x)))];
  const xs = points.map((p) => (numeric ? p.x : cats.indexOf(JSON.stringify(p.x))));
  const ys = points.map((p) => p.y);
  const [x0, x1] = numeric ? [Math.min(...xs), Math.max(...xs)] : [-0.5, cats.length - 0.5];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const W = o.width - m.l - m.r, H = o.height - m.t - m.b;
  const sx = (x) => m.l + (x1 === x0 ? W / 2 : ((x - x0) / (x1 - x0)) * W);
  const sy = (y) => m.t + H - ((y - y0) / (y1 - y0)) * H;
  const root = svg("svg", { width: o.width, height: o.height, class: "chart scatter", role: "img" });
  root.append(svg("rect", { x: m.l, y: m.t, width: W, height: H, class: "frame" }));
  for (const t of [y0, (y0 + y1) / 2, y1]) {
    root.append(svg("text", { x: m.l - 4, y: sy(t) + 4, "text-anchor": "end", class: "tick" }, fmt(t)));
  }
  const ticks = numeric ? [x0, (x0 + x1) / 2, x1] : cats.map((_, i) => i);
  for (const t of ticks) {
    const text = numeric ? fmt(t) : cats[t];
    root.append(svg("text", { x: sx(t), y: m.t + H + 14, "text-anchor": "middle", class: "tick" }, text));
  }
  root.append(svg("text", { x: m.l + W / 2, y: o.height - 6, "text-anchor": "middle", class: "label" }, xName));
  root.append(svg("text", { x: 12, y: m.t + H / 2, transform: `rotate(-90 12 ${m.t + H / 2})`, "text-anchor": "middle", class: "label" }, yName));
  points.forEach((p, i) => {
    root.append(
      svg("circle", { cx: sx(xs[i]), cy: sy(p.y), r: p.best ? 7 : 4.5, class: p.best ? "pt best" : "pt" },
        svg("title", {}, `${p.label}: ${xName} = ${JSON.stringify(p.x)}, ${yName} = ${fmt(p.y)}`)),
    );
  });
  return root;
}
