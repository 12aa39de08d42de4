"""hptrack.EarlyStopping: stop steps on known curves, restored state, recorded events."""

import json

import numpy as np
import optuna
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

import hptrack

X, Y = load_digits(return_X_y=True)
X = X / 16.0
XTR, YTR, XVA, YVA = X[:600], Y[:600], X[600:900], Y[600:900]
CLASSES = np.unique(Y)

# best 0.70 at step 2; 0.7005 is not better by more than min_delta=0.001
CURVE_MAX = [0.50, 0.60, 0.70, 0.7005, 0.69, 0.68, 0.99, 0.99]
CURVE_MIN = [-v for v in CURVE_MAX]


def run(curve, mode, patience=3, **kw):
    """Train a real SGDClassifier one epoch per score of ``curve``; return what happened."""
    clf = SGDClassifier(random_state=0)
    es = hptrack.EarlyStopping(patience=patience, min_delta=0.001, mode=mode, **kw)
    coefs = []
    for score in curve:
        clf.partial_fit(XTR, YTR, classes=CLASSES)
        coefs.append(clf.coef_.copy())
        if es(score, clf):
            break
    return es, clf, coefs


@pytest.mark.parametrize("mode,curve", [("max", CURVE_MAX), ("min", CURVE_MIN)])
def test_stops_at_the_expected_step_and_restores_the_best_state(mode, curve):
    es, clf, coefs = run(curve, mode)
    assert es.stopped and es.stop_step == 5 and es.best_step == 2
    assert es.best_score == curve[2]
    assert len(coefs) == 6  # epochs 0..5 ran, 6 and 7 were saved
    # the model holds the weights of epoch 2, not those of the last epoch
    np.testing.assert_array_equal(clf.coef_, coefs[2])
    assert not np.array_equal(coefs[5], coefs[2])
    assert clf.t_ == pytest.approx(3 * len(XTR) + 1)  # the optimiser state came back too
    # the kept copy is a real copy: training the restored model does not change it
    clf.partial_fit(XTR, YTR, classes=CLASSES)
    np.testing.assert_array_equal(es.best_state[1]["coef_"], coefs[2])
    assert es(0.0, clf) is True  # once stopped, it stays stopped


def test_wrong_direction_does_not_stop_early_in_the_other_mode():
    # a rising curve is an improvement every step in max mode, and never in min mode
    rising = [0.1 * i for i in range(8)]
    es_max, _, coefs = run(rising, "max")
    assert not es_max.stopped and len(coefs) == 8 and es_max.best_step == 7
    es_min, _, coefs = run(rising, "min")
    assert es_min.stop_step == 3 and es_min.best_step == 0


def test_min_delta_and_nan():
    es = hptrack.EarlyStopping(patience=2, min_delta=0.1, mode="max", restore_best=False)
    assert es(1.0) is False
    assert es(1.1) is False   # +0.1 is not more than min_delta
    assert es(float("nan")) is True
    assert (es.best_step, es.stop_step, es.best_score) == (0, 2, 1.0)
    es = hptrack.EarlyStopping(patience=1, min_delta=0.0, mode="min", restore_best=False)
    assert [es(v) for v in [3.0, 2.0, 1.0]] == [False, False, False]
    assert es(1.0) is True


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        hptrack.EarlyStopping(mode="maximize")
    with pytest.raises(ValueError, match="patience"):
        hptrack.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="restore_best=False"):
        hptrack.EarlyStopping()(0.5)


class TorchLike:
    """The state_dict protocol of torch modules, without torch."""

    def __init__(self):
        self.w = np.zeros(3)
        self.loaded = 0

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        self.w = state["w"].copy()
        self.loaded += 1


def test_state_dict_models_are_restored_through_load_state_dict():
    m = TorchLike()
    es = hptrack.EarlyStopping(patience=2, min_delta=0.0, mode="min")
    for step, loss in enumerate([1.0, 0.5, 0.7, 0.8]):
        m.w += step + 1  # in place, as an optimiser step does: the copy must be deep
        if es(loss, m):
            break
    assert es.stop_step == 3 and m.loaded == 1
    np.testing.assert_array_equal(m.w, np.full(3, 3.0))  # 1 + 2, the state after step 1


def test_stop_is_recorded_on_the_trial(tmp_path):
    store = str(tmp_path)
    with hptrack.search("es", store=store) as s, s.trial({"alpha": 1e-4}) as t:
        es = hptrack.EarlyStopping(patience=3, trial=t, max_steps=len(CURVE_MAX))
        clf = SGDClassifier(random_state=0)
        for step, score in enumerate(CURVE_MAX):
            clf.partial_fit(XTR, YTR, classes=CLASSES)
            t.report(step, score)
            if es(score, clf):
                break
        t.complete(es.best_score)
    con = hptrack.connect(store)
    (step, payload), = con.sql("SELECT step, payload FROM events WHERE type = 'annotation'").fetchall()
    info = json.loads(payload)["early_stopping"]
    assert step == 5
    assert info == {"best_step": 2, "best_score": 0.7, "stop_step": 5, "epochs_saved": 2,
                    "patience": 3, "min_delta": 0.001, "mode": "max", "restored": True}
    assert con.sql("SELECT state, value, last_step FROM trials").fetchall() == [("complete", 0.7, 5)]


def test_real_training_loop_under_optuna(tmp_path):
    """Real validation scores: the restored model scores exactly the best score seen."""
    store = str(tmp_path)
    finals = []

    @hptrack.track("es-optuna", store=store)
    def objective(trial):
        eta0 = trial.suggest_float("eta0", 0.5, 2.0)
        clf = SGDClassifier(learning_rate="constant", eta0=eta0, random_state=0)
        es = hptrack.EarlyStopping(patience=3, min_delta=0.0, trial=trial, max_steps=40)
        for epoch in range(40):
            clf.partial_fit(XTR, YTR, classes=CLASSES)
            score = clf.score(XVA, YVA)
            trial.report(score, epoch)
            if es(score, clf):
                break
        finals.append((clf.score(XVA, YVA), es.best_score, es.stopped))
        return es.best_score

    optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
                        ).optimize(objective, n_trials=3)
    assert all(final == best for final, best, _ in finals)
    n_stopped = sum(stopped for *_, stopped in finals)
    assert n_stopped >= 1, "no run stopped early: the test checks nothing"
    rows = hptrack.connect(store).sql(
        "SELECT count(*) FROM events WHERE (payload->'early_stopping') IS NOT NULL").fetchall()
    assert rows == [(n_stopped,)]
