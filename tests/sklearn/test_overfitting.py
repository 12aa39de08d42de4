"""hptrack.analysis.diagnose on synthetic searches written through the real API."""

import numpy as np
import pytest

from hptrack import api
from hptrack.analysis.overfitting import diagnose
from hptrack.analysis.stats import expected_max_normal


def write_search(store, name, true_means, sigma, folds=5, seed=0, direction="maximize",
                 test_for_best=None):
    """One trial per configuration, each with ``folds`` noisy fold scores; the
    trial's value is the mean of its folds, as scikit-learn reports it."""
    rng = np.random.default_rng(seed)
    fold_effect = rng.normal(0, sigma, folds)  # some folds are easier for everyone
    with api.search(name, strategy="grid", direction=direction, metric="acc", store=store,
                    durability="batch", space={"c": list(range(len(true_means)))}) as s:
        for c, mu in enumerate(true_means):
            with s.trial({"c": c}) as t:
                fs = mu + fold_effect + rng.normal(0, sigma, folds)
                for k, v in enumerate(fs):
                    t.score(float(v), split="fold", fold=k, metric="acc")
                t.complete(float(fs.mean()))
    return name


def test_all_tied_search(tmp_path):
    k, sigma = 30, 0.02
    write_search(tmp_path, "tied", [0.8] * k, sigma, seed=1)
    d = diagnose("tied", store=tmp_path, n_boot=500)
    assert d.n_configs == k and d.n_folds == 5 and d.n_trials == k
    assert d.n_tied >= 0.7 * (k - 1)  # most configurations tied with the best
    # winner's curse: the best of 30 tied means overshoots by ~ s * E[max of 30]
    s = sigma / np.sqrt(5)
    assert d.optimistic_bias > 0.4 * s * expected_max_normal(k)
    assert d.corrected_best == pytest.approx(d.best_cv - d.optimistic_bias)
    assert abs(d.corrected_best - 0.8) < abs(d.best_cv - 0.8)
    assert d.tibshirani_bias > 0
    assert d.p_best_stays_best < 0.7
    text = " ".join(d.warnings)
    assert f"tied with {d.n_tied} of the other {k - 1}" in text
    assert "optimistic by about" in text and "stays best in only" in text
    assert d.to_dict()["n_tied"] == d.n_tied and d.not_computed.get("n_tied") is None


def test_one_clear_winner(tmp_path):
    means = [0.8] * 30
    means[7] = 0.95
    write_search(tmp_path, "clear", means, 0.01, seed=2)
    d = diagnose("clear", store=tmp_path, n_boot=500)
    assert d.best_params == {"c": 7} and d.best_trial_number == 7
    assert d.n_tied == 0 and d.tied_trial_ids == []
    assert abs(d.optimistic_bias) < 0.005
    assert d.p_best_stays_best > 0.99 and d.top_k_kendall_tau is not None
    assert not any("tied" in w or "optimistic" in w for w in d.warnings)


def test_minimize_direction(tmp_path):
    write_search(tmp_path, "loss", [0.3] * 20, 0.02, seed=3, direction="minimize")
    d = diagnose("loss", store=tmp_path, n_boot=300)
    assert d.optimistic_bias > 0                  # the lowest loss looks too low
    assert d.corrected_best > d.best_cv           # corrected upwards
    assert d.best_value == pytest.approx(d.best_cv)
    assert d.n_tied >= 10


def test_without_fold_scores_says_what_and_why(tmp_path):
    with api.search("plain", store=tmp_path, durability="batch") as s:
        for i in range(5):
            with s.trial({"x": i}) as t:
                t.complete(float(i))
    d = diagnose("plain", store=tmp_path)
    assert d.best_value == 4.0 and d.best_params == {"x": 4}
    assert d.n_tied is None and d.optimistic_bias is None and d.p_best_stays_best is None
    assert "no fold scores" in d.not_computed["n_tied"]
    assert "split='fold'" in d.not_computed["optimistic_bias"]
    assert "test score" in d.not_computed["val_test_gap"]


