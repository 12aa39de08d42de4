"""Population based training of MLPClassifiers on digits, against random search with
the same total epochs, recorded by hptrack.

    python examples/pbt_digits.py [--store DIR] [--population 8] [--rounds 15] [--ready 4]

PBT tunes learning_rate_init and alpha while training: every ``ready`` epochs
the worst members copy the weights of the best and perturb their
hyperparameters. The baseline trains ``population`` random configurations for
``rounds * ready`` epochs each, the same total number of epochs. Both score on
a validation split; the test split is scored once per winner.
"""

import argparse
import math
import random
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import hptrack
from hptrack.analysis import lineage, schedule
from hptrack.pbt import PBT, SklearnPartialFit

SPACE = {"learning_rate_init": ("log", 1e-4, 3e-1), "alpha": ("log", 1e-6, 1e-1)}


def log_uniform(rng, lo, hi):
    """A random configuration of the baseline, from the same ("log", lo, hi) ranges as PBT's."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=None, help="hptrack store (default ./.hptrack)")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--ready", type=int, default=4, help="epochs between exploit/explore")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_rest, X_te, y_rest, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    X_tr, X_va, y_tr, y_va = train_test_split(X_rest, y_rest, test_size=0.3, random_state=0,
                                              stratify=y_rest)
    adapter = SklearnPartialFit(MLPClassifier(hidden_layer_sizes=(64,)), X_tr, y_tr, X_va, y_va,
                                classes=np.unique(y))
    epochs = args.rounds * args.ready

    t0 = time.time()
    result = PBT(adapter, SPACE, name="pbt-digits", population=args.population,
                 ready=args.ready, rounds=args.rounds, quantile=0.2, workers=args.workers,
                 seed=args.seed, store=args.store, dataset="digits").run()
    pbt_s = time.time() - t0
    pbt_test = result.best_model.score(X_te, y_te)

    # random search, same total epochs: each configuration trains for the whole run
    t0 = time.time()
    rng = random.Random(args.seed)
    best = (-1.0, None, None)
    with hptrack.search("random-digits", strategy="random", space={k: list(v) for k, v in SPACE.items()},
                        seed=args.seed, store=args.store, dataset="digits") as s:
        for i in range(args.population):
            params = {k: log_uniform(rng, lo, hi) for k, (_, lo, hi) in SPACE.items()}
            with s.trial(params) as t:
                model = adapter.create(params, args.seed + i)
                for epoch in range(epochs):
                    model = adapter.train(model, params, 1)
                    if epoch % args.ready == args.ready - 1:
                        t.report(epoch, adapter.evaluate(model))
                score = adapter.evaluate(model)
                t.complete(score)
            if score > best[0]:
                best = (score, params, model)
    rs_s = time.time() - t0
    rs_test = best[2].score(X_te, y_te)

    print(f"{args.population} members x {epochs} epochs each "
          f"({args.population * epochs} epochs per method)")
    print(f"PBT           best validation {result.best_score:.4f}  test {pbt_test:.4f}  "
          f"forks {result.n_forks}  {pbt_s:.1f} s")
    print(f"random search best validation {best[0]:.4f}  test {rs_test:.4f}  {rs_s:.1f} s")
    print("\nlineage (one row per exploit/explore):")
    print(lineage("pbt-digits", store=args.store).select(
        "trial_id", "parent_trial_id", "step", "parent_score", "replaced_score").tail(8))
    print("\nhyperparameter schedule of the best member, rebuilt from events:")
    print(schedule("pbt-digits", result.best_trial_id, store=args.store))


if __name__ == "__main__":
    main()
