// hptrack report: draws the page's Plotly figures and its trial tables, and links them.
// The data is the JSON in #hp-data (see html.py); plotly.js is the gzip+base64 text in #hp-plotly.
// Everything from the data is put in the page as text (textContent) or escaped, never as HTML.
(function () {
  "use strict";
  const MAX_ROWS = 500;        // rows drawn at once (the filter and the CSV see every row)
  const LAZY_AFTER = 40;       // more plots than this: each is drawn when it scrolls near
  const doc = JSON.parse(document.getElementById("hp-data").textContent);
  const tables = new Map();    // search id -> table state
  const plots = new Map();     // plot id -> {spec, drawn}

  function fail(message) {
    const box = document.getElementById("hp-error");
    box.style.display = "block";
    box.textContent += message + " ";
    console.error("hptrack report: " + message);
  }

  const esc = (v) => String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const show = (v) => v === null || v === undefined ? "" :
    typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(6)).toString() : String(v);

  async function loadPlotly() {
    if (window.Plotly) return;
    if (typeof DecompressionStream === "undefined") throw new Error("this browser has no DecompressionStream");
    const bin = atob(document.getElementById("hp-plotly").textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const code = await new Response(stream).text();
    const script = document.createElement("script");
    script.textContent = code;
    document.head.appendChild(script);
    if (!window.Plotly) throw new Error("plotly.js did not load");
  }

  // --- trial tables -------------------------------------------------------------------
  function hoverText(t, trial) {
    const row = t.byTrial.get(trial);
    if (!row) return "trial " + esc(trial);
    const parts = t.columns.map((c, i) => i === 0 ? "<b>trial " + esc(row[0]) + "</b>" : esc(c) + ": " + esc(show(row[i])));
    return parts.join("<br>");
  }

  function matcher(text, kind) {
    text = text.trim();
    if (!text) return null;
    const n = Number(text.replace(/^(>=|<=|>|<|=)/, ""));
    const range = text.match(/^(-?[\d.eE+-]+)\s*\.\.\s*(-?[\d.eE+-]+)$/);
    if (kind === "num" && range) { const a = Number(range[1]), b = Number(range[2]); return (v) => v !== null && v >= a && v <= b; }
    if (kind === "num" && !Number.isNaN(n) && /^(>=|<=|>|<|=)?\s*-?[\d.]/.test(text)) {
      if (text.startsWith(">=")) return (v) => v !== null && v >= n;
      if (text.startsWith("<=")) return (v) => v !== null && v <= n;
      if (text.startsWith(">")) return (v) => v !== null && v > n;
      if (text.startsWith("<")) return (v) => v !== null && v < n;
      return (v) => v !== null && Math.abs(v - n) <= 1e-9 * Math.max(1, Math.abs(n));
    }
    const want = text.replace(/^=/, "").toLowerCase();
    const exact = text.startsWith("=");
    return (v) => { const s = show(v).toLowerCase(); return exact ? s === want : s.includes(want); };
  }

  function visibleRows(t) {
    let rows = t.rows.filter((r) => t.filters.every((f, i) => f === null || f(r[i])));
    if (t.sort !== null) {
      const i = t.sort, dir = t.desc ? -1 : 1;
      rows = rows.slice().sort((a, b) => {
        const x = a[i], y = b[i];
        if (x === y) return a[0] - b[0];
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * dir;
      });
    }
    return rows;
  }

  function buildTable(t, box) {
    const bar = document.createElement("div");
    bar.className = "bar";
    const count = document.createElement("span");
    const csv = document.createElement("button");
    csv.textContent = "export CSV";
    csv.className = "csv";
    csv.addEventListener("click", () => exportCsv(t));
    const clear = document.createElement("button");
    clear.textContent = "clear filters and selection";
    clear.addEventListener("click", () => {
      box.querySelectorAll("input.f").forEach((inp) => { inp.value = ""; });
      t.filters = t.columns.map(() => null);
      t.selected = null;
      refresh(t);
    });
    bar.append(count, csv, clear);
    const scroll = document.createElement("div");
    scroll.className = "scroll";
    const table = document.createElement("table");
    const head = document.createElement("thead");
    const names = document.createElement("tr");
    const inputs = document.createElement("tr");
    inputs.className = "filters";
    t.columns.forEach((c, i) => {
      const th = document.createElement("th");
      th.textContent = c;
      th.title = "sort by " + c;
      th.addEventListener("click", () => {
        t.desc = t.sort === i ? !t.desc : false;
        t.sort = i;
        refresh(t);
      });
      names.appendChild(th);
      const cell = document.createElement("th");
      const inp = document.createElement("input");
      inp.className = "f";
      inp.dataset.column = c;
      inp.placeholder = t.kinds[i] === "num" ? ">x, a..b" : "text";
      inp.addEventListener("input", () => { t.filters[i] = matcher(inp.value, t.kinds[i]); refresh(t); });
      cell.appendChild(inp);
      inputs.appendChild(cell);
    });
    head.append(names, inputs);
    const body = document.createElement("tbody");
    body.addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr");
      if (tr) select(t.search, Number(tr.dataset.trial));
    });
    table.append(head, body);
    scroll.appendChild(table);
    box.append(bar, scroll);
    Object.assign(t, { count, body });
  }

  function drawRows(t) {
    const rows = t.visible;
    t.body.replaceChildren(...rows.slice(0, MAX_ROWS).map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.trial = r[0];
      if (r[0] === t.selected) tr.className = "sel";
      r.forEach((v) => { const td = document.createElement("td"); td.textContent = show(v); tr.appendChild(td); });
      return tr;
    }));
    t.count.textContent = rows.length + " of " + t.rows.length + " trials shown" +
      (rows.length > MAX_ROWS ? " (first " + MAX_ROWS + " rows drawn; the CSV has all)" : "") +
      (t.selected !== null ? "; trial " + t.selected + " selected" : "");
  }

  function exportCsv(t) {
    const cell = (v) => { const s = v === null ? "" : String(v); return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
    const text = [t.columns, ...t.visible].map((r) => r.map(cell).join(",")).join("\n") + "\n";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    a.download = t.name.replace(/[^\w.-]+/g, "_") + "-trials.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // --- plots ------------------------------------------------------------------------
  const ARRAYS = ["x", "y", "customdata"];

  function filterTrace(tr, t) {
    if (tr.type === "parcoords") {
      const keep = tr.meta.trials.map((n) => t.keep.has(n));
      const pick = (a) => a.filter((_, i) => keep[i]);
      const dims = tr.dimensions.map((d) => ({ ...d, values: pick(d.values) }));
      if (t.selected !== null && t.keep.has(t.selected)) dims[0].constraintrange = [t.selected - 0.5, t.selected + 0.5];
      else delete dims[0].constraintrange;
      return { ...tr, dimensions: dims, line: { ...tr.line, color: pick(tr.line.color) }, meta: { trials: pick(tr.meta.trials) } };
    }
    if (!Array.isArray(tr.customdata)) return tr;
    const idx = [];
    tr.customdata.forEach((n, i) => { if (n === null || t.keep.has(n)) idx.push(i); });
    const out = { ...tr };
    for (const k of ARRAYS) if (Array.isArray(tr[k])) out[k] = idx.map((i) => tr[k][i]);
    if (Array.isArray(tr.marker && tr.marker.symbol)) out.marker = { ...tr.marker, symbol: idx.map((i) => tr.marker.symbol[i]) };
    const notes = tr.meta && tr.meta.notes ? idx.map((i) => tr.meta.notes[i]) : null;
    if (notes) out.meta = { ...tr.meta, notes };
    out.text = out.customdata.map((n, i) => n === null ? "" : (notes ? notes[i] + "<br>" : "") + hoverText(t, n));
    return out;
  }

  function overlay(data, t) {
    const n = t.selected;
    if (n === null || !t.keep.has(n)) return [];
    const out = [];
    data.forEach((tr) => {
      if (!Array.isArray(tr.customdata) || tr.type !== "scatter") return;
      const idx = [];
      tr.customdata.forEach((c, i) => { if (c === n) idx.push(i); });
      if (!idx.length) return;
      out.push({ type: "scatter", x: idx.map((i) => tr.x[i]), y: idx.map((i) => tr.y[i]), customdata: idx.map(() => n),
        mode: (tr.mode || "").includes("lines") ? "lines+markers" : "markers", name: "trial " + n + " (selected)",
        showlegend: !out.length, hovertemplate: "%{text}<extra></extra>", text: idx.map(() => hoverText(t, n)),
        marker: { size: 13, color: "rgba(0,0,0,0)", line: { color: "#000", width: 2.5 } },
        line: { color: "#000", width: 3 }, meta: { selected: n } });
    });
    return out;
  }

  function dataOf(p) {
    const t = p.spec.search ? tables.get(p.spec.search) : null;
    if (!t) return p.spec.data;
    const data = p.spec.data.map((tr) => filterTrace(tr, t));
    if (p.div.data) {   // keep the user's brushing on parallel coordinates
      data.forEach((tr, k) => {
        const old = p.div.data[k];
        if (tr.type === "parcoords" && old && old.dimensions) {
          tr.dimensions.forEach((d, j) => { if (j > 0 && old.dimensions[j] && old.dimensions[j].constraintrange) d.constraintrange = old.dimensions[j].constraintrange; });
        }
      });
    }
    return data.concat(overlay(data, t));
  }

  function draw(p) {
    try {
      const layout = p.drawn ? p.div.layout : p.spec.layout;
      const config = { responsive: false, displaylogo: false, scrollZoom: false,
        toImageButtonOptions: { format: "png", filename: "hptrack-" + p.spec.id } };
      const ready = Plotly.react(p.div, dataOf(p), layout, config);
      if (!p.drawn) {
        p.drawn = true;
        p.div.on("plotly_click", (ev) => {
          const pt = ev.points && ev.points[0];
          if (p.spec.search && pt && pt.customdata !== undefined && pt.customdata !== null) select(p.spec.search, pt.customdata);
        });
      }
      return ready;
    } catch (e) {
      fail("plot " + p.spec.id + " not drawn: " + e);
      return Promise.resolve();
    }
  }

  function refresh(t) {
    t.visible = visibleRows(t);
    t.keep = new Set(t.visible.map((r) => r[0]));
    drawRows(t);
    const done = [];
    plots.forEach((p) => { if (p.spec.search === t.search && p.drawn) done.push(draw(p)); });
    return Promise.all(done);
  }

  function select(search, trial) {
    const t = tables.get(search);
    if (!t) return Promise.resolve();
    t.selected = t.selected === trial ? null : trial;
    return refresh(t);
  }

  function drawAll() {
    const done = [];
    plots.forEach((p) => { if (!p.drawn) done.push(draw(p)); });
    return Promise.all(done);
  }

  async function main() {
    doc.tables.forEach((spec) => {
      const t = { ...spec, sort: null, desc: false, selected: null, filters: spec.columns.map(() => null),
        byTrial: new Map(spec.rows.map((r) => [r[0], r])) };
      t.visible = t.rows;
      t.keep = new Set(t.rows.map((r) => r[0]));
      tables.set(spec.search, t);
      const box = document.querySelector(".trials[data-search='" + CSS.escape(spec.search) + "']");
      if (box) { buildTable(t, box); drawRows(t); }
    });
    await loadPlotly();
    doc.plots.forEach((spec) => plots.set(spec.id, { spec, div: document.getElementById(spec.id), drawn: false }));
    if (plots.size <= LAZY_AFTER || typeof IntersectionObserver === "undefined") {
      await drawAll();
    } else {
      const seen = new IntersectionObserver((entries) => entries.forEach((e) => {
        const p = plots.get(e.target.id);
        if (e.isIntersecting && p && !p.drawn) { draw(p); seen.unobserve(e.target); }
      }), { rootMargin: "800px" });
      plots.forEach((p) => seen.observe(p.div));
    }
  }

  const ready = main().catch((e) => fail("the interactive plots could not be drawn: " + e));
  // for scripts and tests: wait for the page, draw every plot, filter a table, select a trial
  window.hptrack = {
    ready, drawAll, select,
    filter(search, column, text) {
      const t = tables.get(search), i = t.columns.indexOf(column);
      if (i < 0) throw new Error("no column " + column);
      const inp = document.querySelector(".trials[data-search='" + CSS.escape(search) + "'] input.f[data-column='" + CSS.escape(column) + "']");
      if (inp) inp.value = text;
      t.filters[i] = matcher(text, t.kinds[i]);
      return refresh(t);
    },
    visibleTrials: (search) => tables.get(search).visible.map((r) => r[0]),
  };
})();
