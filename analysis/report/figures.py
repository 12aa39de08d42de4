"""The report's plots as Plotly figure specs: plain dicts (``data`` traces and a ``layout``)
that html.py inlines as JSON and plotly.js draws in the browser.

The specs are written out here rather than through ``plotly.graph_objects``: a dict is what
plotly.js reads, and building one costs microseconds where a validated graph object costs
milliseconds per trace (hundreds of searches per report).

Conventions the page's script relies on (see report.js):
- a trace whose points are trials carries ``customdata``: the trial number of every point
  (``None`` at the gaps between the trials of a multi-trial line); the script fills the hover
  text from the trial table, drops the points of trials a table filter hides, and draws the
  selected trial on top;
- a parallel-coordinates trace has ``meta.trials`` (the trial of each line) and a first
  dimension ``trial``, which the script constrains to highlight the selected trial.

Axes: a param recorded as log-distributed (or a numeric grid spanning two decades or more) is
drawn on a log axis; int, categorical and grid params on discrete axes, with points rather than
curves. A value axis is fitted to the bulk of the values (3 IQR past the quartiles); points
outside it are drawn on its edge as triangles, their true value in the hover.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from hptrack.analysis.report.model import Group, SearchReport

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
STATE_COLOR = {"complete": "#1f77b4", "pruned": "#d62728", "failed": "#7f7f7f", "running": "#17becf"}
STOP_COLOR = "#ff7f0e"
TOP_K = 5                 # trials highlighted in parallel coordinates
DISCRETE_MAX = 12         # a numeric param with at most this many values is drawn as discrete
OUTLIER_IQR = 3.0
HOVER = "%{text}<extra></extra>"   # the script sets text from the trial table


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def fig(what: str, title: str, data: list, layout: dict | None = None, *, why: str = "",
        height: int = 340, width: int = 560) -> dict:
    """One plot: ``what`` names it (the page's data-plot attribute), ``why`` says why a plot
    without data is missing."""
    base: dict[str, Any] = {"title": {"text": escape(title), "font": {"size": 13}, "x": 0.02},
            "margin": {"l": 60, "r": 20, "t": 42, "b": 50}, "height": height, "width": width,
            "hovermode": "closest", "showlegend": any(t.get("showlegend") for t in data),
            "legend": {"orientation": "h", "y": -0.22, "font": {"size": 10}},
            "xaxis": {"automargin": True, "zeroline": False}, "yaxis": {"automargin": True, "zeroline": False},
            "paper_bgcolor": "#fff", "plot_bgcolor": "#fafafa", "font": {"size": 11}}
    for k, v in (layout or {}).items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return {"what": what, "data": data, "layout": base, "why": why}


def missing(what: str, why: str) -> dict:
    return {"what": what, "data": None, "layout": None, "why": why}


def axis(title: str, **kw: Any) -> dict:
    return {"title": {"text": escape(title)}, "automargin": True, **kw}


def points(xs: list, ys: list, trials: list, *, name: str = "", col: str = PALETTE[0], size: float = 6,
           symbol: str | list = "circle", mode: str = "markers", legend: bool = False, notes: list | None = None,
           **kw: Any) -> dict:
    """A trace of trials (hover from the table, filtered and highlighted by the script);
    ``notes``: a line per point that the hover adds below the trial's row."""
    if notes is not None:
        kw["meta"] = {"notes": [escape(n) for n in notes]}
    return {"type": "scatter", "mode": mode, "x": xs, "y": ys, "customdata": trials, "name": escape(name),
            "marker": {"color": col, "size": size, "symbol": symbol}, "line": {"color": col, "width": 1.2},
            "hovertemplate": HOVER, "showlegend": legend, **kw}


def lines(parts: list, *, name: str, col: str, legend: bool = True, width: float = 1.1,
          opacity: float = 0.55) -> dict | None:
    """Many trials' curves as one trace: ``parts`` is [(trial, xs, ys)], the curves separated by gaps."""
    xs: list = []
    ys: list = []
    trials: list = []
    for n, x, y in parts:
        if xs:
            xs.append(None)
            ys.append(None)
            trials.append(None)
        xs += x
        ys += y
        trials += [n] * len(x)
    if not xs:
        return None
    return points(xs, ys, trials, name=name, col=col, mode="lines", legend=legend, opacity=opacity,
                  line={"color": col, "width": width}, connectgaps=False)


def robust(values: list, log: bool = False) -> tuple[float, float] | None:
    """The range of the bulk of ``values`` (3 IQR past the quartiles) when some lie outside it,
    padded by 5%; None when every value fits (the axis is left to autorange)."""
    v = sorted(x for x in values if x is not None and math.isfinite(x) and (x > 0 or not log))
    if len(v) < 8:
        return None
    if log:
        v = [math.log10(x) for x in v]
    q1, q3 = _quantile(v, 0.25), _quantile(v, 0.75)
    iqr = q3 - q1
    if iqr <= 0:
        return None
    lo = max(v[0], q1 - OUTLIER_IQR * iqr)
    hi = min(v[-1], q3 + OUTLIER_IQR * iqr)
    pad = 0.05 * (hi - lo or 1.0)
    if lo - pad <= v[0] and hi + pad >= v[-1]:
        return None
    return lo - pad, hi + pad


def _quantile(v: list, q: float) -> float:
    """Linear-interpolation quantile of sorted ``v`` (numpy's default method)."""
    pos = q * (len(v) - 1)
    i = int(pos)
    j = min(i + 1, len(v) - 1)
    return v[i] + (v[j] - v[i]) * (pos - i)


def clamp(trace: dict, rng: tuple[float, float] | None) -> list[dict]:
    """``trace`` with its points outside ``rng`` (on y) moved onto the range's edge, and those
    points again as a trace of triangles (their true values stay in the hover: the script
    reads them from the table)."""
    if rng is None:
        return [trace]
    lo, hi = rng
    xs, ys, trials, out = [], [], [], []
    keep_y: list = []
    for x, y, n in zip(trace["x"], trace["y"], trace["customdata"]):
        if y is not None and (y < lo or y > hi):
            xs.append(x)
            ys.append(hi if y > hi else lo)
            trials.append(n)
            out.append("triangle-up" if y > hi else "triangle-down")
            keep_y.append(None)
        else:
            keep_y.append(y)
    inside = {**trace, "y": keep_y}
    if not xs:
        return [inside]
    marked = points(xs, ys, trials, name="outside the axis (true value in the hover)", col="#444",
                    size=9, symbol=out, legend=True, cliponaxis=False)
    return [inside, marked]


# --- how a param is drawn --------------------------------------------------------------
def param_axis(s: SearchReport, p: str) -> dict:
    """How param ``p`` of ``s`` is drawn: ``kind`` categorical / discrete / continuous, ``log``,
    and for categorical params the ``categories`` in order."""
    import polars as pl

    col = s.trials[p]
    hint = (s.space or {}).get(p) or {}
    values = col.drop_nulls()
    if col.dtype in (pl.String, pl.Boolean) or not col.dtype.is_numeric():
        cats = hint.get("categories") or sorted(set(values.cast(pl.String).to_list()))
        return {"kind": "categorical", "log": False, "categories": [str(c) for c in cats]}
    distinct = values.unique().sort().to_list()
    positive = bool(distinct) and distinct[0] > 0
    discrete = len(distinct) <= DISCRETE_MAX and (col.dtype.is_integer() or len(distinct) <= 6 or "high" not in hint)
    log = positive and (bool(hint.get("log")) or
                        # a few values like [0.001, 0.01, 0.1, 1]: a grid chosen on a log scale
                        (discrete and len(distinct) > 2 and distinct[-1] / distinct[0] >= 100))
    return {"kind": "discrete" if discrete else "continuous", "log": log, "values": distinct}


def x_axis(p: str, a: dict) -> dict:
    if a["kind"] == "categorical":
        return axis(p, type="category", categoryorder="array", categoryarray=a["categories"])
    kw: dict = {"type": "log"} if a["log"] else {}
    if a["kind"] == "discrete":
        kw.update(tickmode="array", tickvals=a["values"], ticktext=[_tick(v) for v in a["values"]])
    return axis(p + (" (log)" if a["log"] else ""), **kw)


def _tick(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _x(values: list, a: dict) -> list:
    return [None if v is None else str(v) for v in values] if a["kind"] == "categorical" else values


# --- one search --------------------------------------------------------------------------
def search_figs(s: SearchReport) -> list[dict]:
    figs = [*pareto(s), history(s), *importances(s), *slices(s), parallel(s), intermediate(s), folds(s),
            test_scatter(s)]
    if s.strategy == "pbt":
        figs += [lineage(s), schedule(s)]
    if s.training is not None and s.training.lr_key is not None:
        figs.append(learning_rate(s))
    return figs


def history(s: SearchReport) -> dict:
    every = s.complete.sort("trial_number")
    if every.height == 0:
        return missing("history", "no complete trial yet")
    done = _drawn(s, every)
    xs, ys = done["trial_number"].to_list(), done["value"].to_list()
    rng = robust(ys)
    trace = points(xs, ys, xs, name="trial" if s.drawn is None else f"trial (random {done.height:,} of "
                   f"{every.height:,})", legend=True, col="#8fb0d8")
    bx, by = changes(every["trial_number"].to_list(), running_best(every["value"].to_list(), s.direction))
    line = {"type": "scatter", "mode": "lines", "x": bx, "y": by, "name": "best so far", "showlegend": True,
            "line": {"color": PALETTE[3], "width": 2, "shape": "hv"}, "hovertemplate": "best %{y:.4g}<extra></extra>"}
    return fig("history", f"{s.metric} per trial and best so far ({s.direction})", [*clamp(trace, rng), line],
               {"xaxis": axis("trial number"),
                "yaxis": axis(s.metric, **({"range": list(rng)} if rng else {}))})


def running_best(values: list, direction: str) -> list:
    best, b, sign = [], None, 1 if direction == "maximize" else -1
    for v in values:
        b = v if b is None or (v is not None and sign * v > sign * b) else b
        best.append(b)
    return best


def changes(xs: list, ys: list) -> tuple[list, list]:
    """The points of a step line (``shape: hv``) where it changes, and its last point: the same
    line in as many points as it has steps (a 100,000-trial history has a few dozen)."""
    keep = [i for i in range(len(ys)) if i == 0 or i == len(ys) - 1 or ys[i] != ys[i - 1]]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _drawn(s: SearchReport, done):
    """The trials of ``done`` that the per-trial plots draw (a seeded sample of a large search)."""
    import polars as pl

    return done if s.drawn is None else done.filter(pl.col("trial_id").is_in(s.drawn.implode()))


def importances(s: SearchReport) -> list[dict]:
    """The importance bars: one chart, or one per objective of a multi-objective search."""
    if s.per_objective:
        return [importance(p.importance, p.note, f"importance objective {p.objective}",
                           f" of objective {p.objective} ({p.direction})") for p in s.per_objective]
    return [importance(s.importance, s.importance_note)]


def importance(imp: Any, note: str | None, name: str = "importance", of: str = "") -> dict:
    if imp is None:
        return missing(name, note or "not computed")
    imp = imp.sort("importance")
    trace = {"type": "bar", "orientation": "h", "y": [escape(p) for p in imp["param"].to_list()],
             "x": imp["importance"].to_list(),
             "error_x": {"type": "data", "array": imp["std"].to_list(), "visible": True, "color": "#444"},
             "marker": {"color": PALETTE[0]}, "hovertemplate": "%{y}: %{x:.3f} ± %{error_x.array:.3f}<extra></extra>"}
    return fig(name, f"importance{of} (fANOVA variance fraction, ± std over members)", [trace],
               {"xaxis": axis("variance fraction", rangemode="tozero"), "yaxis": axis("", type="category")},
               height=max(220, 60 + 28 * imp.height), width=460)


def slices(s: SearchReport) -> list[dict]:
    """Value against each top param (the params the importance ranks first, else every param),
    with the fANOVA main-effect curve where it was computed."""
    done = _drawn(s, s.complete)
    if done.height == 0 or not s.params:
        return [missing("slice", "no complete trial yet")]
    top = list(s.marginals) or s.params[:3]
    ys = done["value"].to_list()
    rng = robust(ys)
    out = []
    for i, p in enumerate(top):
        a = param_axis(s, p)
        data = clamp(points(_x(done[p].to_list(), a), ys, done["trial_number"].to_list(), name="trial",
                            col="#8fb0d8"), rng)
        m = s.marginals.get(p)
        y_range = rng
        if m is not None and m.height:
            mx = _x(m["value"].to_list(), a)
            mean, std = m["mean"].to_list(), m["std"].to_list()
            if rng is not None:   # the curve stays in view
                y_range = (min(rng[0], *mean), max(rng[1], *mean))
            c = color(i)
            if a["kind"] == "continuous":
                data.append({"type": "scatter", "mode": "lines", "x": mx + mx[::-1],
                             "y": [u + d for u, d in zip(mean, std)] + [u - d for u, d in zip(mean, std)][::-1],
                             "fill": "toself", "fillcolor": "rgba(120,120,120,0.15)", "line": {"width": 0},
                             "hoverinfo": "skip", "showlegend": False})
                data.append({"type": "scatter", "mode": "lines", "x": mx, "y": mean, "name": "main effect",
                             "line": {"color": c, "width": 2}, "showlegend": True})
            else:
                data.append({"type": "scatter", "mode": "markers", "x": mx, "y": mean, "name": "main effect ± std",
                             "error_y": {"type": "data", "array": std, "visible": True},
                             "marker": {"color": c, "size": 9, "symbol": "diamond"}, "showlegend": True})
        kind = {"categorical": "categorical", "discrete": "discrete values", "continuous": "continuous"}[a["kind"]]
        out.append(fig(f"slice {p}", f"{s.metric} against {p} ({kind}{', log scale' if a['log'] else ''})", data,
                       {"xaxis": x_axis(p, a),
                        "yaxis": axis(s.metric, **({"range": list(y_range)} if y_range else {}))},
                       width=460))
    return out


def parallel(s: SearchReport) -> dict:
    done = s.complete
    if done.height < 2 or not s.params:
        return missing("parallel coordinates", "fewer than 2 complete trials")
    title = "parallel coordinates"
    if s.drawn is not None:
        n_done = done.height
        done = _drawn(s, done)
        title += f", random {done.height:,} of {n_done:,}"
    title += f" (drag along an axis to filter; top {TOP_K} in red)"
    trials = done["trial_number"].to_list()
    dims = [{"label": "trial", "values": trials}]
    for p in s.params:
        dims.append(_dimension(p, param_axis(s, p), done[p].to_list()))
    values = done["value"].to_list()
    dims.append({"label": escape(s.metric), "values": values})
    trace = {"type": "parcoords", "dimensions": dims, "meta": {"trials": trials},
             "line": {"color": _rank_colors(values, s.direction == "maximize"), "cmin": 0, "cmax": 1,
                      "colorscale": [[0, "#d5dcea"], [0.8, "#2b5a9e"], [0.801, "#e4572e"], [1, "#e4572e"]]},
             "labelfont": {"size": 11}, "tickfont": {"size": 9}}
    return fig("parallel coordinates", title, [trace], {"margin": {"l": 50, "r": 50, "t": 100, "b": 30}},
               width=max(560, 110 * len(dims)), height=420)


def _dimension(p: str, a: dict, values: list) -> dict:
    if a["kind"] == "categorical":
        cats = a["categories"]
        index = {c: i for i, c in enumerate(cats)}
        return {"label": escape(p), "values": [index.get(str(v), -1) for v in values],
                "tickvals": list(range(len(cats))), "ticktext": [escape(c) for c in cats]}
    known = [math.log10(v) for v in values if v is not None] if a["log"] else []
    if known:
        lv = [None if v is None else math.log10(v) for v in values]
        lo, hi = math.floor(min(known)), math.ceil(max(known))
        ticks = list(range(lo, hi + 1))
        return {"label": escape(p) + " (log)", "values": lv, "tickvals": ticks, "ticktext": [f"1e{t}" for t in ticks]}
    if a["kind"] == "discrete":
        ticks = a["values"]
        return {"label": escape(p), "values": values, "tickvals": ticks, "ticktext": [_tick(v) for v in ticks]}
    return {"label": escape(p), "values": values}


def _rank_colors(values: list, higher_is_better: bool) -> list:
    """0 .. 0.8 from worst to best, 1.0 for the top TOP_K (drawn red)."""
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=higher_is_better)
    n = len(values)
    out = [0.0] * n
    for rank, i in enumerate(order):
        out[i] = 1.0 if rank < TOP_K else 0.8 * (1 - rank / max(1, n - 1))
    return out


def intermediate(s: SearchReport) -> dict:
    r = s.reports
    if r is None or r.height == 0:
        return missing("intermediate values", "no trial reported intermediate values")
    title = "intermediate values"
    if s.drawn is not None:
        title += f", random {r['trial_number'].n_unique():,} of {s.trials.height:,} trials"
    title += " (x = pruned, dot = stopped early)"
    by_state: dict = {}
    for part in r.partition_by("trial_number", maintain_order=True, as_dict=False):
        by_state.setdefault(part["state"][0], []).append(
            (part["trial_number"][0], part["step"].to_list(), part["value"].to_list()))
    data = [t for state, parts in by_state.items()
            if (t := lines(parts, name=state, col=STATE_COLOR.get(state, "#1f77b4"))) is not None]
    pruned = by_state.get("pruned", [])
    if pruned:
        data.append(points([x[-1] for _, x, _ in pruned], [y[-1] for _, _, y in pruned], [n for n, _, _ in pruned],
                           name="pruned here", col=STATE_COLOR["pruned"], symbol="x", size=8, legend=True))
    data += _stops(s)
    rng = robust(r["value"].to_list())
    return fig("intermediate values", title, data,
               {"xaxis": axis("step"), "yaxis": axis("value", **({"range": list(rng)} if rng else {}))})


def _stops(s: SearchReport) -> list[dict]:
    """A dot where EarlyStopping stopped each drawn trial (its value at the stop step)."""
    t = s.training
    if t is None or not t.n_stopped:
        return []
    at = {(n, st): v for n, st, v in s.reports.select("trial_number", "step", "value").iter_rows()}
    xs, ys, ns, notes = [], [], [], []
    for row in t.trials.filter(t.trials["stopped_early"]).iter_rows(named=True):
        v = at.get((row["trial_number"], row["stop_step"]))
        if v is not None:
            xs.append(row["stop_step"])
            ys.append(v)
            ns.append(row["trial_number"])
            notes.append(f"trial {row['trial_number']} stopped early at step {row['stop_step']} "
                         f"(best step {row['best_step']})")
    return [points(xs, ys, ns, name="stopped early", col=STOP_COLOR, size=8, legend=True, notes=notes)] if xs else []


def learning_rate(s: SearchReport) -> dict:
    t = s.training
    parts = [(p["trial_number"][0], p["step"].to_list(), p["lr"].to_list())
             for p in t.lr.partition_by("trial_number", maintain_order=True, as_dict=False)]
    best = s.best["trial_number"] if s.best else None
    data = [x for x in (lines([q for q in parts if q[0] != best], name="trials", col="#9ab"),
                        lines([q for q in parts if q[0] == best], name=f"best (trial {best})", col=PALETTE[0],
                              width=2.4, opacity=1.0)) if x is not None]
    lrs = [v for _, _, ys in parts for v in ys if v is not None]
    log = bool(lrs) and min(lrs) > 0 and max(lrs) / min(lrs) >= 100
    return fig("learning rate", f"learning-rate schedule ({t.lr_key}) per step", data,
               {"xaxis": axis("step"), "yaxis": axis(t.lr_key or "lr", **({"type": "log"} if log else {}))})


def folds(s: SearchReport) -> dict:
    f = s.folds
    if f is None or f.height == 0:
        return missing("fold scores", "no fold scores recorded (trial.score(..., split='fold'))")
    order = list(dict.fromkeys(f["trial_number"].to_list()))
    data = []
    for i, t in enumerate(order):
        v = f.filter(f["trial_number"] == t)["value"].to_list()
        data.append(points([f"#{t}"] * len(v), v, [t] * len(v), col=color(i), size=7))
        data.append({"type": "scatter", "mode": "markers", "x": [f"#{t}"], "y": [sum(v) / len(v)],
                     "marker": {"symbol": "line-ew-open", "size": 30, "color": "#222", "line": {"width": 2}},
                     "hovertemplate": "fold mean %{y:.4g}<extra></extra>", "showlegend": False})
    return fig("fold scores", "fold scores of the top configurations (bar = mean)", data,
               {"xaxis": axis("trial (best first)", type="category"), "yaxis": axis(s.metric)}, width=460)


def test_scatter(s: SearchReport) -> dict:
    t = s.tests
    if t is None or t.height < 2:
        return missing("validation-vs-test per trial",
                       "fewer than 2 trials have a test score (the winner's is in the comparison plot)")
    v, test = t["value"].to_list(), t["test"].to_list()
    known = [x for x in v + test if x is not None]
    diag = {"type": "scatter", "mode": "lines", "x": [min(known), max(known)], "y": [min(known), max(known)],
            "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip", "name": "test = validation",
            "showlegend": True}
    return fig("validation-vs-test per trial", "validation vs test per trial",
               [points(v, test, t["trial_number"].to_list()), diag],
               {"xaxis": axis(f"validation {s.metric}"), "yaxis": axis(f"test {s.metric}")}, width=420)


def pareto(s: SearchReport) -> list[dict]:
    p = s.pareto
    if p is None:
        return []
    a, b = p.objectives[:2] if len(p.objectives) > 1 else (p.objectives[0], p.objectives[0])
    done = _drawn(s, s.complete)
    title = "Pareto front" + (f" (objectives 0 and 1 of {len(p.objectives)})" if len(p.objectives) > 2 else "")
    front = p.front.sort(a)
    data = [points(done[a].to_list(), done[b].to_list(), done["trial_number"].to_list(), name="trial",
                   col="#bbb", legend=True),
            points(front[a].to_list(), front[b].to_list(), front["trial_number"].to_list(), name="Pareto front",
                   col=PALETTE[3], size=8, legend=True, mode="markers+lines" if len(p.objectives) == 2 else "markers",
                   line={"color": PALETTE[3], "width": 1, "shape": "hv" if len(p.objectives) == 2 else "linear"})]
    hv = p.hypervolume
    hx, hy = changes(hv["trial_number"].to_list(), hv["hypervolume"].to_list())
    curve = {"type": "scatter", "mode": "lines", "x": hx, "y": hy,
             "line": {"color": PALETTE[1], "shape": "hv", "width": 2}, "showlegend": False,
             "hovertemplate": "after trial %{x}: %{y:.4g}<extra></extra>"}
    return [fig("Pareto front", title, data, {"xaxis": axis(f"{a} ({p.directions[0]})"),
                                              "yaxis": axis(f"{b} ({p.directions[min(1, len(p.directions) - 1)]})")}),
            fig("hypervolume", "hypervolume after each complete trial", [curve],
                {"xaxis": axis("trial number"), "yaxis": axis("hypervolume")}, width=460)]


def lineage(s: SearchReport) -> dict:
    lin = s.lineage
    if lin is None or lin.height == 0:
        return missing("PBT lineage", "no forks recorded")
    data = []
    if s.reports is not None and s.reports.height:
        parts = [(p["trial_number"][0], p["step"].to_list(), p["value"].to_list())
                 for p in s.reports.partition_by("trial_number", maintain_order=True, as_dict=False)]
        curves = lines(parts, name="member scores", col="#9ab", opacity=0.8)
        data += [curves] if curves is not None else []
    forks = [f"{escape(str(x))} → {escape(str(y))}" for x, y in zip(lin["parent_trial_id"], lin["trial_id"])]
    data.append({"type": "scatter", "mode": "markers", "x": lin["step"].to_list(), "y": lin["parent_score"].to_list(),
                 "text": forks, "name": "fork (parent's score)", "marker": {"color": PALETTE[1], "size": 8},
                 "hovertemplate": "%{text}<br>step %{x}, parent score %{y:.4g}<extra></extra>", "showlegend": True})
    if "replaced_score" in lin.columns:
        xs: list = []
        ys: list = []
        for x, lo, hi in zip(lin["step"], lin["replaced_score"], lin["parent_score"]):
            xs += [x, x, None]
            ys += [lo, hi, None]
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "line": {"color": PALETTE[1], "width": 1},
                     "hoverinfo": "skip", "name": "replaced → parent", "showlegend": True})
    return fig("PBT lineage", "PBT: member scores and exploits", data,
               {"xaxis": axis("step"), "yaxis": axis(s.metric)}, width=620)


