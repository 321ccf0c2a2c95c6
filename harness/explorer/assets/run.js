// The run page: header, scores, comparison, charts, per-stage facts and the row explorer.
const DATA = readJson("data");
const app = document.getElementById("app");
const MODES = DATA.modes;
const PAGE_SIZES = [50, 200, 1000];

function headerSection() {
  const h = DATA.header || {};
  const facts = [
    ["spec", h.spec], ["platform", h.platform], ["engine", h.engine], ["model", h.model],
    ["parser", DATA.parser], ["rows", DATA.n_rows], ["run started", h.started],
  ].filter(([, v]) => v !== undefined && v !== null && v !== "");
  const dl = el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, fmt(v))]));
  const stages = (h.stages || []).map((s) =>
    el("tr", { "data-stage": s.name }, el("td", {}, s.name), el("td", { class: "mono" }, s.key || ""), numCell(s.wall_s), el("td", {}, s.env || "")));
  const data = (h.data || []).map((d) =>
    el("tr", {}, el("td", {}, d.name), el("td", { class: "mono" }, d.path || ""), el("td", { class: "mono" }, d.sha256 || "")));
  return el("header", { id: "header" },
    el("h1", {}, DATA.title),
    dl,
    stages.length ? el("details", { open: true }, el("summary", {}, "stages"),
      table(["stage", "key", "wall s", "env"], stages, { id: "stages-table" })) : null,
    data.length ? el("details", {}, el("summary", {}, "data digests"),
      table(["file", "path", "sha256"], data, { id: "data-table" })) : null);
}

function taskButton(task) {
  return el("button", { class: "link", "data-task-link": task, onclick: () => openTask(task) }, task);
}

function scoresSection() {
  const scores = DATA.scores;
  const first = scores[MODES[0]];
  if (!first) return null;
  const head = ["task", "type", "metric", "n", ...MODES];
  const rows = Object.entries(first.tasks).map(([task, t]) =>
    el("tr", { "data-task": task },
      el("td", {}, taskButton(task)), el("td", {}, t.task_type), el("td", {}, t.metric), numCell(t.n),
      MODES.map((m) => {
        const v = scores[m].tasks[task] || {};
        const band = ci(v.ci) || (typeof v.stderr === "number" ? `± ${v.stderr.toFixed(4)}` : "");
        const cell = scoreCell(v.score, { "data-mode": m });
        if (band) cell.append(el("span", { class: "ci" }, " " + band));
        return cell;
      })));
  const tracks = [["overall", (s) => s.overall, (s) => s.overall_ci ?? (s.ci && !Array.isArray(s.ci) ? s.ci.overall : null)]];
  for (const tr of Object.keys(first.tracks)) tracks.push([tr, (s) => s.tracks[tr], (s) => (s.tracks[tr] || {}).ci ?? (s.tracks_ci || {})[tr]]);
  const trackRows = tracks.map(([name, get, band]) =>
    el("tr", { "data-track": name }, el("td", {}, name === "overall" ? el("b", {}, name) : name),
      MODES.map((m) => {
        const cell = scoreCell(get(scores[m]), { "data-mode": m });
        const b = ci(band(scores[m]));
        if (b) cell.append(el("span", { class: "ci" }, " " + b));
        return cell;
      })));
  return section("Scores", "scores",
    el("p", { class: "note" }, `Primary parser: ${DATA.parser}. Click a task to see its rows.`),
    table(["", ...MODES], trackRows, { id: "overall-table" }),
    table(head, rows, { id: "scores-table" }));
}

