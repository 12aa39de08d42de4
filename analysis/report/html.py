"""The report as one self-contained, interactive HTML file that opens offline.

plotly.js (from the plotly package, gzip-compressed and inlined once per file; the browser
inflates it with DecompressionStream) draws the figures figures.py specifies; report.js adds
the trial table of every search (sort, filter, CSV export) and links it to the plots: a filter
drops the hidden trials' points, a click on a row or a point highlights that trial everywhere.
Plotly over hand-written SVG: hover, zoom, pan, log and category axes and parallel-coordinates
brushing come with it, and it is what optuna-dashboard users know. No request leaves the page.

A plot without data is replaced by a note saying why.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import math
import os
from html import escape
from importlib import resources
from typing import TYPE_CHECKING

from hptrack.analysis.report import figures
from hptrack.analysis.report.format import duration, num, status, tie_ratio, training_facts

if TYPE_CHECKING:   # Report.show() renders through this module
    from typing import Any

    from hptrack.analysis.report.model import Report, SearchReport

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;margin-top:32px}h3{font-size:16px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.snap{font-family:monospace;font-size:12px;color:#444}
.warn{color:#8a5300}.skip{color:#777;font-style:italic}.figs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #eee;padding:4px}.failed{color:#b00}.pruned{color:#a60}.running{color:#06c}
.trials{margin:8px 0 16px}.trials .bar{display:flex;gap:12px;align-items:center;font-size:12px;margin:4px 0}
.trials .scroll{max-height:360px;overflow:auto;border:1px solid #ddd}
.trials table{margin:0;font-size:12px;width:100%}.trials th{position:sticky;top:0;background:#f4f4f4;cursor:pointer}
.trials thead tr.filters th{top:22px;cursor:default;padding:1px 4px}.trials input.f{width:70px;font-size:11px}
.trials tr.sel td{background:#ffe9a8}.trials tbody tr{cursor:pointer}.trials tbody tr:hover td{background:#f0f6ff}
#hp-error{display:none;background:#fee;border:1px solid #c00;padding:8px;margin:8px 0}
"""
PLOTLY_MISSING = ("the interactive plots need plotly.js, which ships with the plotly package: "
                  "pip install plotly (it is a dependency of hptrack; was it removed?)")


def write(rep: Report, path: str) -> str:
    """Write ``rep`` to ``path`` (atomically: temp file, then rename). Returns the path."""
    text = render(rep)
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def render(rep: Report) -> str:
    page = _Page()
    by_name = {s.name: s for s in rep.searches}
    body = [(f"<h1>hptrack report</h1><p class='snap'>store {escape(rep.store)}<br>"
            f"as of {rep.as_of.isoformat(timespec='microseconds')} &middot; {rep.n_events} events &middot; "
            f"sha256 {rep.events_sha256}<br>rebuild: hptrack report --as-of "
            f"{rep.as_of.isoformat(timespec='microseconds')}</p>")]
    if not rep.searches:
        body.append("<p>No searches in this snapshot.</p>")
    for g in rep.groups:
        members = [by_name[n] for n in g.searches]
        body.append(f"<h2>Task {escape(str(g.task or '(none recorded)'))}: {g.direction} "
                    f"{escape(g.metric)}, {len(members)} search(es)</h2>")
        body.append(_group(g, members, page))
        for s in members:
            body.append(_search(s, page))
    html = "".join(body)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hptrack report</title>"
            f"<style>{CSS}</style></head><body><div id='hp-error'></div>{html}"
            f"<script type='application/json' id='hp-data'>{page.json()}</script>"
            f"<script type='application/octet-stream' id='hp-plotly'>{_plotly_gz()}</script>"
            f"<script>{_script()}</script></body></html>")


