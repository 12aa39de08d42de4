"""Is the winner of a search overfit to its validation data?

``diagnose(search)`` reads the trials and their fold scores (``split='fold'``)
and test scores (``split='test'``) from the store and answers, with the
statistics of :mod:`hptrack.analysis.stats`:

- how many configurations are statistically tied with the best
  (Nadeau-Bengio corrected resampled t-test on the fold scores);
- how optimistic the best CV score is (BBC-CV, and Tibshirani & Tibshirani as
  a cheap second opinion), and the corrected estimate;
- how stable the winner is over bootstrap resamples of the folds;
- the validation-test gap, when the best trial has a test score;
- the nested-CV estimate beside the plain best CV score, when a nested run
  (``hptrack.sklearn.nested_cv``) is in the store.

>>> d = hptrack.analysis.diagnose("rf-grid")
>>> d.warnings
['the winner is statistically tied with 14 other configurations ...']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hptrack._files.checks import load_json
from hptrack._files.store import StoreLike
from hptrack._read.views import AsOf, Connection
from hptrack.analysis import stats
from hptrack.analysis.notebook import Shown

__all__ = ["ASSUMED", "Diagnosis", "N_BOOT", "RECORDED", "diagnose", "diagnose_many"]

N_BOOT = 1000    # bootstrap resamples: one default for the library, the CLI and the report
RECORDED = "recorded fold sizes"
ASSUMED = "assumed k-fold: 1/(J-1)"


@dataclass(repr=False)
class Diagnosis(Shown):
    """What :func:`diagnose` found. Scores are in the metric's own units and
    direction; ``optimistic_bias`` and ``val_test_gap`` are positive when the
    reported best looks better than it is."""
    search: str
    search_id: str
    metric: str
    direction: str
    n_trials: int                       # completed trials with a value
    n_folds: int = 0                    # folds every analysed configuration has
    n_configs: int = 0                  # configurations with all those folds
    best_trial_id: str | None = None
    best_trial_number: int | None = None
    best_params: dict = field(default_factory=dict)
    best_value: float | None = None     # the best trial's recorded value
    best_cv: float | None = None        # mean of its fold scores
    best_cv_se: float | None = None     # standard error of that mean over the folds
    alpha: float = 0.05
    n_tied: int | None = None           # other configurations tied with the best
    tied_trial_ids: list = field(default_factory=list)
    tie_pvalues: dict = field(default_factory=dict)    # trial_id -> p of its test against the best
    test_train_ratio: float | None = None  # n_test / n_train of the tie test's variance correction
    ratio_source: str | None = None     # RECORDED or ASSUMED: where that ratio came from
    optimistic_bias: float | None = None    # BBC-CV
    corrected_best: float | None = None     # best_cv with the BBC-CV bias removed
    corrected_ci: tuple | None = None
    tibshirani_bias: float | None = None
    p_best_stays_best: float | None = None
    top_k: int | None = None
    top_k_kendall_tau: float | None = None
    test_score: float | None = None
    val_test_gap: float | None = None
    nested: dict | None = None
    leakage: list = field(default_factory=list)         # preprocessing evidently fit outside the CV
    warnings: list = field(default_factory=list)
    not_computed: dict = field(default_factory=dict)   # diagnostic -> why not

    def _facts(self):
        best = (None if self.best_trial_number is None else
                f"trial {self.best_trial_number}: {self.best_value:.4g} {self.metric} ({self.direction})")
        cv = None if self.best_cv is None else f"{self.best_cv:.4g} \u00b1 {self.best_cv_se or 0:.2g} (se)"
        corrected = (None if self.corrected_best is None else
                     f"{self.corrected_best:.4g} (bias {self.optimistic_bias:.3g}, BBC-CV)")
        facts = [("best", best), ("params", self.best_params or None), ("fold mean", cv),
                 ("tied with best", self.n_tied), ("corrected best", corrected),
                 ("P(best stays best)", self.p_best_stays_best), ("test score", self.test_score),
                 ("validation - test", self.val_test_gap)]
        facts += [("warning", w) for w in self.warnings]
        facts += [(f"not computed: {k}", v) for k, v in self.not_computed.items()]
        return f"{self.search!r}, {self.n_trials} trials", facts, []

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["corrected_ci"] is not None:
            d["corrected_ci"] = list(d["corrected_ci"])
        return d


def diagnose(search: str, store: StoreLike = None, alpha: float = 0.05, seed: int = 0, n_boot: int = N_BOOT,
             top_k: int = 5, con: Connection | None = None, as_of: AsOf = None) -> Diagnosis:
    """Hyperparameter-overfitting diagnostics of ``search`` (name or id).

    Needs fold scores (``trial.score(v, split="fold", fold=k)``, written by
    ``hptrack.sklearn.track``) for the tie, bias and stability diagnostics;
    without them it says which it could not compute and why.

    The tie test's ratio n_test/n_train is the mean over the analysed folds of
    their recorded sizes (``n_train`` and ``n_test`` in a fold score's payload,
    written by ``hptrack.sklearn.track``; 1/9 for 10-fold CV however often it is
    repeated). When any fold lacks them it assumes k-fold CV with k = J folds,
    1/(J-1); ``ratio_source`` says which.

    ``leakage`` (also among the warnings) names preprocessing evidently fitted outside
    the CV of a scikit-learn search: X scaled on all rows while the estimator is not a
    Pipeline that scales, or a column that is almost the target (see ``leakage``).
    """
    from hptrack._read.read import connect, resolve_search

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    con = con or connect(store, as_of)
    search_id, _ = resolve_search(con, search)
    return diagnose_many(con, [search_id], alpha=alpha, seed=seed, n_boot=n_boot, top_k=top_k)[search_id]


def diagnose_many(con: Connection, search_ids: list[str], *, alpha: float = 0.05, seed: int = 0,
                  n_boot: int = N_BOOT, top_k: int = 5) -> dict[str, Diagnosis]:
    """``{search_id: diagnose(search_id, con=con, ...)}`` for many searches, read in
    four queries over all of them (``hptrack report``'s batch read)."""
    from hptrack.schema import decode_param

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    ids = [search_ids]
    meta = {sid: rest for sid, *rest in con.sql(
        "SELECT search_id, name, direction, metric, payload FROM searches "
        "WHERE search_id IN (SELECT unnest(?::VARCHAR[]))", params=ids).fetchall()}
    trials: dict[str, list] = {}
    for sid, *row in con.sql(
            "SELECT search_id, trial_id, trial_number, value FROM trials WHERE search_id IN "
            "(SELECT unnest(?::VARCHAR[])) AND state = 'complete' AND value IS NOT NULL "
            "ORDER BY search_id, trial_number", params=ids).fetchall():
        trials.setdefault(sid, []).append(tuple(row))
    scores: dict[str, list] = {}
    for sid, *row in con.sql(
            "SELECT search_id, trial_id, split, fold, metric, value, "
            "TRY_CAST(TRY(payload ->> 'n_train') AS DOUBLE), TRY_CAST(TRY(payload ->> 'n_test') AS DOUBLE) "
            "FROM scores WHERE search_id IN (SELECT unnest(?::VARCHAR[])) AND split IN ('fold', 'test') "
            "ORDER BY search_id, ts", params=ids).fetchall():
        scores.setdefault(sid, []).append(tuple(row))
    payloads, bests = {}, {}
    for sid in search_ids:
        payload = load_json(meta[sid][3], {})
        payloads[sid] = payload if isinstance(payload, dict) else {}
        sign = 1.0 if (meta[sid][1] or "maximize") == "maximize" else -1.0
        if trials.get(sid) and payloads[sid].get("kind") != "nested_cv":
            bests[sid] = max(trials[sid], key=lambda t: (sign * t[2], -t[1]))  # best value, then first
    # the best trials' params, in one query
    params: dict[str, dict] = {}
    for sid, n, k, num, text in con.sql(
            "SELECT search_id, name, kind, value_num, value_str FROM params WHERE "
            "(search_id, trial_id) IN (SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])) "
            "ORDER BY search_id, name", params=[list(bests), [b[0] for b in bests.values()]]).fetchall():
        params.setdefault(sid, {})[n] = decode_param(k, num, text)
    out = {}
    for sid in search_ids:
        name, direction, metric, _ = meta[sid]
        out[sid] = _diagnosis(con, sid, name, direction, metric, payloads[sid], trials.get(sid, []),
                              scores.get(sid, []), bests.get(sid), params.get(sid, {}), alpha, seed, n_boot, top_k)
    return out


def _diagnosis(con, search_id, name, direction, metric, payload, trials, scores, best, best_params, alpha, seed,
               n_boot, top_k) -> Diagnosis:
    """What ``diagnose`` concludes from what it read: the search's complete trials
    ``(trial_id, trial_number, value)``, its fold and test scores, the best of those
    trials and its params."""
    direction = direction or "maximize"
    sign = 1.0 if direction == "maximize" else -1.0   # internally: higher is better
    d = Diagnosis(search=name, search_id=search_id, metric=metric or "value", direction=direction,
                  n_trials=len(trials), alpha=alpha)
    if payload.get("kind") == "nested_cv":
        _nested_outer(con, d, search_id)
        return d
    d.leakage = leakage(payload.get("leakage"))
    d.warnings += d.leakage
    if not trials:
        d.not_computed["all"] = "the search has no completed trial with a value"
        d.warnings.append("nothing to diagnose: the search has no completed trial with a value")
        return d

    values = {tid: sign * v for tid, _, v in trials}
    best_tid, best_num, best_val = best
    d.best_trial_id, d.best_trial_number, d.best_value = best_tid, best_num, best_val
    d.best_params = best_params

    fold_metric = _pick_metric([s for s in scores if s[1] == "fold"], d.metric)
    folds: dict[str, dict[int, float]] = {}
    sizes: dict[tuple, tuple] = {}      # (trial_id, fold) -> (n_train, n_test) of that score
    tests: dict[str, float] = {}
    for tid, split, fold, m, v, n_train, n_test in scores:
        if tid not in values:
            continue  # failed, pruned or running trials are not candidates
        if split == "fold" and m == fold_metric and fold is not None:
            folds.setdefault(tid, {})[fold] = sign * v     # the latest score of a fold wins
            sizes[tid, fold] = (n_train, n_test)           # and so do its sizes
        elif split == "test" and (fold_metric is None or m in (fold_metric, d.metric, "value")):
            tests[tid] = sign * v

    _fold_diagnostics(d, values, folds, sizes, best_tid, sign, alpha, seed, n_boot, top_k)
    _test_gap(d, tests, sign)
    _nested_inner(con, d, payload, sign)
    _warn(d, sign)
    return d


def _pick_metric(fold_rows, search_metric):
    """The fold-score metric that is the objective: the search's metric name,
    else the default 'value', else the only (or most common) one."""
    counts: dict[str, int] = {}
    for row in fold_rows:
        counts[row[3]] = counts.get(row[3], 0) + 1
    if not counts:
        return None
    for m in (search_metric, "value"):
        if m in counts:
            return m
    return max(counts, key=lambda m: counts[m])


def _ratio(sizes, ids, fold_list) -> tuple[float, str]:
    """n_test/n_train for the tie test: the mean over the analysed folds of
    their recorded sizes, or k-fold's 1/(J-1) when any fold lacks them."""
    ratios = []
    for t in ids:
        for k in fold_list:
            n_train, n_test = sizes.get((t, k), (None, None))
            if not (n_train and n_train > 0 and n_test is not None and n_test > 0):
                return 1.0 / (len(fold_list) - 1), ASSUMED
            ratios.append(n_test / n_train)
    return float(np.mean(ratios)), RECORDED


def _fold_diagnostics(d, values, folds, sizes, best_tid, sign, alpha, seed, n_boot, top_k) -> None:
    if not folds:
        why = ("no fold scores recorded (record them with trial.score(v, split='fold', fold=k), "
               "or use hptrack.sklearn.track)")
        for key in ("n_tied", "optimistic_bias", "corrected_best", "tibshirani_bias",
                    "p_best_stays_best", "top_k_kendall_tau"):
            d.not_computed[key] = why
        return
    # the fold set most configurations share; configurations missing a fold are left out
    fold_sets: dict[frozenset, int] = {}
    for f in folds.values():
        fold_sets[frozenset(f)] = fold_sets.get(frozenset(f), 0) + 1
    common = max(fold_sets, key=lambda fs: (fold_sets[fs] * len(fs), len(fs)))
    ids = [t for t in values if t in folds and common <= set(folds[t])]
    fold_list = sorted(common)
    d.n_folds, d.n_configs = len(fold_list), len(ids)
    left_out = sum(1 for t in values if t not in ids)
    if left_out:
        d.warnings.append(f"{left_out} of {len(values)} completed trials lack some of the "
                          f"{len(fold_list)} folds and were left out of the fold diagnostics")
    if len(fold_list) < 2 or len(ids) < 2:
        why = (f"needs at least 2 folds and 2 configurations with all folds; found "
               f"{len(fold_list)} fold(s) and {len(ids)} configuration(s)")
        for key in ("n_tied", "optimistic_bias", "corrected_best", "tibshirani_bias",
                    "p_best_stays_best", "top_k_kendall_tau"):
            d.not_computed[key] = why
        if ids and best_tid in ids:
            d.best_cv = sign * float(np.mean([folds[best_tid][k] for k in fold_list]))
        return
    m = np.array([[folds[t][k] for k in fold_list] for t in ids])
    means = m.mean(axis=1)
    b = int(np.argmax(means))
    if ids[b] != best_tid:
        d.warnings.append(
            f"the trial with the best value (#{d.best_trial_number}) is not the one with the best "
            "mean fold score; the fold diagnostics are about the latter")
        d.best_trial_id = ids[b]
    d.best_cv = sign * float(means[b])
    d.test_train_ratio, d.ratio_source = _ratio(sizes, ids, fold_list)
    p = stats.pvalues_vs_best(m, test_train_ratio=d.test_train_ratio, best=b)
    d.tie_pvalues = {ids[i]: float(p[i]) for i in range(len(ids)) if i != b}
    d.tied_trial_ids = [t for t, pv in d.tie_pvalues.items() if pv >= alpha]
    d.n_tied = len(d.tied_trial_ids)
    bbc = stats.bbc_cv(m, n_boot=n_boot, seed=seed)
    d.optimistic_bias = float(bbc.bias)
    d.corrected_best = sign * float(bbc.estimate)
    d.corrected_ci = tuple(sorted(sign * x for x in bbc.ci))
    d.tibshirani_bias = stats.tibshirani_bias(m)
    d.top_k = min(top_k, len(ids))
    d.p_best_stays_best, d.top_k_kendall_tau = stats.rank_stability(
        m, n_boot=n_boot, seed=seed, top_k=d.top_k)
    d.best_cv_se = float(m[b].std(ddof=1) / np.sqrt(m.shape[1]))


def _test_gap(d, tests, sign) -> None:
    tid = d.best_trial_id
    if tid not in tests:
        d.not_computed["val_test_gap"] = ("no test score on the best trial (record one with "
                                          "trial.score(v, split='test') or "
                                          "hptrack.sklearn.log_test_score)")
        return
    d.test_score = sign * tests[tid]
    ref = d.best_cv if d.best_cv is not None else d.best_value
    d.val_test_gap = sign * (ref - d.test_score)


def _nested_inner(con, d, payload, sign) -> None:
    """For an inner search of a nested run: the outer (nested-CV) estimate."""
    parent = payload.get("parent_search_id")
    if not parent:
        d.not_computed["nested"] = "no nested-CV run for this search (see hptrack.sklearn.nested_cv)"
        return
    outer = _outer_scores(con, parent)
    if outer:
        ref = d.best_cv if d.best_cv is not None else d.best_value
        est = float(np.mean(outer))
        d.nested = {"outer_search_id": parent, "n_outer_folds": len(outer), "nested_estimate": est,
                    "plain_best_cv": ref, "gap": sign * (ref - est)}


def _outer_scores(con, outer_id):
    return [v for (v,) in con.sql(
        "SELECT value FROM trials WHERE search_id = ? AND state = 'complete' AND value IS NOT NULL "
        "ORDER BY trial_number", params=[outer_id]).fetchall()]


def _nested_outer(con, d, outer_id) -> None:
    """The search is a nested-CV run: compare its outer estimate with the inner
    searches' plain best CV scores."""
    sign = 1.0 if d.direction == "maximize" else -1.0
    outer = _outer_scores(con, outer_id)
    inner = con.sql(
        "SELECT s.search_id, max(t.value * ?) * ? FROM searches s JOIN trials t USING (search_id) "
        "WHERE s.payload ->> 'parent_search_id' = ? AND t.state = 'complete' GROUP BY s.search_id",
        params=[sign, sign, outer_id]).fetchall()
    for key in ("n_tied", "optimistic_bias", "corrected_best", "p_best_stays_best"):
        d.not_computed[key] = ("this is a nested-CV run whose trials are outer folds; "
                               "diagnose its inner searches ('<name>/outer-<k>') for these")
    if not outer:
        d.warnings.append("the nested-CV run has no completed outer fold")
        return
    est = float(np.mean(outer))
    plain = float(np.mean([v for _, v in inner])) if inner else None
    d.nested = {"outer_search_id": outer_id, "n_outer_folds": len(outer), "nested_estimate": est,
                "outer_sd": float(np.std(outer, ddof=1)) if len(outer) > 1 else None,
                "plain_best_cv": plain, "gap": None if plain is None else sign * (plain - est)}
    _warn(d, sign)


# steps that, refitted on each training fold, undo any scaling of X made before the search
REFIT_SCALERS = {"StandardScaler", "MinMaxScaler", "RobustScaler"}
TARGET_R = 0.99   # |r| between a column and y on all rows from which it is called target-derived


def leakage(facts: Any) -> list[str]:
    """Warnings from the facts hptrack.sklearn records of the data a search was given
    (tracker/sklearn/_leakage.py): X scaled on all rows outside a Pipeline that scales,
    a column that is almost the target."""
    if not isinstance(facts, dict):
        return []
    out = []
    in_cv: list = facts["in_cv"] if isinstance(facts.get("in_cv"), list) else []
    scaled = facts.get("scaled")
    if scaled in ("standard", "minmax") and not REFIT_SCALERS & set(in_cv):
        how = ("has mean 0 and standard deviation 1" if scaled == "standard" else "spans exactly [0, 1]")
        scaler = "StandardScaler" if scaled == "standard" else "MinMaxScaler"
        where = f"a Pipeline of {', '.join(in_cv)} (no scaler)" if in_cv else "not a Pipeline"
        out.append(f"possible leakage: every column of X {how} over all rows, so it was scaled before "
                   f"the search, while the estimator is {where}: the scaler saw every fold's validation "
                   f"rows. Pass the raw X and scale inside the CV: make_pipeline({scaler}(), estimator)")
    target = facts.get("target")
    if isinstance(target, dict) and isinstance(target.get("r"), (int, float)) and abs(target["r"]) >= TARGET_R:
        out.append(f"possible leakage: column {target.get('column')!r} correlates with the target at "
                   f"r = {target['r']:.4f} over all rows; a feature derived from y (a target encoding, a "
                   "value from after the outcome) makes every fold's score an overestimate. Derive it "
                   "inside the CV (a Pipeline step) or drop it")
    return out


def _fmt(x) -> str:
    return f"{x:.4g}"


def _warn(d, sign) -> None:
    w = d.warnings
    se = d.best_cv_se
    if d.n_tied:
        others = d.n_configs - 1
        w.append(f"the winner is statistically tied with {d.n_tied} of the other {others} "
                 f"configurations (corrected resampled t-test on {d.n_folds} folds, "
                 f"alpha={d.alpha}, n_test/n_train {d.test_train_ratio:.4g} from "
                 f"{d.ratio_source}); choosing among them is largely luck")
    if d.optimistic_bias is not None and se is not None and d.optimistic_bias > 0.5 * se:
        w.append(f"its CV score {_fmt(d.best_cv)} is optimistic by about {_fmt(d.optimistic_bias)} "
                 f"(BBC-CV; {d.optimistic_bias / se:.1f} standard errors); expect about "
                 f"{_fmt(d.corrected_best)} on new data (Tibshirani-Tibshirani bias: "
                 f"{_fmt(d.tibshirani_bias)})")
    if d.p_best_stays_best is not None and d.p_best_stays_best < 0.8:
        w.append(f"the winner stays best in only {d.p_best_stays_best:.0%} of bootstrap resamples "
                 f"of the folds (Kendall's tau of the top {d.top_k}: {d.top_k_kendall_tau:.2f})")
    if d.val_test_gap is not None and d.val_test_gap > (se if se else 0.0):
        w.append(f"the test score {_fmt(d.test_score)} is worse than the CV score by "
                 f"{_fmt(d.val_test_gap)}")
    if d.nested and d.nested.get("gap") is not None and d.nested["gap"] > 0:
        w.append(f"the nested-CV estimate {_fmt(d.nested['nested_estimate'])} is worse than the "
                 f"plain best CV score {_fmt(d.nested['plain_best_cv'])} by {_fmt(d.nested['gap'])}")
    if d.n_folds and d.n_folds < 5 and d.n_tied is not None:
        w.append(f"only {d.n_folds} folds: the tests have little power, so ties are likely")
