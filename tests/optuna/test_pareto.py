"""Multi-objective searches analysed as such (issue 14 item 8), on real Optuna studies:
every objective exposed, the Pareto front checked against ``study.best_trials``, the
hypervolume history against a brute-force 2-D union and Optuna's own hypervolume
(``optuna._hypervolume.compute_hypervolume``: private, but it is what
``plot_hypervolume_history`` draws; plotly and matplotlib are not installed here)."""

import itertools
import json

import numpy as np
import optuna
import polars as pl
import pytest
from click.testing import CliRunner
from optuna._hypervolume import compute_hypervolume
from optuna.distributions import distribution_to_json
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import hptrack
from hptrack.analysis import analyse, importance
from hptrack.cli.main import cli
from hptrack.optuna import Callback

optuna.logging.set_verbosity(optuna.logging.WARNING)
# the SGD objective stops at max_iter on purpose (a cheap model is one of the trade-offs)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X_BC, Y_BC = load_breast_cancer(return_X_y=True)


def sgd_cost_accuracy(trial):
    """Optuna's multi-objective example pattern: a model's cost (non-zero coefficients
    of an elastic-net SGD) against its 3-fold CV accuracy on breast_cancer."""
    alpha = trial.suggest_float("alpha", 1e-4, 1.0, log=True)
    l1_ratio = trial.suggest_float("l1_ratio", 0.0, 1.0)
    clf = make_pipeline(StandardScaler(), SGDClassifier(
        penalty="elasticnet", alpha=alpha, l1_ratio=l1_ratio, max_iter=50, tol=1e-3, random_state=0))
    acc = cross_val_score(clf, X_BC, Y_BC, cv=3).mean()
    clf.fit(X_BC, Y_BC)
    return int(np.count_nonzero(clf[-1].coef_)), float(acc)


def binh_korn(trial):
    x = trial.suggest_float("x", 0, 5)
    y = trial.suggest_float("y", 0, 3)
    return 4 * x * x + 4 * y * y, (x - 5) ** 2 + (y - 5) ** 2


def three_mixed(trial):
    """Three objectives, the middle one maximised."""
    x = trial.suggest_float("x", 0, 1)
    y = trial.suggest_float("y", 0, 1)
    return x * x + y * y, -((x - 1) ** 2 + y * y), x * x + (y - 1) ** 2


STUDIES = {
    "sgd-bc": (sgd_cost_accuracy, ["minimize", "maximize"], optuna.samplers.TPESampler(seed=0), 30),
    "binh-korn": (binh_korn, ["minimize", "minimize"], optuna.samplers.NSGAIISampler(population_size=10, seed=1), 40),
    "three": (three_mixed, ["minimize", "maximize", "minimize"], optuna.samplers.TPESampler(seed=2), 30),
}


@pytest.fixture(scope="module")
def mo(tmp_path_factory):
    """(store, {name: study}): the SGD study recorded by the decorator, the others by the callback."""
    store = str(tmp_path_factory.mktemp("mo"))
    studies = {}
    for name, (fn, directions, sampler, n) in STUDIES.items():
        study = optuna.create_study(directions=directions, sampler=sampler)
        if name == "sgd-bc":
            study.optimize(hptrack.track(name, store=store)(fn), n_trials=n)
        else:
            study.optimize(fn, n_trials=n, callbacks=[Callback(name, store=store)])
        studies[name] = study
    single = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    single.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=12,
                    callbacks=[Callback("single", store=store)])
    studies["single"] = single
    return store, studies


def _losses(values, directions):
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, float) * sign, sign


# --- reproduce: objective 0 only ----------------------------------------------------
def test_trials_expose_every_objective(mo):
    store, studies = mo
    for name in ("sgd-bc", "binh-korn", "three"):
        study = studies[name]
        df = hptrack.trials(name, store=store)
        k = len(study.directions)
        got = df.select([f"value_{j}" for j in range(k)]).rows()
        assert [list(r) for r in got] == [t.values for t in study.trials]
        assert df["value"].to_list() == [t.values[0] for t in study.trials]
        # objective columns are not params
        assert set(df.columns) - {"trial_number", "trial_id", "state", "value", "started_at",
                                  "finished_at", "duration_s", "last_step", "error"} \
            == {f"value_{j}" for j in range(k)} | set(study.trials[0].params)
        assert hptrack.trials(name, store=store, objective=k - 1)["value"].to_list() \
            == [t.values[k - 1] for t in study.trials]
    con = hptrack.connect(store)
    rows = dict(con.sql("SELECT name, directions FROM searches").fetchall())
    assert rows["three"] == ["minimize", "maximize", "minimize"]
    assert rows["single"] is None
    values = con.sql("SELECT t.recorded_number, t.values FROM trials t JOIN searches s USING (search_id) "
                     "WHERE s.name = 'three' ORDER BY 1").fetchall()
    assert [v for _, v in values] == [t.values for t in studies["three"].trials]
    assert con.sql("SELECT count(*) FROM trials t JOIN searches s USING (search_id) "
                   "WHERE s.name = 'single' AND t.values IS NOT NULL").fetchall()[0][0] == 0
    # a single-objective search has no objective columns, and objective=0 is itself
    single = hptrack.trials("single", store=store)
    assert not [c for c in single.columns if c.startswith("value_")]
    assert hptrack.trials("single", store=store, objective=0).equals(single)


