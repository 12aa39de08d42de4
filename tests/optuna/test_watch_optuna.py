"""What `hptrack watch` reads of a live Optuna study: the budget a Callback records
(``n_trials=``), its pruned trials with their step, and no budget when none was recorded."""

import optuna

import hptrack
from hptrack.analysis import progress
from hptrack.optuna import Callback

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial):
    x = trial.suggest_float("x", -3, 3)
    for step in range(3):
        trial.report(x * x + step, step)
        if trial.number % 4 == 3 and step == 1:
            raise optuna.TrialPruned()
    return x * x


def test_a_callbacks_n_trials_is_the_budget(tmp_path):
    study = optuna.create_study(study_name="quad", direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with Callback(store=tmp_path, n_trials=12) as cb:
        study.optimize(objective, n_trials=8, callbacks=[cb])
        (s,) = progress(store=tmp_path).searches
        assert s.open and (s.budget.total, s.budget.unit, s.budget.done) == (12, "trials", 8)
        assert s.budget.source == "n_trials=12 recorded when the search started"
        assert s.counts == {"complete": 6, "running": 0, "pruned": 2, "failed": 0}
        assert [(t.number, t.last_step) for t in s.pruned] == [(3, 1), (7, 1)]
        best = min((t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"),
                   key=lambda t: t.value)
        assert (s.best.number, s.best.value, s.best.params) == (best.number, best.value, best.params)
    assert not progress(store=tmp_path).searches[0].open

    study2 = optuna.create_study(study_name="quad2", direction="minimize")
    study2.optimize(objective, n_trials=2, callbacks=[Callback(store=tmp_path)])
    (s,) = progress("quad2", tmp_path).searches
    assert s.budget is None and s.budget_note == "no budget recorded"
    assert hptrack.verify(tmp_path).ok
