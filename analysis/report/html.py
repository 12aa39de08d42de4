"""The report as one self-contained HTML file: inline CSS and static SVG charts,
no script and no external resource, so it opens offline and can be mailed.

Plots: best-so-far per strategy (bands over seeds), validation-vs-test gap,
and per search importance bars, marginal curves of the top params, parallel
coordinates, intermediate values with pruned trials marked, fold scores of the
top configurations, PBT lineage and the winner's schedule. A plot without data
is replaced by a note saying why.
"""

from __future__ import annotations

import math
import os
from html import escape
from typing import TYPE_CHECKING

from hptrack.analysis.report import svg
from hptrack.analysis.report.format import duration, num, status, tie_ratio, training_facts

if TYPE_CHECKING:   # Report.show() renders through this module
    from hptrack.analysis.report.model import Report, SearchReport

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;margin-top:32px}h3{font-size:16px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.snap{font-family:monospace;font-size:12px;color:#444}
.warn{color:#8a5300}.skip{color:#777;font-style:italic}.figs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #eee;padding:4px}.tick{font-size:10px;fill:#444}.label{font-size:11px;fill:#222}
.ctitle{font-size:12px;font-weight:600}.legend{font-size:10px}.failed{color:#b00}.pruned{color:#a60}
.running{color:#06c}
"""


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
        body.append(_group(g, members))
        for s in members:
            body.append(_search(s))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hptrack report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


# --- group: comparison -------------------------------------------------------------
def _group(g, members) -> str:
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
    figs = [_best_so_far(g, members), _gap(g, members)]
    out.append(_figs(figs))
    return "".join(out)


def _best_so_far(g, members):
    c = g.comparison
    ch = svg.Chart(f"best-so-far {g.metric} per strategy",
                   "trials finished" if c is None or c.by == "trials" else c.unit, g.metric)
    if c is not None:
        strategies = list(dict.fromkeys(c.curves["strategy"].to_list()))
        for i, s in enumerate(strategies):
            col = svg.color(i)
            for search in dict.fromkeys(c.curves.filter(c.curves["strategy"] == s)["search"].to_list()):
                cur = c.curves.filter(c.curves["search"] == search)
                xs, ys = cur["x"].to_list(), cur["best"].to_list()
                if c.by == "compute" and xs[-1] < c.horizon:   # a search that stopped keeps its best
                    xs, ys = xs + [c.horizon], ys + ys[-1:]
                ch.line(xs, ys, col, label=s, step=True, opacity=0.45, width=1.2)
            b = c.bands.filter(c.bands["strategy"] == s)
            if b.height and (b["n"].max() or 0) > 1:       # bands only over several seeds
                ch.band(b["x"].to_list(), b["lo"].to_list(), b["hi"].to_list(), col)
                ch.line(b["x"].to_list(), b["mean"].to_list(), col, width=2.2)
    else:
        for i, s in enumerate(members):
            xs, best = _curve(s)
            ch.line(xs, best, svg.color(i), label=s.strategy or s.name, step=True)
    return ("best-so-far", ch, "no complete trial yet")


def _curve(s: SearchReport):
    import polars as pl

    done = s.trials.filter(pl.col("state") == "complete").sort("finished_at")
    xs, best, b = [], [], None
    sign = 1 if s.direction == "maximize" else -1
    for i, v in enumerate(done["value"].to_list(), 1):
        if v is not None and (b is None or sign * v > sign * b):
            b = v
        xs.append(i)
        best.append(b)
    return xs, best


def _gap(g, members):
    names = [s.name for s in members if s.test_score is not None and s.best is not None]
    ch = svg.Chart(f"validation vs test {g.metric} of each winner", "", g.metric,
                   xcats=[_short(n) for n in names], width=max(420, 110 * len(names)))
    if names:
        sel = [s for s in members if s.name in names]
        xs = list(range(len(sel)))
        ch.points(xs, [s.best["value"] for s in sel], svg.color(0), label="validation (CV)", size=5)
        ch.points(xs, [s.test_score for s in sel], svg.color(3), label="held-out test", marker="x", size=5)
        for x, s in zip(xs, sel):
            ch.segment(x, s.best["value"], x, s.test_score, "#888")
    return ("validation vs test", ch, "no winner has a test score (hptrack.sklearn.log_test_score)")


def _short(name: str, n: int = 18):
    return name if len(name) <= n else name[: n - 1] + "…"


# --- one search ----------------------------------------------------------------------
def _search(s: SearchReport) -> str:
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
    figs = [*_pareto_figs(s), _importance(s), *_marginals(s), _parallel(s), _intermediate(s), _folds(s),
            _test_scatter(s)]
    if s.strategy == "pbt":
        figs += [_lineage(s), _schedule(s)]
    if s.training is not None and s.training.lr_key is not None:
        figs.append(_learning_rate(s))
    out.append(_figs(figs))
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


def _pareto_figs(s):
    p = s.pareto
    if p is None:
        return []
    import polars as pl

    # the first two objectives; the others are in the table
    a, b = p.objectives[:2] if len(p.objectives) > 1 else (p.objectives[0], p.objectives[0])
    done = s.trials.filter(pl.col("state") == "complete")
    title = "Pareto front" + (f" (objectives 0 and 1 of {len(p.objectives)})" if len(p.objectives) > 2 else "")
    ch = svg.Chart(title, f"{a} ({p.directions[0]})", f"{b} ({p.directions[min(1, len(p.directions) - 1)]})",
                   width=460, height=320)
    ch.points(done[a].to_list(), done[b].to_list(), "#bbb", label="trial", size=3)
    front = p.front.sort(a)
    ch.points(front[a].to_list(), front[b].to_list(), svg.color(0), label="Pareto front", size=4.5,
              titles=[f"trial {n}" for n in front["trial_number"].to_list()])
    if len(p.objectives) == 2:
        ch.line(front[a].to_list(), front[b].to_list(), svg.color(0), width=1.0, opacity=0.6)
    hv = svg.Chart("hypervolume after each complete trial", "trial number", "hypervolume",
                   width=460, height=320)
    hv.line(p.hypervolume["trial_number"].to_list(), p.hypervolume["hypervolume"].to_list(),
            svg.color(1), step=True)
    return [("Pareto front", ch, "no complete trial"), ("hypervolume", hv, "no complete trial")]


def _figs(figs) -> str:
    shown, notes = [], []
    for what, chart, why in figs:
        if chart is None or (isinstance(chart, svg.Chart) and chart.empty):
            notes.append(f"<p class='skip'>No {escape(what)} plot: {escape(why)}.</p>")
        else:
            shown.append(f"<figure data-plot='{escape(what)}'>{chart if isinstance(chart, str) else chart.svg()}"
                         f"</figure>")
    return f"<div class='figs'>{''.join(shown)}</div>{''.join(notes)}"


def _importance(s):
    if s.importance is None:
        return ("importance", None, s.importance_note or "not computed")
    imp = s.importance
    return ("importance", svg.hbars(imp["param"].to_list(), imp["importance"].to_list(), imp["std"].to_list(),
                                    title="importance (fANOVA variance fraction)", xlabel="variance fraction",
                                    width=460), "")


def _marginals(s):
    if not s.marginals:
        return [("marginal", None, s.importance_note or "no importance, so no top params")]
    out = []
    for i, (p, m) in enumerate(s.marginals.items()):
        cats = m["value"].to_list() if m["value"].dtype.is_(__import__("polars").String) else None
        ch = svg.Chart(f"marginal of {p}", p, f"mean {s.metric}", width=400, height=260, xcats=cats)
        xs = list(range(m.height)) if cats else m["value"].to_list()
        mean, std = m["mean"].to_list(), m["std"].to_list()
        ch.band(xs, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], svg.color(i))
        if cats:
            ch.points(xs, mean, svg.color(i), size=4)
        ch.line(xs, mean, svg.color(i))
        out.append((f"marginal {p}", ch, "no data"))
    return out


def _parallel(s):
    import polars as pl

    done = s.trials.filter(pl.col("state") == "complete")
    if done.height < 2 or not s.params:
        return ("parallel coordinates", None, "fewer than 2 complete trials")
    title = "parallel coordinates (darker = better)"
    if s.drawn is not None:
        n_done = done.height
        done = done.filter(pl.col("trial_id").is_in(s.drawn.implode()))
        title = f"parallel coordinates, random {done.height:,} of {n_done:,} (darker = better)"
    cols = s.params + [s.metric]
    rows = [list(r) for r in done.select([*s.params, "value"]).iter_rows()]
    return ("parallel coordinates", svg.parallel(cols, rows, done["value"].to_list(), title=title,
                                                 higher_is_better=s.direction == "maximize"), "")


def _intermediate(s):
    r = s.reports
    if r is None or r.height == 0:
        return ("intermediate values", None, "no trial reported intermediate values")
    title = "intermediate values (x = pruned here)"
    if s.drawn is not None:
        title = (f"intermediate values, random {r['trial_number'].n_unique():,} of {s.trials.height:,} trials"
                 " (x = pruned)")
    ch = svg.Chart(title, "step", "value", width=460, height=280)
    by = r.partition_by("trial_number", maintain_order=True, as_dict=False)
    for part in by:
        state = part["state"][0]
        col = {"pruned": "#d62728", "failed": "#7f7f7f", "running": "#17becf"}.get(state, "#1f77b4")
        ch.line(part["step"].to_list(), part["value"].to_list(), col, opacity=0.5, width=1.1,
                label={"pruned": "pruned", "complete": "complete"}.get(state, state))
        if state == "pruned":
            ch.points([part["step"][-1]], [part["value"][-1]], col, marker="x", size=4,
                      titles=[f"trial {part['trial_number'][0]} pruned"])
    _mark_stops(ch, s)
    return ("intermediate values", ch, "no data")


STOP_COLOR = "#ff7f0e"


def _mark_stops(ch, s) -> None:
    """A dot where EarlyStopping stopped each drawn trial (its value at the stop step)."""
    t = s.training
    if t is None or not t.n_stopped:
        return
    at = {(n, st): v for n, st, v in s.reports.select("trial_number", "step", "value").iter_rows()}
    xs, ys, titles = [], [], []
    for r in t.trials.filter(t.trials["stopped_early"]).iter_rows(named=True):
        v = at.get((r["trial_number"], r["stop_step"]))
        if v is not None:
            xs.append(r["stop_step"])
            ys.append(v)
            titles.append(f"trial {r['trial_number']} stopped early at step {r['stop_step']} "
                          f"(best step {r['best_step']})")
    ch.points(xs, ys, STOP_COLOR, label="stopped early", size=3.5, titles=titles)
    ch.title = ch.title.replace("(x = pruned", "(dot = stopped early, x = pruned")


def _learning_rate(s):
    """The learning rate each drawn trial reported per step; the best trial's drawn on top."""
    t = s.training
    lr = t.lr
    ch = svg.Chart(f"learning rate ({t.lr_key}) per step", "step", t.lr_key, width=460, height=280)
    best = s.best["trial_number"] if s.best else None
    for part in lr.partition_by("trial_number", maintain_order=True, as_dict=False):
        if part["trial_number"][0] != best:
            ch.line(part["step"].to_list(), part["lr"].to_list(), "#9ab", width=1, opacity=0.6,
                    label="trials")
    mine = lr.filter(lr["trial_number"] == best)
    if mine.height:
        ch.line(mine["step"].to_list(), mine["lr"].to_list(), svg.color(0), width=2.2,
                label=f"best (trial {best})")
    return ("learning rate", ch, "no report carried a learning rate")


def _folds(s):
    f = s.folds
    if f is None or f.height == 0:
        return ("fold scores", None, "no fold scores recorded (trial.score(..., split='fold'))")
    trials = list(dict.fromkeys(f["trial_number"].to_list()))
    ch = svg.Chart("fold scores of the top configurations", "trial (best first)", s.metric, width=460,
                   height=280, xcats=[f"#{t}" for t in trials])
    for i, t in enumerate(trials):
        v = f.filter(f["trial_number"] == t)["value"].to_list()
        ch.points([i + (k - len(v) / 2) * 0.04 for k in range(len(v))], v, svg.color(i), size=3,
                  titles=[f"trial {t} fold {k}" for k in range(len(v))])
        mean = sum(v) / len(v)
        ch.segment(i - 0.3, mean, i + 0.3, mean, "#222", width=2, opacity=0.9)
    return ("fold scores", ch, "")


def _test_scatter(s):
    t = s.tests
    if t is None or t.height < 2:
        return ("validation-vs-test per trial", None,
                "fewer than 2 trials have a test score (the winner's is in the comparison plot)")
    ch = svg.Chart("validation vs test per trial", f"validation {s.metric}", f"test {s.metric}", width=360)
    ch.points(t["value"].to_list(), t["test"].to_list(), svg.color(0))
    lo = min(min(t["value"].drop_nulls()), min(t["test"].drop_nulls()))
    hi = max(max(t["value"].drop_nulls()), max(t["test"].drop_nulls()))
    ch.line([lo, hi], [lo, hi], "#999", dash="4 3")
    return ("validation-vs-test per trial", ch, "")


def _lineage(s):
    lin = s.lineage
    if lin is None or lin.height == 0:
        return ("PBT lineage", None, "no forks recorded")
    r = s.reports
    ch = svg.Chart("PBT: member scores and exploits (o = parent score at the fork)", "step", s.metric,
                   width=560, height=300)
    if r is not None:
        for part in r.partition_by("trial_number", maintain_order=True, as_dict=False):
            ch.line(part["step"].to_list(), part["value"].to_list(), "#9ab", width=1, opacity=0.7)
    ch.points(lin["step"].to_list(), lin["parent_score"].to_list(), svg.color(1), label="fork",
              titles=[f"{a} -> {b}" for a, b in zip(lin["parent_trial_id"], lin["trial_id"])])
    if "replaced_score" in lin.columns:
        for x, a, b in zip(lin["step"], lin["replaced_score"], lin["parent_score"]):
            ch.segment(x, a, x, b, svg.color(1))
    return ("PBT lineage", ch, "")


def _schedule(s):
    sch = s.schedule
    if sch is None or sch.height == 0:
        return ("PBT schedule", None, "no schedule for the winner")
    params = [c for c in sch.columns if c not in ("trial_id", "from_step", "to_step")
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in sch[c].to_list())]
    if not params:
        return ("PBT schedule", None, "the winner has no numeric params")
    ch = svg.Chart("winner's schedule (each param / its first value)", "step", "relative value",
                   width=460, height=260)
    last = sch["to_step"].drop_nulls().max()
    end = (last or 0) + 1 if last is not None else max(sch["from_step"].to_list()) + 1
    for i, p in enumerate(params):
        v = sch[p].to_list()
        base = v[0] or 1.0
        xs, ys = [], []
        for a, b, val in zip(sch["from_step"].to_list(), sch["to_step"].to_list(), v):
            xs += [a, b if b is not None else end]
            ys += [val / base, val / base]
        ch.line(xs, ys, svg.color(i), label=p)
    return ("PBT schedule", ch, "")