# --- group: comparison -------------------------------------------------------------
def _group(g, members, page) -> str:
    out = []
    c = g.comparison
    if c is not None:
        rows = "".join(
            f"<tr><td>{escape(str(r['strategy']))}</td><td>{r['n_searches']}</td><td>{num(r['final_best_mean'])}</td>"
            f"<td>{num(r['best_at_horizon_mean'])}</td><td>{num(r['auc_mean'], 3)}</td>"
            f"<td>{r['mean_rank']:.2f}</td><td>{r['budget_mean']:.4g}</td></tr>"
            for r in c.summary.iter_rows(named=True))
        out.append(f"<table><tr><th>strategy</th><th>searches</th><th>best</th><th>at budget {c.horizon:.4g}</th>"
                   f"<th>AUC</th><th>mean rank</th><th>spent</th></tr>{rows}</table>"
                   f"<p>Axis: {escape(c.why)}. Budget in {escape(c.unit)}.</p>"
                   + (f"<p>Best strategy: <b>{escape(g.best_strategy)}</b> &mdash; {escape(g.best_reason)}</p>"
                      if g.best_strategy is not None else f"<p>{escape(g.best_reason or 'no clear winner')}</p>"))
        if c.tests.get("skipped"):
            out.append(f"<p class='skip'>Significance tests skipped: {escape(c.tests['skipped'])}</p>")
    elif g.note:
        out.append(f"<p class='skip'>{escape(g.note)}</p>")
    out.append(page.figs(None, figures.group_figs(g, members)))
    return "".join(out)


# --- one search ----------------------------------------------------------------------
def _search(s: SearchReport, page: _Page) -> str:
    st = s.states
    out = [(f"<h3>{escape(s.name)}</h3><p>strategy {escape(str(s.strategy))}, {status(s)}, wall time "
           f"{duration(s.wall_s)}. Trials: {sum(st.values())} = {st['complete']} complete, "
           f"<span class='pruned'>{st['pruned']} pruned</span>, <span class='failed'>{st['failed']} failed</span>, "
           f"<span class='running'>{st['running']} running</span>.</p>")]
    if s.pareto is not None or s.pareto_note:
        out.append(_pareto_text(s))
    elif s.best is not None:
        params = ", ".join(f"{escape(k)}={escape(num(v))}" for k, v in s.best["params"].items())
        test = f", test {num(s.test_score)}" if s.test_score is not None else ""
        out.append(f"<p>Best: trial {s.best['trial_number']}, {escape(s.metric)} {num(s.best['value'])}{test}"
                   f" &mdash; {params}</p>")
    for n, err in s.failed[:10]:
        out.append(f"<p class='failed'>failed: trial {n}: {escape(str(err))}</p>")
    for n, t in s.running[:10]:
        out.append(f"<p class='running'>running: trial {n}, started {t}, no result yet</p>")
    d = s.diagnosis
    if d is not None:
        if d.n_tied is not None:
            out.append(f"<p>Diagnostics: {d.n_tied} configuration(s) tied with the best over "
                       f"{d.n_folds} folds (corrected t-test, {escape(tie_ratio(d))}).</p>")
        out.extend(f"<p class='warn'>warning: {escape(w)}</p>" for w in d.warnings)
    elif s.diagnosis_note:
        out.append(f"<p class='skip'>diagnostics {escape(s.diagnosis_note)}</p>")
    out.extend(f"<p>{escape(f)}.</p>" for f in training_facts(s))
    if s.importance is not None and s.importance_note:
        out.append(f"<p>Importance and marginal curves: {escape(s.importance_note)}.</p>")
    if s.importance is not None and s.importance_stability:
        out.append(f"<p>Importance: {escape(s.importance_stability)}.</p>")
    for p in s.per_objective:
        facts = [f for f in (p.note if p.importance is not None else None, p.stability) if f]
        if facts:
            out.append(f"<p>Importance of objective {p.objective}: {escape('; '.join(facts))}.</p>")
    out.append(page.table(s))
    out.append(page.figs(s.search_id, figures.search_figs(s)))
    return "".join(out)


# --- a multi-objective search: its Pareto front ---------------------------------------
PARETO_ROWS = 20


def _pareto_text(s) -> str:
    p = s.pareto
    if p is None:
        return f"<p class='skip'>Pareto front {escape(s.pareto_note)}</p>"
    objectives = ", ".join(f"{k} {escape(d)}" for k, d in enumerate(p.directions))
    ref = ", ".join(num(v) for v in p.reference_point)
    how = "given" if p.reference_given else "the worst of each objective plus 10% of its range"
    front = p.front.sort(p.objectives[0], descending=p.directions[0] == "maximize")
    cols = [c for c in front.columns if c != "trial_id"]
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{escape(num(r[c]))}</td>" for c in cols) + "</tr>"
                   for r in front.head(PARETO_ROWS).iter_rows(named=True))
    more = (f"<p>... and {p.count - PARETO_ROWS} more members.</p>" if p.count > PARETO_ROWS else "")
    return (f"<p>Objectives: {objectives}. Pareto front: <b>{p.count}</b> of {p.n_complete} complete "
            f"trials; hypervolume {num(p.final_hypervolume)} (reference point {ref}: {how}).</p>"
            f"<table><tr>{head}</tr>{rows}</table>{more}")