function comparisonSection() {
  const base = DATA.facts.baselines;
  const comps = DATA.facts.comparisons;
  if (!base && !comps) return null;
  const parts = [];
  if (base) {
    const names = Object.keys(base);
    const rows = [["overall score", (b) => b.overall]];
    const keys = (f) => [...new Set(names.flatMap((n) => Object.keys(base[n][f] || {})))].sort();
    for (const t of keys("task_types")) rows.push([`score: ${t}`, (b) => (b.task_types || {})[t]]);
    for (const k of keys("parse_rates")) rows.push([k, (b) => (b.parse_rates || {})[k]]);
    const nScores = rows.length;
    for (const k of keys("inference")) rows.push([k, (b) => (b.inference || {})[k]]);
    parts.push(table(["", ...names],
      rows.map(([label, get], i) => el("tr", { "data-key": label }, el("td", {}, label),
        names.map((n) => (i < nScores ? scoreCell : numCell)(get(base[n]), { "data-run": n })))),
      { id: "baseline-table" }));
    const types = keys("task_types");
    if (types.length) {
      parts.push(barChart(types.map((t) => ({ label: t, values: names.map((n) => num((base[n].task_types || {})[t])) })),
        names, { title: "score per task type" }));
    }
  }
  if (comps && typeof comps === "object") {
    for (const [name, c] of Object.entries(comps)) {
      if (!c || typeof c !== "object") continue;
      const rows = [];
      const add = (label, v, attrs) => {
        if (!v || typeof v !== "object") return;
        const sig = Array.isArray(v.ci) && (v.ci[0] > 0 || v.ci[1] < 0);
        rows.push(el("tr", Object.assign({ class: sig ? "sig" : "" }, attrs), el("td", {}, label),
          scoreCell(v.a), scoreCell(v.b), scoreCell(v.delta), el("td", { class: "num" }, ci(v.ci)), numCell(v.p_value)));
      };
      add("overall", c.overall, { "data-key": "overall" });
      for (const [k, v] of Object.entries(c.tracks || {})) add(`track ${k}`, v, { "data-key": `track/${k}` });
      for (const [k, v] of Object.entries(c.tasks || {})) add(k, v, { "data-key": `task/${k}` });
      if (rows.length) {
        parts.push(el("h3", {}, `paired comparison with ${name}`),
          table(["", "a", "b", "delta", "ci", "p"], rows, { class: "comparison", "data-baseline": name }));
      }
    }
  }
  return section("Comparison with baselines", "comparison", parts);
}

function chartsSection() {
  const first = DATA.scores[MODES[0]];
  if (!first) return null;
  const tasks = Object.keys(first.tasks);
  return section("Per-task scores", "charts",
    barChart(tasks.map((t) => ({ label: t, values: MODES.map((m) => num((DATA.scores[m].tasks[t] || {}).score)) })),
      MODES, { title: "score per task and parser" }));
}

function stagesSection() {
  const stages = DATA.facts.stages || {};
  const names = Object.keys(stages);
  if (!names.length) return null;
  return section("Stages", "stage-facts", names.map((name) => {
    const s = stages[name];
    const metrics = Object.entries(s.metrics || {}).sort();
    return el("details", { "data-stage": name },
      el("summary", {}, `${name} (${s.key})`),
      metrics.length ? table(["metric", "value"], metrics.map(([k, v]) => el("tr", {}, el("td", {}, k), numCell(v)))) : null,
      s.summary && Object.keys(s.summary).length ? el("pre", { class: "summary" }, JSON.stringify(s.summary, null, 2)) : null);
  }));
}

// A fraction as a percentage with 2 decimals (the leaderboard's unit); NaN as "nan".
function pctCell(v) {
  const cell = numCell(v);
  cell.textContent = typeof v === "number" ? (100 * v).toFixed(2) : "nan";
  return cell;
}

function mmluSection() {
  const m = DATA.facts.shopping_mmlu;
  if (!m) return null;
  const runs = Object.keys(m.leaderboard || {});
  const cols = runs.length ? Object.keys(m.leaderboard[runs[0]]) : [];
  return section("Shopping MMLU", "mmlu",
    el("p", { class: "note" }, `Leaderboard columns, profile ${m.primary || ""} (x100).`),
    table(["run", ...cols], runs.map((r) => el("tr", {}, el("td", {}, r), cols.map((c) => pctCell(m.leaderboard[r][c])))), { id: "mmlu-table" }));
}

// ---------------------------------------------------------------- row explorer
const X = { rows: null, S: null, base: [], hay: null, order: [], page: 0, size: PAGE_SIZES[0], selected: null };
const f = {};

function str(i) { return i === -1 || i === null || i === undefined ? null : X.S[i]; }
function R(i) {
  const r = X.rows[i];
  return { task: str(r[0]), type: str(r[1]), track: str(r[2]), msgs: r[3], out: str(r[4]), truth: str(r[5]), parsed: r[6], ok: r[7], score: r[8], base: r[9] };
}

function select(id, label, options) {
  const s = el("select", { id, "aria-label": label }, options.map(([v, t]) => el("option", { value: v }, t)));
  f[id] = s;
  s.addEventListener("change", () => refilter());
  return el("label", {}, label + " ", s);
}

function checkbox(id, label) {
  const c = el("input", { type: "checkbox", id });
  f[id] = c;
  c.addEventListener("change", () => refilter());
  return el("label", { class: "check" }, c, " " + label);
}

function distinct(col) {
  return [...new Set(X.rows.map((r) => str(r[col])))].sort();
}