def schedule(s: SearchReport) -> dict:
    sch = s.schedule
    if sch is None or sch.height == 0:
        return missing("PBT schedule", "no schedule for the winner")
    params = [c for c in sch.columns if c not in ("trial_id", "from_step", "to_step")
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in sch[c].to_list())]
    if not params:
        return missing("PBT schedule", "the winner has no numeric params")
    last = sch["to_step"].drop_nulls().max()
    end = (last or 0) + 1 if last is not None else max(sch["from_step"].to_list()) + 1
    data = []
    for i, p in enumerate(params):
        xs, ys = [], []
        for a, b, val in zip(sch["from_step"].to_list(), sch["to_step"].to_list(), sch[p].to_list()):
            xs += [a, b if b is not None else end]
            ys += [val, val]
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": escape(p),
                     "line": {"color": color(i), "width": 2}, "showlegend": True})
    positive = all(v > 0 for p in params for v in sch[p].to_list())
    return fig("PBT schedule", "the winner's hyperparameter schedule", data,
               {"xaxis": axis("step"), "yaxis": axis("value", **({"type": "log"} if positive else {}))}, width=460)


# --- a group of comparable searches -------------------------------------------------------
def group_figs(g: Group, members: list) -> list[dict]:
    return [best_so_far(g, members), gap(g, members)]