def test_a_param_named_like_an_objective_column_stays_a_param(tmp_path):
    from hptrack.analysis.source import design

    with hptrack.search("clash", direction="minimize", store=str(tmp_path)) as s:
        for i in range(6):
            s.trial({"value_0": float(i), "x": i % 3}).complete(float(i * i))
    df = hptrack.trials("clash", store=str(tmp_path))
    assert df["param:value_0"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert design(df).names == ["param:value_0", "x"]


def test_importance_names_the_objectives_instead_of_using_objective_0(mo):
    store, studies = mo
    with pytest.raises(ValueError, match=r"2 objectives.*0: minimize.*1: maximize.*objective="):
        importance("sgd-bc", store=store)
    # objective=1 is the accuracy: the same numbers as a table built from Optuna's own trials
    study = studies["sgd-bc"]
    table = pl.DataFrame({"alpha": [t.params["alpha"] for t in study.trials],
                          "l1_ratio": [t.params["l1_ratio"] for t in study.trials],
                          "value": [t.values[1] for t in study.trials]})
    kw = {"n_trees": 60, "n_members": 2, "seed": 0}
    got = importance("sgd-bc", store=store, objective=1, **kw)
    # the table with the study's own distributions as its space (what the store recorded)
    space = {k: json.loads(distribution_to_json(d)) for k, d in study.trials[0].distributions.items()}
    want = analyse(table, space=space, **kw).importance
    assert got.equals(want)
    cost = importance("sgd-bc", store=store, objective=0, **kw)
    assert cost["importance"].to_list() != got["importance"].to_list()
    with pytest.raises(ValueError, match=r"objective=2.*0 or 1"):
        importance("sgd-bc", store=store, objective=2)
    with pytest.raises(ValueError, match=r"one objective"):
        importance("single", store=store, objective=1)


def test_compare_takes_an_objective(mo):
    store, studies = mo
    from hptrack.analysis.comparison import compare

    with pytest.raises(ValueError, match=r"objectives.*objective="):
        compare(["binh-korn"], store=store)
    r = compare(["binh-korn"], store=store, objective=1, n_boot=50)
    best = min(t.values[1] for t in studies["binh-korn"].trials)
    assert r.direction == "minimize"
    assert r.per_search["final_best"][0] == best
    r = compare(["three"], store=store, objective=1, n_boot=50)
    assert r.direction == "maximize"
    assert r.per_search["final_best"][0] == max(t.values[1] for t in studies["three"].trials)


# --- the Pareto front and its hypervolume -------------------------------------------
def pareto(*a, **kw):
    from hptrack.analysis import pareto as p  # imported here: the tests above ran before it existed

    return p(*a, **kw)


@pytest.mark.parametrize("name", ["sgd-bc", "binh-korn", "three"])
def test_front_is_optunas_best_trials(mo, name):
    store, studies = mo
    study = studies[name]
    p = pareto(name, store=store)
    want = sorted(t.number for t in study.best_trials)
    assert sorted(p.front["trial_number"].to_list()) == want
    assert p.count == len(want)
    assert p.directions == [d.name.lower() for d in study.directions]
    by_number = {t.number: t for t in study.trials}
    for row in p.front.iter_rows(named=True):
        t = by_number[row["trial_number"]]
        assert [row[f"value_{j}"] for j in range(len(p.directions))] == t.values
        assert {k: row[k] for k in t.params} == t.params


def _brute_force_area(points, ref):
    """Exact area of the union of the boxes [p, ref] (minimisation), cell by cell over the
    grid the points' coordinates cut: a cell is covered when some point is below its corner."""
    xs = sorted({p[0] for p in points} | {ref[0]})
    ys = sorted({p[1] for p in points} | {ref[1]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:]), zip(ys, ys[1:])):
        if any(p[0] <= x0 and p[1] <= y0 for p in points):
            area += (x1 - x0) * (y1 - y0)
    return area


