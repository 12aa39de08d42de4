"""One search name is one experiment: opening a name the store holds with other
settings is refused, and a script run again says it appends (issue 14 item 10)."""

import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import hptrack
from hptrack.errors import AppendingToSearch, SearchSettingsConflict

X, Y = load_wine(return_X_y=True)
CS = [0.01, 0.1, 1.0]


def model(C=1.0):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))


@pytest.fixture(scope="module")
def wine_scores():
    """C -> (3-fold accuracy, 3-fold log loss) of a logistic regression on wine."""
    return {C: (cross_val_score(model(C), X, Y, cv=3, scoring="accuracy").mean(),
                -cross_val_score(model(C), X, Y, cv=3, scoring="neg_log_loss").mean()) for C in CS}


def record(store, name, direction, metric, values, strategy="grid"):
    with hptrack.search(name, strategy=strategy, direction=direction, metric=metric,
                        store=store) as s:
        for C, v in values.items():
            with s.trial({"C": C}) as t:
                t.complete(v)


def q(store, sql):
    return hptrack.connect(store).sql(sql).fetchall()


def test_other_direction_and_metric_is_refused_and_writes_nothing(tmp_path, wine_scores):
    store = str(tmp_path)
    record(store, "wine-lr", "maximize", "accuracy", {C: a for C, (a, _) in wine_scores.items()})
    before = q(store, "SELECT count(*) FROM events")
    with pytest.raises(SearchSettingsConflict) as e:
        record(store, "wine-lr", "minimize", "log_loss", {C: ll for C, (_, ll) in wine_scores.items()})
    msg = str(e.value)
    assert "direction='maximize'" in msg and "direction='minimize'" in msg
    assert "metric='accuracy'" in msg and "metric='log_loss'" in msg and "new name" in msg
    assert isinstance(e.value, ValueError)
    assert q(store, "SELECT count(*) FROM events") == before
    # the search still ranks accuracies only: its best is the best accuracy computed here
    (best,), = q(store, "SELECT max(value) FROM trials")
    assert best == max(a for a, _ in wine_scores.values())
    # a new name holds the log losses
    record(store, "wine-lr-log_loss", "minimize", "log_loss", {C: ll for C, (_, ll) in wine_scores.items()})
    assert q(store, "SELECT name, n_trials FROM searches ORDER BY name") == [
        ("wine-lr", 3), ("wine-lr-log_loss", 3)]


SCRIPT = textwrap.dedent("""
    import sys, hptrack
    store, name, strategy, value = sys.argv[1:5]
    with hptrack.search(name, strategy=strategy, direction="maximize", metric="accuracy",
                        store=store) as s:
        with s.trial({"C": 10.0}) as t:
            t.complete(float(value))
""")


def run_script(store, name, strategy, value):
    return subprocess.run([sys.executable, "-c", SCRIPT, store, name, strategy, str(value)],
                          capture_output=True, text=True, timeout=120)


def test_script_run_again_appends_and_says_so_once_other_strategy_is_refused(tmp_path, wine_scores):
    """The check reads the store (another process wrote the search), not this process's memory."""
    store = str(tmp_path)
    record(store, "wine-lr", "maximize", "accuracy", {C: a for C, (a, _) in wine_scores.items()})
    acc10 = cross_val_score(model(10.0), X, Y, cv=3).mean()
    again = run_script(store, "wine-lr", "grid", acc10)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("appending to 'wine-lr', 3 trial(s) already") == 1, again.stderr
    other = run_script(store, "wine-lr", "random", acc10)
    assert other.returncode != 0
    assert "SearchSettingsConflict" in other.stderr and "strategy='grid'" in other.stderr, other.stderr
    assert "strategy='random'" in other.stderr
    assert q(store, "SELECT n_trials, strategy FROM searches") == [(4, "grid")]


def test_a_search_open_elsewhere_is_joined_silently(tmp_path):
    """Workers of one distributed search open it at once: none of them warns."""
    store = str(tmp_path)
    s = hptrack.search("shared", strategy="random", direction="maximize", metric="accuracy",
                       store=store)
    with s.trial({"C": 1.0}) as t:
        t.complete(0.9)
    worker = run_script(store, "shared", "random", 0.8)
    assert worker.returncode == 0 and "appending" not in worker.stderr, worker.stderr
    s.finish()
    assert q(store, "SELECT n_trials FROM searches") == [(2,)]


