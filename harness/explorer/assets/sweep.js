// The sweep page: trials table, the metric against each parameter, links to the reports.
const DATA = readJson("data");
const app = document.getElementById("app");

function main() {
  const rows = DATA.rows;
  const metric = DATA.metric;
  app.append(el("header", { id: "header" }, el("h1", {}, DATA.title),
    el("p", { class: "note" }, `${rows.length} trials; metric ${metric} (${DATA.goal})` +
      (DATA.best !== null && DATA.best !== undefined ? `; best trial ${DATA.best}` : ""))));
  const ok = rows.filter((r) => typeof r[metric] === "number");
  const plots = DATA.params.map((p) => el("figure", {},
    scatter(ok.map((r) => ({ x: r[p], y: r[metric], label: `trial ${r.trial}`, best: r.trial === DATA.best })), p, metric),
    el("figcaption", {}, p)));
  if (ok.length) app.append(section("Score per parameter", "plots", el("div", { class: "plots" }, plots)));
  const skip = new Set(["trial", "status", ...DATA.params, metric, "ran", "skipped", "node", "error"]);
  const scores = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !skip.has(k));
  const head = ["trial", "status", ...DATA.params, metric, ...scores, "report"];
  const body = rows.map((r) => {
    const link = DATA.links[String(r.trial)];
    return el("tr", { "data-trial": r.trial, class: r.trial === DATA.best ? "best" : "" },
      el("td", { class: "num" }, String(r.trial)), el("td", {}, r.status + (r.error ? `: ${r.error}` : "")),
      DATA.params.map((p) => el("td", { class: "mono" }, typeof r[p] === "string" ? r[p] : JSON.stringify(r[p]))),
      numCell(r[metric], { "data-metric": metric }),
      scores.map((k) => (typeof r[k] === "number" || r[k] === null ? numCell(r[k]) : el("td", {}, fmt(r[k])))),
      el("td", {}, link ? el("a", { href: link }, "report") : "-"));
  });
  app.append(section("Trials", "trials", table(head, body, { id: "trials-table" })));
  document.body.setAttribute("data-ready", "1");
}

main();