@pytest.mark.parametrize("name", ["sgd-bc", "binh-korn", "three"])
def test_hypervolume_history_matches_optuna_and_brute_force(mo, name):
    store, studies = mo
    study = studies[name]
    p = pareto(name, store=store)
    directions = [d.name.lower() for d in study.directions]
    losses, sign = _losses([t.values for t in study.trials], directions)
    ref = np.asarray(p.reference_point, float) * sign
    # the documented default: the worst value per objective, 10% of its range further
    worst, best = losses.max(axis=0), losses.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    assert ref == pytest.approx(worst + 0.1 * span)
    got = dict(p.hypervolume.select("trial_number", "hypervolume").iter_rows())
    assert list(got) == [t.number for t in study.trials]
    for i, t in enumerate(study.trials):
        seen = losses[: i + 1]
        want = compute_hypervolume(seen, ref)
        assert got[t.number] == pytest.approx(want, rel=1e-9), t.number
        if len(directions) == 2:
            assert got[t.number] == pytest.approx(_brute_force_area(seen.tolist(), ref.tolist()), rel=1e-9)
    assert np.all(np.diff(list(got.values())) >= -1e-12)  # never decreases


def test_user_reference_point_and_points_outside_it(mo):
    store, studies = mo
    study = studies["binh-korn"]
    ref = [60.0, 30.0]
    p = pareto("binh-korn", store=store, reference_point=ref)
    losses = np.array([t.values for t in study.trials])
    inside = losses[np.all(losses < ref, axis=1)]
    final = p.hypervolume["hypervolume"][-1]
    assert final == pytest.approx(compute_hypervolume(inside, np.array(ref)) if len(inside) else 0.0)
    assert p.reference_point == ref
    with pytest.raises(ValueError, match=r"reference_point has 3 values.*2 objectives"):
        pareto("binh-korn", store=store, reference_point=[1, 2, 3])


def test_pareto_of_a_single_objective_search_is_its_best_trials(mo):
    store, studies = mo
    p = pareto("single", store=store)
    assert p.front["trial_number"].to_list() == [studies["single"].best_trial.number]
    assert p.directions == ["minimize"]


# --- shown ---------------------------------------------------------------------------
def test_show_prints_objectives_and_front(mo):
    store, studies = mo
    out = CliRunner().invoke(cli, ["--store", store, "show", "binh-korn"])
    assert out.exit_code == 0, out.output
    want = sorted(t.number for t in studies["binh-korn"].best_trials)
    assert "objectives: 0 minimize, 1 minimize" in out.output
    shown = ", ".join(f"#{n}" for n in want[:20]) + (f" and {len(want) - 20} more" if len(want) > 20 else "")
    assert f"Pareto front: {len(want)} trials ({shown}) of 40 complete" in out.output
    assert "best:" not in out.output  # objective 0's best is no "best" of a multi-objective search
    js = CliRunner().invoke(cli, ["--store", store, "show", "binh-korn", "--format", "json"])
    assert json.loads(js.output)["trials"][0]["value_1"] is not None


