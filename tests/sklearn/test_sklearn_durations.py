"""A scikit-learn trial lasts as long as its folds, not as long as it queued (issue 14 item 9).

Every candidate's trial used to start when sklearn dispatched the whole batch,
so run one by one the last candidate's duration_s was the time since fit()
began. Checked against cv_results_' own fit and score times."""

import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

import hptrack
import hptrack.sklearn as hs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

C = [0.01, 0.03, 0.1, 0.3]
N_SPLITS = 3


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    store = tmp_path_factory.mktemp("durations")
    X, y = load_digits(return_X_y=True)
    gs = GridSearchCV(LogisticRegression(max_iter=30), {"C": C}, cv=N_SPLITS, n_jobs=1)
    ts = hs.track(gs, name="lr-digits-timed", store=store).fit(X[:500] / 16.0, y[:500])
    rows = hptrack.connect(store).sql(
        "SELECT trial_id, started_at, finished_at, duration_s FROM trials").fetchall()
    return ts, {tid: (start, end, dur) for tid, start, end, dur in rows}


def fold_seconds(ts, r):
    """What cv_results_ says candidate r spent fitting and scoring, all folds."""
    res = ts.cv_results_
    return N_SPLITS * (res["mean_fit_time"][r] + res["mean_score_time"][r])


def test_duration_is_the_candidates_own_fit_and_score_time(timed):
    ts, trials = timed
    for r in range(len(C)):
        busy = fold_seconds(ts, r)
        _, _, dur = trials[ts.trial_id_of(r)]
        # from before its first fit to after its last score: a little more, never less
        assert busy <= dur <= 1.3 * busy + 0.3, (r, busy, dur)
    last = trials[ts.trial_id_of(len(C) - 1)][2]
    everything = sum(fold_seconds(ts, r) for r in range(len(C)))
    assert last < 0.5 * everything  # not the time since fit() began


def test_candidates_run_one_after_another(timed):
    ts, trials = timed
    spans = [trials[ts.trial_id_of(r)][:2] for r in range(len(C))]
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start  # n_jobs=1: a candidate starts once the one before it ended


@pytest.mark.slow  # starting loky workers takes seconds on a loaded machine
def test_in_parallel_a_trial_starts_at_its_first_fold_not_at_dispatch(tmp_path):
    X, y = load_digits(return_X_y=True)
    gs = GridSearchCV(LogisticRegression(max_iter=30), {"C": C}, cv=N_SPLITS, n_jobs=2)
    ts = hs.track(gs, name="lr-digits-parallel", store=tmp_path).fit(X[:500] / 16.0, y[:500])
    con = hptrack.connect(tmp_path)
    spans = []
    for r in range(len(C)):
        start, end, dur = con.sql("SELECT started_at, finished_at, duration_s FROM trials "
                                  "WHERE trial_id = ?", params=[ts.trial_id_of(r)]).fetchall()[0]
        (first, last), = con.sql("SELECT min(ts), max(ts) FROM scores WHERE trial_id = ? AND "
                                 "split = 'fold'", params=[ts.trial_id_of(r)]).fetchall()
        # it began before its first fold was scored and ended with its last (a score is
        # written just after its fold ends)
        assert start < first and end <= last
        spans.append((start, end, dur))
    # Two workers take the tasks in candidate order, so the last candidate's first fold
    # starts only once all but 2 of the tasks before it have ended: at least half their
    # work after the first candidate started (the old code started them all at dispatch).
    work = sorted(f + s for f, s in con.sql(
        "SELECT (payload->>'fit_time')::DOUBLE, (payload->>'score_time')::DOUBLE FROM scores "
        "WHERE split = 'fold' AND trial_id IN (SELECT unnest(?::VARCHAR[]))",
        params=[[ts.trial_id_of(r) for r in range(len(C) - 1)]]).fetchall())
    assert (spans[-1][0] - spans[0][0]).total_seconds() >= 0.9 * sum(work[:-2]) / 2
    # once the workers are warm (a fresh one's first recording imports and opens its log,
    # between its folds) the span is about the candidate's work: its folds overlap
    assert spans[-1][2] <= 1.3 * fold_seconds(ts, len(C) - 1) + 0.3