def test_refit_of_a_tracked_search_appends_a_grid_search_of_another_kind_is_refused(tmp_path):
    from sklearn.model_selection import RandomizedSearchCV

    from hptrack.sklearn import track

    store = str(tmp_path)
    grid = track(GridSearchCV(model(), {"logisticregression__C": CS}, cv=3), name="wine", store=store)
    grid.fit(X, Y)
    with pytest.warns(AppendingToSearch, match="appending to 'wine', 3 trial"):
        grid.fit(X, Y)
    assert q(store, "SELECT n_trials FROM searches") == [(6,)]
    rand = track(RandomizedSearchCV(model(), {"logisticregression__C": CS}, n_iter=2, cv=3,
                                    random_state=0), name="wine", store=store)
    with pytest.raises(SearchSettingsConflict, match="strategy='grid'"):
        rand.fit(X, Y)
    assert q(store, "SELECT n_trials FROM searches") == [(6,)]


def test_opening_an_open_search_again_in_one_process_is_silent(tmp_path):
    store = str(tmp_path)
    a = hptrack.search("twice", direction="minimize", store=store, durability="batch")
    with a.trial({"x": 1}) as t:
        t.complete(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = hptrack.search("twice", direction="minimize", store=store)
    # not flushed yet (batch), and still refused: this process knows what it opened
    with pytest.raises(SearchSettingsConflict, match="direction='minimize'"):
        hptrack.search("twice", direction="maximize", store=store)
    b.finish()
    a.finish()


@pytest.mark.parametrize("n", [40, pytest.param(200, marks=pytest.mark.slow)])
def test_the_check_reads_one_partition_and_agrees_with_the_searches_view(tmp_path, n):
    """Opening a search in a store of n searches reads that search's partition and
    the logs; what it finds is what the searches view says (before and after compact)."""
    from hptrack._files.store import Store
    from hptrack._reopening import recorded
    from hptrack.api import search_id_for

    store = str(tmp_path)
    for i in range(n):
        s = hptrack.search(f"s{i}", strategy=("grid", "random")[i % 2], metric=f"m{i % 3}",
                           direction=("maximize", "minimize")[i % 2], store=store, durability="batch")
        for j in range(i % 4):
            with s.trial({"x": j}) as t:
                t.complete(float(j))
        if i % 5:
            s.finish()  # every fifth is left open
    st = Store(store)
    for step in ("logs and segments", "compacted"):
        hptrack.Writer.for_store(store).flush()
        view = {name: (direction, metric, strategy, n, finished is None) for name, direction, metric,
                strategy, n, finished in q(store, "SELECT name, direction, metric, strategy, n_trials, "
                                                  "finished_at FROM searches")}
        times = []
        for i in range(0, n, n // 20):
            t0 = time.perf_counter()
            rec = recorded(st, search_id_for(f"s{i}"))
            times.append(time.perf_counter() - t0)
            got = (rec.settings["directions"][0], rec.settings["metric"], rec.settings["strategy"],
                   rec.n_trials, rec.open)
            assert got == view[f"s{i}"], (step, i)
        t0 = time.perf_counter()
        q(store, "SELECT n_trials FROM searches WHERE name = 's7'")
        full = time.perf_counter() - t0
        print(f"{n} searches, {step}: check median {sorted(times)[10] * 1000:.1f} ms, "
              f"searches view {full * 1000:.0f} ms")
        assert sorted(times)[10] < full
        hptrack.compact(store)


def test_an_explicit_task_is_part_of_the_experiment(tmp_path):
    """task= names what the values are about: another task under one name is refused;
    a search recorded without one takes one (nothing to disagree with)."""
    root = tmp_path / "store"
    with hptrack.search("lr", store=root, task="wine") as s:
        s.trial({"C": 1.0}).complete(0.9)
    with pytest.raises(SearchSettingsConflict, match=r"task='wine'.*task='iris'"):
        hptrack.search("lr", store=root, task="iris")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AppendingToSearch)
        hptrack.search("lr", store=root, task="wine").finish()
        hptrack.search("untasked", store=root).finish()
        hptrack.search("untasked", store=root, task="wine").finish()


def test_settings_not_given_are_the_recorded_ones(tmp_path):
    """hptrack.search(name) on an existing search appends to it as recorded; on a new
    name it opens one with the defaults."""
    root = tmp_path / "store"
    with hptrack.search("ll", store=root, direction="minimize", metric="log_loss", strategy="random") as s:
        s.trial({"C": 1.0}).complete(0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AppendingToSearch)
        again = hptrack.search("ll", store=root)
    assert (again.strategy, again.direction, again.metric) == ("random", "minimize", "log_loss")
    again.trial({"C": 2.0}).complete(0.2)
    again.finish()
    fresh = hptrack.search("new", store=root)
    assert (fresh.strategy, fresh.direction, fresh.metric) == ("custom", "maximize", "value")
    fresh.finish()
    con = hptrack.connect(root)
    assert con.sql("SELECT direction, metric, strategy, n_trials FROM searches WHERE name = 'll'").fetchall() \
        == [("minimize", "log_loss", "random", 2)]