def test_cli_pareto_mirrors_the_library(mo):
    store, studies = mo
    want = sorted(t.number for t in studies["three"].best_trials)
    r = CliRunner().invoke(cli, ["--store", store, "pareto", "three", "--format", "json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert sorted(m["trial_number"] for m in got["front"]) == want and got["count"] == len(want)
    r = CliRunner().invoke(cli, ["--store", store, "pareto", "binh-korn", "--show", "hypervolume",
                                 "--reference-point", "60,30", "--format", "csv"])
    assert r.exit_code == 0, r.output
    final = float(r.output.strip().splitlines()[-1].split(",")[1])
    assert final == pytest.approx(pareto("binh-korn", store=store, reference_point=[60, 30]).final_hypervolume)
    r = CliRunner().invoke(cli, ["--store", store, "pareto", "binh-korn", "--reference-point", "1,x"])
    assert r.exit_code == 2 and "one number per objective" in r.output
    r = CliRunner().invoke(cli, ["--store", store, "pareto", "binh-korn"])
    assert r.exit_code == 0 and "of 40 complete trials on the Pareto front" in r.output


def test_cli_objective_flags(mo):
    store, _ = mo
    r = CliRunner().invoke(cli, ["--store", store, "importance", "sgd-bc", "--format", "csv"])
    assert r.exit_code != 0 and "--objective" in r.output
    r = CliRunner().invoke(cli, ["--store", store, "importance", "sgd-bc", "--objective", "1",
                                 "--method", "impurity", "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith("param,") and "l1_ratio" in r.output
    r = CliRunner().invoke(cli, ["--store", store, "compare", "binh-korn", "--objective", "0"])
    assert r.exit_code == 0, r.output


def test_report_shows_front_and_hypervolume(mo, tmp_path):
    store, studies = mo
    from hptrack.analysis.report import build
    from hptrack.analysis.report.html import write

    rep = build(["binh-korn", "single"], store)
    sr = {s.name: s for s in rep.searches}
    want = sorted(t.number for t in studies["binh-korn"].best_trials)
    assert sorted(sr["binh-korn"].pareto.front["trial_number"].to_list()) == want
    assert sr["single"].pareto is None
    # no single importance that silently means objective 0: one per objective instead
    # (test_report_has_an_importance_per_objective)
    assert sr["binh-korn"].importance is None and "per objective" in sr["binh-korn"].importance_note
    assert sr["binh-korn"].params == ["x", "y"]
    html = tmp_path / "r.html"
    write(rep, str(html))
    text = html.read_text()
    assert "data-plot='Pareto front'" in text and "data-plot='hypervolume'" in text
    assert f"Pareto front: <b>{len(want)}</b> of 40 complete" in text
    from io import StringIO

    from rich.console import Console

    from hptrack.analysis.report.terminal import render_terminal

    buf = StringIO()
    render_terminal(rep, Console(file=buf, width=120))
    assert f"Pareto front: {len(want)} of" in buf.getvalue()


def _on_log_axes(study):
    """The study with each log-scale float param re-expressed as its log10 on a linear
    axis: Optuna's fANOVA evaluator measures variance over the raw scale, hptrack's (as
    Optuna samples) over the log scale; on these axes both ask the same question."""
    def axis(d):
        if isinstance(d, optuna.distributions.FloatDistribution) and d.log:
            return optuna.distributions.FloatDistribution(np.log10(d.low), np.log10(d.high))
        return d

    def value(d, v):
        return float(np.log10(v)) if isinstance(d, optuna.distributions.FloatDistribution) and d.log else v

    out = optuna.create_study(directions=study.directions)
    out.add_trials([optuna.trial.create_trial(
        params={n: value(t.distributions[n], v) for n, v in t.params.items()},
        distributions={n: axis(d) for n, d in t.distributions.items()}, values=t.values)
        for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    return out


def test_report_has_an_importance_per_objective(mo):
    """Issue 17 item 5: a multi-objective search's report ranks the params of each
    objective. Each is the library's importance of that objective (the same fit), and
    close to Optuna's own fANOVA evaluator with ``target=values[k]`` (on log axes where
    the space is log, see _on_log_axes): on Binh-Korn x
    drives the first objective (analytic share 0.89 under a uniform design) more than the
    second (0.60); on the real SGD study, cost and accuracy rank the params on their own."""
    store, studies = mo
    from hptrack.analysis.report import build

    rep = build(["binh-korn", "sgd-bc", "three"], store, cache=False)
    sr = {s.name: s for s in rep.searches}
    for name in ("binh-korn", "sgd-bc", "three"):
        study = studies[name]
        per = sr[name].per_objective
        assert [p.objective for p in per] == list(range(len(study.directions)))
        assert [p.direction for p in per] == [d.name.lower() for d in study.directions]
        for p in per:
            want = importance(name, store=store, objective=p.objective, seed=0)
            assert p.importance.select("param", "importance").rows() == want.select("param", "importance").rows()
            assert p.stability
            theirs = optuna.importance.get_param_importances(
                _on_log_axes(study), evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=lambda t, k=p.objective: t.values[k])
            ours = dict(p.importance.select("param", "share").rows())
            assert max(abs(ours[q] - theirs[q]) for q in theirs) < 0.1, (name, p.objective, ours, theirs)
            assert p.importance["param"][0] == next(iter(theirs)), (name, p.objective, ours, theirs)
    bk = {p.objective: dict(p.importance.select("param", "share").rows()) for p in sr["binh-korn"].per_objective}
    assert bk[0]["x"] > bk[1]["x"] > 0.5
    from io import StringIO

    from rich.console import Console

    from hptrack.analysis.report.html import render
    from hptrack.analysis.report.terminal import render_terminal

    buf = StringIO()
    render_terminal(rep, Console(file=buf, width=120))
    text = buf.getvalue()
    assert "importance, objective 0 (minimize)" in text and "importance, objective 1 (maximize)" in text
    html = render(rep)
    assert "data-plot='importance objective 0'" in html and "data-plot='importance objective 2'" in html
