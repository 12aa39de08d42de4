"""SIGTERM ends a run promptly whatever the main thread is doing (issue 13, item 11).

Before, the handler raised SystemExit at whatever bytecode it landed on: inside
a scikit-learn fit numpy turned it into a ValueError, sklearn recorded a failed
fit and the search ran on. Now hptrack's own thread, woken by the signal's
wake-up byte, fails the running trials ("terminated by SIGTERM"), seals, and
exits with 143. A child running real fits (GridSearchCV through hptrack.sklearn,
and a plain loop of numpy-heavy fits) is sent SIGTERM at random moments.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import helpers_proc as hp
import pytest

import hptrack
from hptrack._files.store import Store
from hptrack._maintain.verification import verify

SEED = int(os.environ.get("HPTRACK_SIGTERM_SEED", random.randrange(2**32)))

CHILD = r"""
import sys, time
import numpy as np
import hptrack
mode, root = sys.argv[1], sys.argv[2]
print("START", flush=True)
rng = np.random.default_rng(0)
X = rng.normal(size=(400, 30)); y = (X[:, 0] + rng.normal(size=400) > 0).astype(int)
if mode == "sklearn":
    import hptrack.sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    for i in range(10**6):
        grid = {"C": [0.01, 0.1, 1.0, 10.0], "max_iter": [50, 200]}
        cv = (GridSearchCV(LogisticRegression(), grid, cv=3) if i % 2 == 0 else
              RandomizedSearchCV(LogisticRegression(), grid, n_iter=5, cv=3, random_state=i))
        hptrack.sklearn.track(cv, name=f"s{i}", store=root).fit(X, y)
        print("FIT", i, flush=True)
else:
    s = hptrack.search("numpy", store=root, durability="trial")
    for k in range(10**6):
        t = s.trial({"k": k})
        a = rng.normal(size=(300, 300))
        for _ in range(5):
            a = np.linalg.inv(a @ a.T + np.eye(300))   # long C calls (BLAS, LAPACK)
        t.report(0, float(a[0, 0]))
        t.complete(k + 0.25)
        print("ACK", k, t.trial_id, 3, flush=True)
"""


def run_and_terminate(root, tmp_path, mode, delay):
    out_path = tmp_path / f"{mode}.out"
    with open(out_path, "w") as out, open(tmp_path / f"{mode}.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(root)], stdout=out, stderr=err,
                                cwd=tmp_path)
    deadline = time.monotonic() + 60
    while "START" not in open(out_path).read() or not os.path.isdir(Store(root).wal_dir):
        assert proc.poll() is None, open(tmp_path / f"{mode}.err").read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(delay)
    rc, took = terminate_and_wait(proc, f"{mode}: still running 10 s after SIGTERM (seed {SEED})")
    return rc, took, open(out_path).read(), open(tmp_path / f"{mode}.err").read()


def terminate_and_wait(proc, failure: str):
    """Send SIGTERM; (exit code, seconds to exit), or fail with ``failure`` after 10 s."""
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(failure)
    return rc, time.monotonic() - sent


def check_terminated_store(root, context):
    st = Store(root)
    assert st.wal_files() == [], f"{context}: logs left unsealed: {st.wal_files()}"
    report = verify(root)
    assert report.ok, f"{context}: {[p.message for p in report.errors]}"
    con = hptrack.connect(root)
    states = dict(con.sql("SELECT state, count(*) FROM trials GROUP BY 1").fetchall())
    assert states.get("running", 0) == 0, f"{context}: trials left running: {states}"
    errors = {e for e, in con.sql("SELECT DISTINCT error FROM trials WHERE state = 'failed'").fetchall()}
    assert errors <= {"terminated by SIGTERM"}, f"{context}: failed for another reason: {errors}"
    return con


def terminate_loop(tmp_path, n, seed):
    rng = random.Random(seed)
    took_all = []
    for i in range(n):
        mode = ("sklearn", "numpy")[i % 2]
        root = tmp_path / f"store{i}"
        rc, took, out, err = run_and_terminate(root, tmp_path, mode, rng.uniform(0.05, 1.5))
        context = f"run {i} ({mode}), seed {seed}"
        assert rc == 128 + signal.SIGTERM, f"{context}: exit {rc}: {err[-2000:]}"
        assert took < 2.0, f"{context}: exited {took:.2f}s after SIGTERM"
        took_all.append(took)
        con = check_terminated_store(root, context)
        acks = hp.parse_acks(out)
        if acks:
            hp.check_trials_summary(con, acks)    # acknowledged trials complete, with all events
    return took_all


def test_sigterm_during_real_fits_exits_143_promptly_and_seals(tmp_path):
    took = terminate_loop(tmp_path, 4, SEED)
    print(f"seed {SEED}: exit after SIGTERM in {min(took):.2f}-{max(took):.2f}s")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigterm_during_real_fits_many_times(tmp_path):
    terminate_loop(tmp_path, 60, SEED)


def test_sigterm_while_main_thread_sleeps_in_c(tmp_path):
    # the main thread in one long C call (time.sleep releases the GIL and restarts on EINTR)
    code = ("import sys, time, hptrack\n"
            "s = hptrack.search('sleepy', store=sys.argv[1])\n"
            "t = s.trial({'a': 1})\n"
            "print('READY', t.trial_id, flush=True)\n"
            "time.sleep(60)\n")
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    rc, took = terminate_and_wait(proc, "sleep: still running 10 s after SIGTERM")
    assert rc == 143 and took < 2.0, (rc, took)
    con = check_terminated_store(root, "sleep")
    assert con.sql("SELECT state, error FROM trials WHERE trial_id = ?", params=[line.split()[1]]
                   ).fetchall() == [("failed", "terminated by SIGTERM")]


def test_sigterm_is_not_swallowed_by_code_that_catches_everything(tmp_path):
    # What numpy did to the old SystemExit inside a fit, done on purpose: a loop
    # that turns any exception into a failed fit and goes on. Before, SIGTERM was
    # an exception raised in the main thread, so this loop swallowed it and ran on.
    code = ("import sys, hptrack\n"
            "s = hptrack.search('tolerant', store=sys.argv[1])\n"
            "print('READY', flush=True)\n"
            "k = 0\n"
            "while True:\n"
            "    t = s.trial({'k': k}); k += 1\n"
            "    try:\n"
            "        sum(i * i for i in range(200_000))\n"
            "        t.complete(float(k))\n"
            "    except BaseException as exc:\n"
            "        t.fail(f'fit failed: {exc!r}')\n")
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(0.5)
    rc, took = terminate_and_wait(proc, "SIGTERM was swallowed: still running 10 s after it")
    assert rc == 143 and took < 5.0, (rc, took)
    con = check_terminated_store(root, "tolerant")
    assert con.sql("SELECT count(*) FROM trials WHERE error LIKE 'fit failed%'").fetchall() == [(0,)]