def best_so_far(g: Group, members: list) -> dict:
    c = g.comparison
    xlabel = "trials finished" if c is None or c.by == "trials" else c.unit
    data: list = []
    if c is not None:
        for i, strategy in enumerate(dict.fromkeys(c.curves["strategy"].to_list())):
            col = color(i)
            runs = c.curves.filter(c.curves["strategy"] == strategy)
            for k, search in enumerate(dict.fromkeys(runs["search"].to_list())):
                cur = runs.filter(runs["search"] == search)
                xs, ys = cur["x"].to_list(), cur["best"].to_list()
                if c.by == "compute" and xs[-1] < c.horizon:   # a search that stopped keeps its best
                    xs, ys = xs + [c.horizon], ys + ys[-1:]
                data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": escape(str(strategy)),
                             "legendgroup": escape(str(strategy)), "showlegend": k == 0, "opacity": 0.5,
                             "line": {"color": col, "shape": "hv", "width": 1.2},
                             "hovertemplate": escape(str(search)) + ": %{y:.4g} at %{x:.4g}<extra></extra>"})
            b = c.bands.filter(c.bands["strategy"] == strategy)
            if b.height and (b["n"].max() or 0) > 1:       # bands only over several seeds
                xs = b["x"].to_list()
                data.append({"type": "scatter", "mode": "lines", "x": xs + xs[::-1],
                             "y": b["hi"].to_list() + b["lo"].to_list()[::-1], "fill": "toself", "opacity": 0.2,
                             "fillcolor": col, "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False,
                             "legendgroup": escape(str(strategy)), "meta": {"band": True}})
                data.append({"type": "scatter", "mode": "lines", "x": xs, "y": b["mean"].to_list(),
                             "name": escape(f"{strategy} mean"), "legendgroup": escape(str(strategy)),
                             "showlegend": False, "line": {"color": col, "width": 2.6}})
    else:
        for i, s in enumerate(members):
            best = running_best(s.complete.sort("finished_at")["value"].to_list(), s.direction)
            if best:
                xs, best = changes(list(range(1, len(best) + 1)), best)
                data.append({"type": "scatter", "mode": "lines", "x": xs, "y": best,
                             "name": escape(s.strategy or s.name), "showlegend": True,
                             "line": {"color": color(i), "shape": "hv"}})
    if not data:
        return missing("best-so-far", "no complete trial yet")
    return fig("best-so-far", f"best-so-far {g.metric} per strategy (bands: min–max over seeds)", data,
               {"xaxis": axis(xlabel), "yaxis": axis(g.metric)}, width=620)


def gap(g: Group, members: list) -> dict:
    sel = [s for s in members if s.test_score is not None and s.best is not None]
    if not sel:
        return missing("validation vs test", "no winner has a test score (hptrack.sklearn.log_test_score)")
    names = [escape(s.name) for s in sel]
    data = [{"type": "scatter", "mode": "markers", "x": names, "y": [s.best["value"] for s in sel],
             "name": "validation (CV)", "marker": {"color": PALETTE[0], "size": 10}, "showlegend": True},
            {"type": "scatter", "mode": "markers", "x": names, "y": [s.test_score for s in sel],
             "name": "held-out test", "marker": {"color": PALETTE[3], "size": 10, "symbol": "x"}, "showlegend": True}]
    return fig("validation vs test", f"validation vs test {g.metric} of each search's winner", data,
               {"xaxis": axis("", type="category", tickangle=-30), "yaxis": axis(g.metric)},
               width=max(420, 90 * len(sel)))