# --- the page's data: plots and trial tables ----------------------------------------------
class _Page:
    """Collects the figures and trial tables of a page as it is written; ``json()`` is the
    document report.js reads (safe inside a <script> element)."""

    def __init__(self) -> None:
        self.plots: list = []
        self.tables: list = []

    def figs(self, search_id: str | None, specs: list) -> str:
        shown, notes = [], []
        for spec in specs:
            if spec["data"] is None:
                notes.append(f"<p class='skip'>No {escape(spec['what'])} plot: {escape(spec['why'])}.</p>")
                continue
            pid = f"p{len(self.plots)}"
            self.plots.append({"id": pid, "search": search_id, "data": spec["data"], "layout": spec["layout"]})
            shown.append(f"<figure data-plot='{escape(spec['what'])}'><div class='plot' id='{pid}'></div></figure>")
        return f"<div class='figs'>{''.join(shown)}</div>{''.join(notes)}"

    def table(self, s: SearchReport) -> str:
        t = trial_table(s)
        self.tables.append({"search": s.search_id, "name": s.name, "direction": s.direction, **t})
        note = ""
        if s.drawn is not None:
            note = (f" The table and the per-trial plots hold a random {len(t['rows']):,} of "
                    f"{s.trials.height:,} trials (the best kept); `hptrack export {s.name}` has all.")
        return (f"<div class='trials' data-search='{escape(s.search_id)}'><p>Trials: click a header to sort, type "
                f"in the boxes to filter (text, &gt;x, &lt;x, a..b), click a row or a point to highlight the "
                f"trial in every plot.{escape(note)}</p></div>")

    def json(self) -> str:
        doc = {"plots": self.plots, "tables": self.tables}
        text = json.dumps(_finite(doc), separators=(",", ":"), default=str)
        return text.replace("<", "\\u003c")   # no "</script>" can close the element


def trial_table(s: SearchReport) -> dict:
    """The trial table of ``s``: columns, each column's kind (num / str) and the rows (the drawn
    trials of a large search). Values keep full precision: the CSV export is the data."""
    import polars as pl

    df = s.trials
    if s.drawn is not None:
        df = df.filter(pl.col("trial_id").is_in(s.drawn.implode()))
    values = [c for c in df.columns if c == "value" or (c.startswith("value_") and c[6:].isdigit())]
    cols = ["trial_number", "state", *values, "duration_s"]
    if s.fold_stats is not None and s.fold_stats.height:
        stats = s.fold_stats
        # a param may be called fold_mean too: the statistics give way
        names = {c: _unused(c, df.columns) for c in stats.columns if c != "trial_number"}
        df = df.join(stats.rename(names), on="trial_number", how="left")
        cols += list(names.values())
    cols += s.params
    df = df.select(cols)
    kinds = ["num" if df[c].dtype.is_numeric() else "str" for c in cols]
    rows = [list(r) for r in df.with_columns(
        [pl.col(c).cast(pl.String) for c, k in zip(cols, kinds) if k == "str"]).iter_rows()]
    return {"columns": ["trial" if c == "trial_number" else c for c in cols], "kinds": kinds, "rows": rows}


def _unused(name: str, taken: list) -> str:
    while name in taken:
        name = f"cv {name}"
    return name


def _finite(x: Any) -> Any:
    """NaN and infinities become null: JSON has no word for them."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


@functools.lru_cache(maxsize=1)
def _plotly_gz() -> str:
    """plotly.min.js, gzip-compressed and base64-encoded (4.8 MB of script becomes 2 MB of text)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as e:
        raise ImportError(PLOTLY_MISSING) from e
    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 6, mtime=0)).decode()


@functools.lru_cache(maxsize=1)
def _script() -> str:
    return resources.files("hptrack.analysis.report").joinpath("report.js").read_text(encoding="utf-8")