function explorerSection(packed) {
  X.rows = packed.rows;
  X.S = packed.strings;
  X.base = packed.baselines;
  const pi = MODES.indexOf(DATA.parser);
  const all = (xs) => [["", "all"], ...xs.map((x) => [x, x])];
  const search = el("input", { type: "search", id: "f-search", placeholder: "search prompt, output, truth, parsed" });
  f["f-search"] = search;
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 150); });
  const controls = el("div", { class: "controls" },
    select("f-task", "task", all(distinct(0))),
    select("f-type", "type", all(distinct(1))),
    select("f-track", "track", all(distinct(2))),
    select("f-parser", "parser", MODES.map((m) => [m, m])),
    checkbox("f-parse-failed", "parse failed"),
    MODES.length > 1 ? checkbox("f-disagree", `${MODES[0]} ≠ ${MODES[1]}`) : null,
    X.base.length ? select("f-baseline", "baseline", X.base.map((b, i) => [String(i), b])) : null,
    X.base.length ? select("f-vs", "vs baseline", [["", "any"], ["better", "better than baseline"], ["worse", "worse than baseline"], ["same", "same as baseline"]]) : null,
    select("f-sort", "sort", [["", "data order"], ["desc", "score ↓"], ["asc", "score ↑"]]),
    select("f-size", "per page", PAGE_SIZES.map((n) => [String(n), String(n)])),
    search);
  f["f-parser"].value = DATA.parser;
  if (pi < 0) f["f-parser"].selectedIndex = 0;
  const head = ["#", "task", "type", "track", "output", "parsed", "truth", "score", X.base.length ? "baseline" : null].filter((x) => x !== null);
  const tbody = el("tbody", {});
  X.tbody = tbody;
  X.count = el("span", { id: "ex-count" });
  X.pageLabel = el("span", { id: "ex-page" });
  const pager = el("div", { class: "pager" },
    el("button", { id: "ex-prev", onclick: () => turn(-1) }, "◀ prev"), X.pageLabel,
    el("button", { id: "ex-next", onclick: () => turn(1) }, "next ▶"), X.count);
  X.detail = el("div", { id: "ex-detail", class: "detail" }, el("p", { class: "note" }, "Click a row to see it whole."));
  return section("Rows", "explorer", controls, pager,
    el("div", { class: "split" },
      el("div", { class: "list" }, el("table", { id: "ex-table" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), tbody)),
      X.detail));
}

function haystack() {
  if (X.hay) return X.hay;
  X.hay = X.rows.map((r) => {
    const parts = [str(r[4]), str(r[5]), ...r[6].map(str)];
    for (const [, c] of r[3]) parts.push(str(c));
    return parts.filter((p) => p !== null).join("\u0001").toLowerCase();
  });
  return X.hay;
}

function refilter() {
  const task = f["f-task"].value, type = f["f-type"].value, track = f["f-track"].value;
  const m = MODES.indexOf(f["f-parser"].value);
  const failed = f["f-parse-failed"].checked;
  const disagree = f["f-disagree"] ? f["f-disagree"].checked : false;
  const b = f["f-baseline"] ? Number(f["f-baseline"].value) : -1;
  const vs = f["f-vs"] ? f["f-vs"].value : "";
  const q = f["f-search"].value.trim().toLowerCase();
  const hay = q ? haystack() : null;
  const out = [];
  for (let i = 0; i < X.rows.length; i++) {
    const r = X.rows[i];
    if (task && X.S[r[0]] !== task) continue;
    if (type && X.S[r[1]] !== type) continue;
    if (track && X.S[r[2]] !== track) continue;
    if (failed && r[7][m] !== 0) continue;
    if (disagree && r[6][0] === r[6][1] && r[8][0] === r[8][1]) continue;
    if (vs) {
      const other = r[9][b];
      if (!other) continue;
      const d = (r[8][m] ?? 0) - (other[3][m] ?? 0);
      if ((vs === "better" && !(d > 0)) || (vs === "worse" && !(d < 0)) || (vs === "same" && d !== 0)) continue;
    }
    if (q && !hay[i].includes(q)) continue;
    out.push(i);
  }
  const sort = f["f-sort"].value;
  if (sort) {
    const sign = sort === "asc" ? 1 : -1;
    out.sort((a, c) => sign * ((X.rows[a][8][m] ?? -Infinity) - (X.rows[c][8][m] ?? -Infinity)) || a - c);
  }
  X.order = out;
  X.size = Number(f["f-size"].value);
  X.page = 0;
  draw();
}

function turn(d) {
  const pages = Math.max(1, Math.ceil(X.order.length / X.size));
  X.page = Math.min(pages - 1, Math.max(0, X.page + d));
  draw();
}

// Tracks share a long prefix ("amazon-kdd-cup-24-"): the list shows the rest.
function shortTrack(t) {
  return t ? t.replace(/^amazon-kdd-cup-\d+-/, "") : "";
}

function clip(s, n) {
  if (s === null) return "";
  return s.length > n ? s.slice(0, n) + "…" : s;
}

