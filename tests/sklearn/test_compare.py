"""hptrack.analysis.comparison on searches written through the real API."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import scipy.stats as sps

from hptrack import api
from hptrack.analysis.comparison import compare

SEEDS = 200
X_STAR = 0.37  # the optimum of the important param


def objective(x, y):
    # y is irrelevant: this is Bergstra & Bengio's (2012) low effective dimension
    return 1.0 - (x - X_STAR) ** 2


@pytest.fixture(scope="module")
def bergstra(tmp_path_factory):
    """200 seeds of a 3x3 grid and of 9 random trials, each its own search."""
    store = tmp_path_factory.mktemp("bb")
    axis = [0.0, 0.5, 1.0]
    grid = [(x, y) for x in axis for y in axis]
    names = {"grid": [], "random": []}
    best_x = {"grid": [], "random": []}
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        for strategy, points in (("grid", grid), ("random", rng.uniform(0, 1, (9, 2)).tolist())):
            name = f"{strategy}-s{seed}"
            s = api.search(name, strategy=strategy, direction="maximize", metric="f",
                           seed=seed, store=store, durability="batch")
            for x, y in points:
                with s.trial({"x": x, "y": y}) as t:
                    t.complete(objective(x, y))
            names[strategy].append(name)
            best_x[strategy].append(min(points, key=lambda p: abs(p[0] - X_STAR))[0])
        s.writer.flush()
    return store, names, best_x


def test_random_beats_grid_in_most_seeds(bergstra):
    _, _, best_x = bergstra
    dist = {k: np.abs(np.array(v) - X_STAR) for k, v in best_x.items()}
    wins = int(np.sum(dist["random"] < dist["grid"]))
    # P(random wins) = 1 - (1 - 2 * 0.13)^9 = 0.93; "most" of 200 seeds
    assert wins > 0.8 * SEEDS


def test_compare_ranks_random_ahead_significantly(bergstra):
    store, names, _ = bergstra
    r = compare(names["grid"] + names["random"], store=store, n_boot=200)
    s = {row["strategy"]: row for row in r.summary.to_dicts()}
    assert s["random"]["n_searches"] == s["grid"]["n_searches"] == SEEDS
    assert s["random"]["mean_rank"] < 1.3 and s["grid"]["mean_rank"] > 1.7
    assert s["random"]["final_best_mean"] > s["grid"]["final_best_mean"]
    assert s["grid"]["final_best_mean"] == pytest.approx(objective(0.5, 0))
    assert r.summary["strategy"][0] == "random"          # sorted by mean rank
    assert r.tests["n_blocks"] == SEEDS                  # paired by seed
    # two strategies: the Friedman test itself decides, and it is far below alpha
    assert r.tests["friedman"]["p_f"] < 1e-6
    assert r.best == "random" and r.verdict.startswith("best mean rank, significant at alpha = 0.05")
    assert r.tests["friedman"]["p"] < 1e-6
    (w,) = r.tests["wilcoxon_holm"]
    assert w["significant"] and w["p_holm"] < 1e-6
    assert (w["a"], w["b"]) == ("grid", "random") and w["mean_diff"] < 0
    # curves: 9 trials per search, best-so-far never decreasing
    assert r.curves.height == 2 * SEEDS * 9
    one = r.curves.filter(r.curves["search"] == "random-s3")["best"].to_numpy()
    assert np.all(np.diff(one) >= 0)
    # the band holds the mean; ranks over time end at the summary's ranks
    band = r.bands.filter((r.bands["strategy"] == "random") & (r.bands["x"] == 9.0)).to_dicts()[0]
    assert band["lo"] <= band["mean"] <= band["hi"]
    last = r.ranks.filter(r.ranks["x"] == 9.0)
    assert dict(zip(last["strategy"], last["mean_rank"]))["random"] == pytest.approx(s["random"]["mean_rank"])


def _timed_search(store, name, values, seconds, strategy, seed, resources=None, direction="maximize"):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    s = api.search(name, strategy=strategy, direction=direction, seed=seed, store=store)
    clock = t0
    for i, (v, dt) in enumerate(zip(values, seconds)):
        t = s.trial({"i": i}, ts=clock)
        if resources is not None:
            t.report(0, 0.0 if v is None else v, resource=resources[i], ts=clock)
        clock += timedelta(seconds=dt)
        if v is None:
            t.fail("boom", ts=clock)
        else:
            t.complete(v, ts=clock)
    s.finish()
    return name


def test_axes_target_reference_and_auc(tmp_path):
    _timed_search(tmp_path, "a", [0.5, 0.7, 0.9], [10, 10, 10], "random", 0, resources=[1, 1, 1])
    _timed_search(tmp_path, "b", [0.8, None, 0.85, 0.6], [1, 1, 1, 1], "tpe", 0, resources=[5, 5, 5, 5])
    r = compare(["a", "b"], by="trials", store=tmp_path, target=0.8, reference=1.0, n_boot=50)
    ps = {row["search"]: row for row in r.per_search.to_dicts()}
    assert r.horizon == 3
    assert ps["a"]["final_best"] == 0.9 and ps["b"]["final_best"] == 0.85
    assert ps["a"]["to_target"] == 3 and ps["b"]["to_target"] == 1
    assert ps["a"]["regret"] == pytest.approx(0.1)
    # regret normalised by the range from the worst value seen (0.5) to the optimum
    assert ps["b"]["normalised_regret"] == pytest.approx(0.15 / 0.5)
    # AUC over trials 1..3: a = (0, .4, .8)/3 ; b = (.6, .6, .7)/3
    assert ps["a"]["auc"] == pytest.approx(1.2 / 3)
    assert ps["b"]["auc"] == pytest.approx(1.9 / 3)
    assert ps["b"]["best_at_horizon"] == 0.85
    assert r.tests["skipped"].startswith("needs at least 2 strategies and 2 searches")

    t = compare(["a", "b"], by="time", store=tmp_path, target=0.8)
    ps = {row["search"]: row for row in t.per_search.to_dicts()}
    assert ps["a"]["to_target"] == pytest.approx(30.0) and ps["b"]["to_target"] == pytest.approx(1.0)
    assert t.horizon == pytest.approx(4.0)
    assert ps["a"]["best_at_horizon"] is None         # nothing finished within 4 s

    res = compare(["a", "b"], by="resource", store=tmp_path, target=0.85)
    ps = {row["search"]: row for row in res.per_search.to_dicts()}
    assert ps["a"]["to_target"] == 3.0 and ps["b"]["to_target"] == 15.0
    assert ps["b"]["budget"] == 20.0


def test_minimize_and_errors(tmp_path):
    _timed_search(tmp_path, "l1", [3.0, 1.0], [1, 1], "grid", 0, direction="minimize")
    _timed_search(tmp_path, "l2", [2.0, 2.5], [1, 1], "random", 0, direction="minimize")
    r = compare(["l1", "l2"], store=tmp_path, target=2.0)
    ps = {row["search"]: row for row in r.per_search.to_dicts()}
    assert ps["l1"]["final_best"] == 1.0 and ps["l2"]["to_target"] == 1 and ps["l1"]["to_target"] == 2
    assert r.summary["strategy"][0] == "grid"
    _timed_search(tmp_path, "up", [1.0], [1], "grid", 0)
    with pytest.raises(ValueError, match="direction"):
        compare(["l1", "up"], store=tmp_path)
    with pytest.raises(ValueError, match="resource"):
        compare(["l1"], by="resource", store=tmp_path)
    with pytest.raises(ValueError, match="by must be"):
        compare(["l1"], by="money", store=tmp_path)
    from hptrack.errors import SearchNotFound
    with pytest.raises(SearchNotFound):
        compare(["l1", "nope"], store=tmp_path)


def test_cli_compare(bergstra):
    import json

    from click.testing import CliRunner

    from hptrack.cli.main import cli

    store, names, _ = bergstra
    some = names["grid"][:20] + names["random"][:20]
    run = CliRunner().invoke(cli, ["--store", str(store), "compare", *some])
    assert run.exit_code == 0, run.output
    assert "random" in run.output and "Friedman over 20 paired runs" in run.output
    assert "Wilcoxon grid vs random" in run.output and "random better" in run.output
    run = CliRunner().invoke(cli, ["--store", str(store), "compare", *some, "--format", "json"])
    data = json.loads(run.output)
    assert data["summary"][0]["strategy"] == "random" and data["tests"]["n_blocks"] == 20
    run = CliRunner().invoke(cli, ["--store", str(store), "compare", *some[:2], "--show", "curves",
                                   "--format", "csv"])
    assert run.exit_code == 0 and run.output.startswith("search,strategy,seed,x,value,best")
    assert len(run.output.strip().splitlines()) == 1 + 2 * 9
    run = CliRunner().invoke(cli, ["--store", str(store), "compare", "grid-s0", "--by", "resource"])
    assert run.exit_code == 1 and "resource" in run.output


def test_three_strategies_nemenyi_and_bands(tmp_path):
    rng = np.random.default_rng(0)
    names = []
    for seed in range(12):
        for strategy, mu in (("grid", 0.0), ("random", 0.5), ("tpe", 1.0)):
            name = f"{strategy}-{seed}"
            s = api.search(name, strategy=strategy, direction="minimize", seed=seed, store=tmp_path,
                           durability="batch")
            for _ in range(5):
                with s.trial({}) as t:
                    t.complete(float(5.0 - mu + rng.normal(0, 0.1)))
            names.append(name)
    s.writer.flush()
    r = compare(names, store=tmp_path, n_boot=200)
    assert r.summary["strategy"].to_list() == ["tpe", "random", "grid"]
    assert r.tests["friedman"]["p_f"] < 1e-6
    ne = r.tests["nemenyi"]
    assert ne["cd"] == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 12)), abs=1e-3)
    pairs = {(p["a"], p["b"]): p for p in ne["pairs"]}
    assert pairs[("grid", "tpe")]["significant"] and pairs[("grid", "tpe")]["rank_diff"] == 2.0
    assert all(w["significant"] for w in r.tests["wilcoxon_holm"])
    # the winner is named: Friedman's p (Iman-Davenport, from scipy's chi-square) and Nemenyi
    # against the runner-up (tpe's rank 1 vs random's 2 > CD 0.957) both say so
    per = {row["search"]: row["best_at_horizon"] for row in r.per_search.to_dicts()}
    m = -np.array([[per[f"{st}-{seed}"] for st in ("grid", "random", "tpe")] for seed in range(12)])
    assert r.tests["friedman"]["chi2"] == pytest.approx(sps.friedmanchisquare(*m.T).statistic)
    # every seed ranks them alike: F is infinite, p the exact chance (1/3!)^(12-1)
    assert f"Friedman p = {6.0 ** -11:.3g}" in r.verdict
    assert r.best == "tpe" and "Nemenyi's critical difference 0.96" in r.verdict
    # minimising: the band is ordered in the metric's own units
    b = r.bands.drop_nulls()
    assert (b["lo"] <= b["mean"]).all() and (b["mean"] <= b["hi"]).all()
    tpe = b.filter(b["strategy"] == "tpe")["mean"].to_numpy()
    assert np.all(np.diff(tpe) <= 1e-12)  # best-so-far of a loss only goes down


def test_significant_friedman_but_no_post_hoc_separation_names_no_winner(tmp_path):
    # grid is always last, so Friedman rejects; tpe and random share one distribution
    rng = np.random.default_rng(1)
    names = []
    for seed in range(10):
        for strategy, mu in (("grid", 0.0), ("random", 1.0), ("tpe", 1.0)):
            s = api.search(f"{strategy}-{seed}", strategy=strategy, seed=seed, store=tmp_path,
                           durability="batch")
            for _ in range(3):
                with s.trial({}) as t:
                    t.complete(float(mu + rng.normal(0, 0.1)))
            names.append(f"{strategy}-{seed}")
    s.writer.flush()
    r = compare(names, store=tmp_path, n_boot=20)
    ranks = r.tests["friedman"]["mean_ranks"]
    assert r.tests["friedman"]["p_f"] < 0.05 and ranks["grid"] == 3.0
    assert abs(ranks["tpe"] - ranks["random"]) < r.tests["nemenyi"]["cd"]
    assert r.best is None and "is not significantly ahead of" in r.verdict


@pytest.fixture(scope="module")
def halving_vs_full(tmp_path_factory):
    """Grid, random and successive halving on breast_cancer, recorded live by
    hptrack.sklearn: 24 candidates each for grid and random, 27 for halving
    (rungs of 21, 63, 189 and 567 samples, so its finalist sees nearly all 569)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import GridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV, StratifiedKFold

    import hptrack.sklearn

    store = tmp_path_factory.mktemp("halving")
    X, y = load_breast_cancer(return_X_y=True)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    rf = RandomForestClassifier(n_estimators=15, random_state=0)
    grid = {"max_depth": [1, 2, 4, None], "min_samples_leaf": [1, 5, 20], "max_features": [0.2, 0.6]}
    dists = {"max_depth": [1, 2, 4, None], "min_samples_leaf": [1, 5, 10, 20, 40],
             "max_features": [0.2, 0.4, 0.6, 0.9]}
    searches = {
        "grid": GridSearchCV(rf, grid, cv=cv, scoring="f1"),
        "random": RandomizedSearchCV(rf, dists, n_iter=24, cv=cv, scoring="f1", random_state=0),
        "halving": HalvingRandomSearchCV(rf, dists, n_candidates=27, factor=3, min_resources=21, cv=cv,
                                         scoring="f1", random_state=0),
    }
    best = {}
    for name, s in searches.items():
        tracked = hptrack.sklearn.track(s, name=name, store=store, dataset="breast_cancer")
        tracked.fit(X, y)
        best[name] = tracked.best_score_
    assert list(searches["halving"].n_resources_) == [21, 63, 189, 567]
    return store, best