def test_validation_test_gap(tmp_path):
    write_search(tmp_path, "gap", [0.8] * 10, 0.02, seed=4)
    d0 = diagnose("gap", store=tmp_path, n_boot=100)
    # record a test score on the best trial, 0.1 lower than its CV score
    with api.search("gap", direction="maximize", metric="acc", store=tmp_path) as s:
        pass
    from hptrack._write.writer import Writer

    w = Writer.for_store(tmp_path)
    w.flush(upto=w.write({"type": "trial_scored", "search_id": s.search_id,
                          "trial_id": d0.best_trial_id, "split": "test", "metric": "acc",
                          "value": d0.best_cv - 0.1}))
    d = diagnose("gap", store=tmp_path, n_boot=100)
    assert d.test_score == pytest.approx(d0.best_cv - 0.1)
    assert d.val_test_gap == pytest.approx(0.1)
    assert any("test score" in w and "worse than the CV score by 0.1" in w for w in d.warnings)


def test_missing_folds_are_left_out(tmp_path):
    rng = np.random.default_rng(0)
    with api.search("ragged", store=tmp_path, durability="batch") as s:
        for c in range(6):
            with s.trial({"c": c}) as t:
                n = 3 if c == 5 else 5
                for k in range(n):
                    t.score(float(rng.normal()), split="fold", fold=k)
                t.complete(0.0)
    d = diagnose("ragged", store=tmp_path, n_boot=100)
    assert d.n_configs == 5 and d.n_folds == 5
    assert any("1 of 6 completed trials lack some" in w for w in d.warnings)


def test_nested_cv_run(tmp_path):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    import hptrack.sklearn as hs

    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    gs = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.01, 0.1, 1.0]}, cv=3)
    res = hs.nested_cv(gs, X, y, outer_cv=3, name="nest", store=tmp_path)
    outer = diagnose("nest", store=tmp_path)
    assert outer.nested["n_outer_folds"] == 3
    assert outer.nested["nested_estimate"] == pytest.approx(res.mean)
    assert outer.nested["plain_best_cv"] is not None
    assert "nested-CV run" in outer.not_computed["n_tied"]
    inner = diagnose("nest/outer-0", store=tmp_path, n_boot=100)
    assert inner.n_folds == 3 and inner.n_configs == 3
    assert inner.test_score == pytest.approx(res.outer_scores[0])
    assert inner.nested["nested_estimate"] == pytest.approx(res.mean)
    assert inner.val_test_gap == pytest.approx(inner.best_cv - res.outer_scores[0])


def test_cli_diagnose(tmp_path):
    import json

    from click.testing import CliRunner

    from hptrack.cli.main import cli

    write_search(tmp_path, "tied", [0.8] * 20, 0.02, seed=1)
    with api.search("plain", store=tmp_path) as s, s.trial({"x": 1}) as t:
        t.complete(1.0)
    run = CliRunner().invoke(cli, ["--store", str(tmp_path), "diagnose", "tied"])
    assert run.exit_code == 0, run.output
    assert "n_tied:" in run.output and "Warnings:" in run.output
    assert "statistically tied with" in run.output and "optimistic by about" in run.output
    run = CliRunner().invoke(cli, ["--store", str(tmp_path), "diagnose", "tied", "--format", "json"])
    data = json.loads(run.output)
    assert data["n_tied"] == diagnose("tied", store=tmp_path).n_tied and data["warnings"]
    run = CliRunner().invoke(cli, ["--store", str(tmp_path), "diagnose", "plain"])
    assert run.exit_code == 0 and "Not computed:" in run.output and "no fold scores" in run.output
    run = CliRunner().invoke(cli, ["--store", str(tmp_path), "diagnose", "tied", "--format", "csv"])
    assert run.output.startswith("field,value") and "n_tied," in run.output
    run = CliRunner().invoke(cli, ["--store", str(tmp_path), "diagnose", "nope"])
    assert run.exit_code == 1