function draw() {
  const m = MODES.indexOf(f["f-parser"].value);
  const b = f["f-baseline"] ? Number(f["f-baseline"].value) : -1;
  const pages = Math.max(1, Math.ceil(X.order.length / X.size));
  X.count.textContent = `${X.order.length} of ${X.rows.length} rows`;
  X.count.setAttribute("data-count", String(X.order.length));
  X.pageLabel.textContent = `page ${X.page + 1} / ${pages}`;
  const start = X.page * X.size;
  const frag = document.createDocumentFragment();
  for (const i of X.order.slice(start, start + X.size)) {
    const r = X.rows[i];
    const ok = r[7][m];
    const tr = el("tr", { "data-index": i, class: (ok === 0 ? "failed" : "") + (X.selected === i ? " selected" : ""), onclick: () => detail(i) },
      el("td", { class: "num" }, String(i)), el("td", {}, str(r[0])), el("td", { title: str(r[1]) }, str(r[1])), el("td", { title: str(r[2]) }, shortTrack(str(r[2]))),
      el("td", { class: "text out" }, clip(str(r[4]), 120)),
      el("td", { class: "text" }, ok === 0 ? "(parse failed)" : clip(str(r[6][m]), 60)),
      el("td", { class: "text" }, clip(str(r[5]), 60)),
      scoreCell(r[8][m], { class: "num score" }),
      b >= 0 ? scoreCell(r[9][b] ? r[9][b][3][m] : null, { class: "num base" }) : null);
    frag.append(tr);
  }
  X.tbody.replaceChildren(frag);
}

function detail(i) {
  X.selected = i;
  for (const tr of X.tbody.querySelectorAll("tr.selected")) tr.classList.remove("selected");
  const row = X.tbody.querySelector(`tr[data-index="${i}"]`);
  if (row) row.classList.add("selected");
  const r = R(i);
  const turns = r.msgs.map(([role, c]) => el("div", { class: "turn" }, el("div", { class: "role" }, str(role)), el("pre", {}, str(c))));
  const per = MODES.map((m, j) => el("tr", { "data-mode": m }, el("td", {}, m), el("td", { class: "text" }, r.ok[j] === 0 ? "(parse failed) " : "", str(r.parsed[j]) ?? ""), scoreCell(r.score[j])));
  const bases = X.base.map((name, j) => {
    const o = r.base[j];
    if (!o) return null;
    return el("div", { class: "baseline", "data-baseline": name }, el("h4", {}, `baseline ${name}`),
      el("pre", { class: "output" }, str(o[0]) ?? "(output not recorded)"),
      table(["parser", "parsed", "score"], MODES.map((m, k) => el("tr", {}, el("td", {}, m), el("td", { class: "text" }, o[2][k] === 0 ? "(parse failed) " : "", str(o[1][k]) ?? ""), scoreCell(o[3][k])))));
  });
  X.detail.replaceChildren(
    el("h3", {}, `row ${i} · ${r.task} · ${r.type}` + (r.track ? ` · ${r.track}` : "")),
    el("h4", {}, "prompt"), el("div", { class: "turns" }, turns),
    el("h4", {}, "output"), el("pre", { class: "output", id: "ex-output" }, r.out ?? "(output not recorded)"),
    el("h4", {}, "truth"), el("pre", { class: "truth" }, r.truth ?? ""),
    el("h4", {}, "parsed and scored"), table(["parser", "parsed", "score"], per, { id: "ex-per-mode" }),
    ...bases.filter((x) => x !== null));
}

function openTask(task) {
  for (const id of ["f-type", "f-track", "f-sort", "f-vs"]) if (f[id]) f[id].value = "";
  for (const id of ["f-parse-failed", "f-disagree"]) if (f[id]) f[id].checked = false;
  f["f-search"].value = "";
  f["f-task"].value = task;
  refilter();
  document.getElementById("explorer").scrollIntoView();
}

async function main() {
  app.append(headerSection());
  const nav = el("nav", {}, [["scores", "Scores"], ["comparison", "Comparison"], ["charts", "Charts"], ["explorer", "Rows"], ["stage-facts", "Stages"]]
    .map(([id, t]) => el("a", { href: `#${id}` }, t)));
  app.append(nav);
  for (const s of [scoresSection(), comparisonSection(), chartsSection(), mmluSection()]) if (s) app.append(s);
  const packed = await readRows();
  if (packed && packed.rows.length) {
    app.append(explorerSection(packed));
    refilter();
  }
  const st = stagesSection();
  if (st) app.append(st);
  // Milliseconds from navigation to a usable page (the explorer benchmark reads it).
  document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.body.setAttribute("data-ready", "1");
}

main().catch((e) => {
  document.body.setAttribute("data-error", String(e));
  console.error(e);
});