def test_halving_is_compared_by_compute_not_by_trials(halving_vs_full):
    store, best = halving_vs_full
    names = ["grid", "random", "halving"]
    # the old default: halving's one finalist arrives last, so its area is nil
    old = {r["search"]: r for r in compare(names, by="trials", store=store, n_boot=50).per_search.to_dicts()}
    assert old["halving"]["auc"] < 0.05 < old["grid"]["auc"]

    r = compare(names, store=store, n_boot=50)
    assert r.by == "compute" and r.unit == "full evaluations"
    assert "halving is multi-fidelity" in r.why and "fold fits x resource" in r.why
    ps = {row["search"]: row for row in r.per_search.to_dicts()}
    # every candidate of grid/random costs one full evaluation (3 folds of 569 rows)
    assert ps["grid"]["budget"] == pytest.approx(24.0) and ps["random"]["budget"] == pytest.approx(24.0)
    # halving: each of its 4 rungs fits 3 folds of (27*21 = 9*63 = 3*189 = 1*567) rows
    assert ps["halving"]["budget"] == pytest.approx(4 * 567 / 569)
    # only complete trials are results: halving's best is its finalist's score, as sklearn says
    assert ps["halving"]["final_best"] == pytest.approx(best["halving"])
    assert ps["halving"]["final_fidelity"] == pytest.approx(567 / 569) and ps["grid"]["final_fidelity"] == 1.0
    assert "low-fidelity estimate" not in r.why
    assert ps["grid"]["final_best"] == pytest.approx(best["grid"])
    assert best["halving"] > best["grid"] - 0.03                  # competitive...
    assert ps["halving"]["auc"] > 0.3                             # ...and now credited for it
    # the budget is a ceiling: halving stopped at ~4 and keeps its best up to grid's 24
    assert r.horizon == pytest.approx(24.0)
    assert ps["halving"]["best_at_horizon"] == pytest.approx(best["halving"])
    last = r.bands.filter(r.bands["x"] == r.bands["x"].max())
    assert dict(zip(last["strategy"], last["mean"]))["halving"] == pytest.approx(best["halving"])


def test_cli_compare_states_the_axis(halving_vs_full):
    from click.testing import CliRunner

    from hptrack.cli.main import cli

    store, _ = halving_vs_full
    run = CliRunner().invoke(cli, ["--store", str(store), "compare", "grid", "random", "halving"])
    assert run.exit_code == 0, run.output
    assert "by compute" in run.output and "full evaluations" in run.output
    run = CliRunner().invoke(cli, ["--store", str(store), "compare", "grid", "random"])
    assert "by trials: every search evaluates each trial at full fidelity" in run.output


def test_compute_charges_pruned_trials_and_never_counts_their_reports(tmp_path):
    # an Optuna-like search: reports by step, no resource; two trials pruned after 1 of 4 steps
    s = api.search("pruning", strategy="tpe", seed=0, store=tmp_path)
    for i, (steps, final) in enumerate([(4, 0.6), (1, None), (4, 0.7), (1, None)]):
        t = s.trial({"i": i})
        for k in range(steps):
            t.report(k, 0.99 if final is None else final)     # a pruned trial's report is not a result
        t.complete(final) if final is not None else t.prune(steps - 1)
    s.finish()
    # a budgeted loop: the resource is the cumulative epochs, 8 at full fidelity
    b = api.search("epochs", strategy="hyperband", seed=0, store=tmp_path)
    for i, (epochs, final) in enumerate([(2, None), (8, 0.65), (8, 0.8)]):
        t = b.trial({"i": i})
        t.report(0, 0.5, resource=epochs)
        t.complete(final) if final is not None else t.prune(0)
    b.finish()
    r = compare(["pruning", "epochs"], store=tmp_path, n_boot=20)
    assert r.by == "compute" and "pruning, epochs are multi-fidelity" in r.why
    assert "reports made" in r.why and "reported resource" in r.why
    c = {row["search"]: row for row in r.curves.to_dicts() if row["value"] is not None}
    ps = {row["search"]: row for row in r.per_search.to_dicts()}
    assert ps["pruning"]["budget"] == pytest.approx(1 + 0.25 + 1 + 0.25)
    assert ps["epochs"]["budget"] == pytest.approx(0.25 + 1 + 1)
    assert ps["pruning"]["final_best"] == 0.7 and ps["epochs"]["final_best"] == 0.8
    assert c["epochs"]["x"] == pytest.approx(2.25)
    # "epochs" stopped at 2.25 but keeps its 0.8 to the common budget 2.5
    assert r.horizon == pytest.approx(2.5) and ps["epochs"]["best_at_horizon"] == 0.8
    assert r.summary["strategy"][0] == "hyperband"
