"""Write benchmark: hptrack against Optuna's storages and raw fsync floors.

Run it on purpose (it is not part of the test suite)::

    make bench                                   # = .venv/bin/python benchmarks/bench_write.py
    .venv/bin/python benchmarks/bench_write.py --trials 5000
    .venv/bin/python benchmarks/bench_write.py --quick      # 200 trials, smoke run
    .venv/bin/python benchmarks/bench_write.py --only hptrack-trial,optuna-journal

Every system runs the same trivial objective: 5 params (2 float, 2 int, 1
categorical; the same values everywhere), 10 intermediate reports and 1 final
value per trial. Each system writes to its own fresh folder on the filesystem
of the repository (``--dir`` to change it; not a tmpfs, so fsync costs what it
costs). Set-up (creating the study/search/file) is outside the timings.

fsync latency on a shared machine swings by 10-50x from one minute to the
next, so only ratios from one run mean anything, and even within a run the
systems must see the same disk. Hence two groups:

* fsync-bound systems (JSON line, Parquet file, hptrack ``durability="trial"``,
  Optuna journal, Optuna SQLite) run interleaved: chunks of ``--chunk`` trials,
  round-robin, order rotated every round, time summed per system;
* CPU-bound systems (no tracking, hptrack ``durability="batch"``, Optuna
  in-memory) run whole, ``--repeat`` times each, fresh store each time; the
  median is reported. They are not interleaved because hptrack's background
  flush thread would then do batch's work inside the other systems' timings.

For hptrack three times are taken: the trial loop, then until every event is
durable (``Search.finish()``, which flushes the write-ahead log), then until
the writer's ``close()`` has sealed everything into Parquet. Its trials/s and
the targets use the last (everything included). After each hptrack run the
store is read back with ``hptrack.connect`` and must hold all N trials and
N*12 trial events, or the run is reported INVALID. The load average and an
fsync probe are printed before and after so a noisy run can be recognised.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHOICES = ("adam", "sgd", "rmsprop")
STEPS = 10
FRACTIONS = tuple(1.0 - 1.0 / (s + 2) for s in range(STEPS))  # a learning curve
FSYNC_GROUP = ("json-fsync", "parquet-fsync", "hptrack-trial", "optuna-journal", "optuna-sqlite")
CPU_GROUP = ("bare", "hptrack-batch", "optuna-memory")
SYSTEMS = CPU_GROUP + FSYNC_GROUP


def make_params(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"lr": 10 ** rng.uniform(-5, -1), "dropout": rng.uniform(0.0, 0.5),
             "depth": rng.randint(2, 12), "width": rng.randint(16, 512),
             "optimizer": rng.choice(CHOICES)} for _ in range(n)]


def base_value(p: dict) -> float:
    return 0.9 - p["dropout"] * 0.1 + p["depth"] * 0.001 - (p["optimizer"] == "sgd") * 0.01


class Result:
    def __init__(self, name, n, loop_s, durable_s, sealed_s, note, valid, spread=None):
        self.name, self.n, self.note, self.valid = name, n, note, valid
        self.loop_s = loop_s          # the trial loop
        self.durable_s = durable_s    # + until every event is durable
        self.sealed_s = sealed_s      # + until closed (hptrack: sealed into Parquet)
        self.spread = spread          # (min, max) of sealed_s over repeats

    @property
    def rate(self):
        return self.n / self.sealed_s


# --- the systems: set-up in __init__ (untimed), then run(lo, hi) per chunk ----

class System:
    note = ""

    def __init__(self, params, workdir):
        self.params, self.workdir = params, workdir

    def run(self, lo, hi):
        raise NotImplementedError

    def finish(self):
        """Until everything written is durable (timed)."""

    def close(self):
        """Until the system is closed (timed)."""

    def verify(self) -> tuple[bool, str]:
        return True, ""


class Bare(System):
    """The objective loop with no tracking at all: the baseline for overhead."""
    note = "no tracking"

    def run(self, lo, hi):
        sink = 0.0
        for p in self.params[lo:hi]:
            base = base_value(p)
            for step in range(STEPS):
                sink += base * FRACTIONS[step]
            sink += base
        return sink


class JsonFsync(System):
    """Floor: the trial's 12 events as one JSON line, appended and fsynced."""
    note = "1 line/trial, os.fsync"

    def __init__(self, params, workdir):
        super().__init__(params, workdir)
        self.path = os.path.join(workdir, "trials.jsonl")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def run(self, lo, hi):
        fd = self.fd
        for i in range(lo, hi):
            p = self.params[i]
            base = base_value(p)
            events = [{"ts": time.time_ns() // 1000, "type": "trial_started", "trial": i, "params": p}]
            for step in range(STEPS):
                events.append({"ts": time.time_ns() // 1000, "type": "trial_reported", "trial": i,
                               "step": step, "value": base * FRACTIONS[step]})
            events.append({"ts": time.time_ns() // 1000, "type": "trial_completed", "trial": i,
                           "value": base})
            os.write(fd, (json.dumps(events, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)

    def close(self):
        os.close(self.fd)

    def verify(self):
        with open(self.path) as f:
            n = sum(1 for _ in f)
        return n == len(self.params), f"{n} lines"


class ParquetFsync(System):
    """Floor: the trial's 12 rows (hptrack's column schema) as one Parquet file, fsynced."""
    note = "1 file/trial (zstd), os.fsync"

    def __init__(self, params, workdir):
        super().__init__(params, workdir)
        from hptrack.schema import arrow_schema

        self.schema = arrow_schema()
        self.writer_id = uuid.uuid4().hex[:16]

    def run(self, lo, hi):
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = STEPS + 2
        for i in range(lo, hi):
            p = self.params[i]
            base = base_value(p)
            ts = [time.time_ns() // 1000 for _ in range(n)]
            plist = [{"name": k, "kind": type(v).__name__, "num": None if isinstance(v, str) else float(v),
                      "str": v if isinstance(v, str) else None} for k, v in p.items()]
            cols = {
                "event_id": [f"{self.writer_id}-{i * n + j}" for j in range(n)],
                "schema_version": [1] * n, "ts": ts, "writer_id": [self.writer_id] * n,
                "seq": list(range(i * n, i * n + n)), "search_id": ["bench"] * n,
                "trial_id": [f"{i:016x}"] * n, "trial_number": [i] * n,
                "type": ["trial_started"] + ["trial_reported"] * STEPS + ["trial_completed"],
                "step": [None] + list(range(STEPS)) + [None], "resource": [None] * n,
                "value": [None] + [base * f for f in FRACTIONS] + [base], "metric": [None] * n,
                "split": [None] * n, "fold": [None] * n, "params": [plist] + [None] * (n - 1),
                "payload": [None] * n,
            }
            table = pa.Table.from_pydict(cols, schema=self.schema)
            with open(os.path.join(self.workdir, f"trial-{i:06d}.parquet"), "wb") as f:
                pq.write_table(table, f, compression="zstd")
                f.flush()
                os.fsync(f.fileno())

    def verify(self):
        n = sum(1 for name in os.listdir(self.workdir) if name.endswith(".parquet"))
        return n == len(self.params), f"{n} files"


class Hptrack(System):
    durability = "trial"

    def __init__(self, params, workdir):
        import hptrack

        super().__init__(params, workdir)
        self.store = os.path.join(workdir, "store")
        self.search = hptrack.search("bench", strategy="custom", direction="maximize",
                                     store=self.store, durability=self.durability)
        self.note = f"durability={self.durability!r}"

    def run(self, lo, hi):
        s = self.search
        for p in self.params[lo:hi]:
            t = s.trial(p)
            base = base_value(p)
            for step in range(STEPS):
                t.report(step, base * FRACTIONS[step])
            t.complete(base)

    def finish(self):
        self.search.finish()          # appends search_finished and fsyncs the log

    def close(self):
        self.search.writer.close()    # seals the log into Parquet segments, deletes it

    def verify(self):
        import hptrack
        from hptrack._read.read import connect

        n, sid = len(self.params), self.search.search_id
        con = connect(store=self.store)
        trial_events = con.sql("SELECT count(*) FROM events WHERE search_id = ? AND trial_id IS NOT NULL",
                               params=[sid]).fetchall()[0][0]
        n_trials, n_complete, n_reports = con.sql(
            "SELECT count(*), count(*) FILTER (WHERE state = 'complete'), sum(n_reports) "
            "FROM trials WHERE search_id = ?", params=[sid]).fetchall()[0]
        n_params = con.sql("SELECT count(*) FROM params WHERE search_id = ?", params=[sid]).fetchall()[0][0]
        con.close()
        leftover = len(hptrack.Store(self.store).wal_files())
        ok = (trial_events == n * (STEPS + 2) and n_trials == n_complete == n
              and n_reports == n * STEPS and n_params == n * 5 and leftover == 0)
        detail = (f"read back {n_trials} trials, {trial_events} trial events, {n_reports} reports, "
                  f"{n_params} params" + (f"; {leftover} log(s) not sealed" if leftover else ""))
        return ok, detail


class HptrackBatch(Hptrack):
    durability = "batch"


def _fixed_sampler(params):
    """An Optuna sampler that returns the precomputed params: no sampling cost,
    yet every value still goes through suggest_* and the storage as usual."""
    import optuna

    class FixedSampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            return params[trial.number][param_name]

    return FixedSampler()


class Optuna(System):
    kind = "memory"

    def __init__(self, params, workdir):
        import optuna

        super().__init__(params, workdir)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.kind == "memory":
            storage, self.note = None, "InMemoryStorage"
        elif self.kind == "journal":
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            storage = JournalStorage(JournalFileBackend(os.path.join(workdir, "journal.log")))
            self.note = "JournalStorage(JournalFileBackend), default lock"
        else:
            from optuna.storages import RDBStorage

            storage = RDBStorage(f"sqlite:///{os.path.join(workdir, 'optuna.db')}")
            self.note = "RDBStorage(sqlite:///...)"
        self.storage = storage
        self.study = optuna.create_study(study_name="bench", storage=storage, direction="maximize",
                                         sampler=_fixed_sampler(params))

    def run(self, lo, hi):
        study = self.study
        for _ in range(lo, hi):
            trial = study.ask()
            p = {"lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
                 "dropout": trial.suggest_float("dropout", 0.0, 0.5),
                 "depth": trial.suggest_int("depth", 2, 12),
                 "width": trial.suggest_int("width", 16, 512),
                 "optimizer": trial.suggest_categorical("optimizer", CHOICES)}
            base = base_value(p)
            for step in range(STEPS):
                trial.report(base * FRACTIONS[step], step)
            study.tell(trial, base)

    def verify(self):
        done = self.study.get_trials(deepcopy=False)
        ok = (len(done) == len(self.params) and all(t.state.name == "COMPLETE" for t in done)
              and all(len(t.intermediate_values) == STEPS and t.params == self.params[t.number]
                      for t in done))
        if self.kind == "sqlite":
            self.storage.remove_session()
            self.storage.engine.dispose()
        return ok, f"{len(done)} trials"


class OptunaJournal(Optuna):
    kind = "journal"


class OptunaSqlite(Optuna):
    kind = "sqlite"


CLASSES = {
    "bare": Bare, "json-fsync": JsonFsync, "parquet-fsync": ParquetFsync,
    "hptrack-trial": Hptrack, "hptrack-batch": HptrackBatch, "optuna-memory": Optuna,
    "optuna-journal": OptunaJournal, "optuna-sqlite": OptunaSqlite,
}


# --- the two ways of running ---------------------------------------------------

def _end(sys_, name, n, loop_s, note_extra=""):
    t0 = time.perf_counter()
    sys_.finish()
    t1 = time.perf_counter()
    sys_.close()
    t2 = time.perf_counter()
    ok, detail = sys_.verify()
    note = "; ".join(x for x in (sys_.note, detail, note_extra) if x)
    return Result(name, n, loop_s, loop_s + t1 - t0, loop_s + t2 - t0, note, ok)


def run_interleaved(names, params, root, chunk):
    """Chunks of trials, round-robin over the systems, so they share the disk's moods."""
    n = len(params)
    systems = {name: CLASSES[name](params, _fresh(root, name)) for name in names}
    spent = dict.fromkeys(names, 0.0)
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    for k, (lo, hi) in enumerate(bounds):
        order = names[k % len(names):] + names[:k % len(names)]
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            systems[name].run(lo, hi)
            spent[name] += time.perf_counter() - t0
        _progress(f"interleaved: {hi}/{n} trials")
    _progress(None)
    return {name: _end(systems[name], name, n, spent[name], f"{len(bounds)} chunks")
            for name in names}


def run_repeated(names, params, root, repeat):
    """Each system start to end, ``repeat`` times, fresh each time; the median run."""
    runs = {name: [] for name in names}
    for r in range(repeat):
        for name in names:
            system = CLASSES[name](params, _fresh(root, f"{name}-{r}"))
            gc.collect()
            t0 = time.perf_counter()
            system.run(0, len(params))
            runs[name].append(_end(system, name, len(params), time.perf_counter() - t0))
        _progress(f"repeated: {r + 1}/{repeat}")
    _progress(None)
    out = {}
    for name, rs in runs.items():
        totals = [r.sealed_s for r in rs]
        med = sorted(rs, key=lambda r: r.sealed_s)[(len(rs) - 1) // 2]
        med.valid = all(r.valid for r in rs)
        med.spread = (min(totals), max(totals))
        med.note += f"; median of {len(rs)}"
        out[name] = med
    return out


def _progress(text):
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + (f"  {text}" if text else ""))
        sys.stderr.flush()


def _fresh(root, name):
    d = os.path.join(root, name)
    os.makedirs(d)
    return d


# --- environment -------------------------------------------------------------

def fs_type(path: str) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts; Linux only)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, typ = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, f"{typ} ({dev} on {mnt})"
    except OSError:
        pass
    return kind


def fsync_probe(directory: str, n: int = 30) -> float:
    """Median microseconds of a 200-byte append + fdatasync right now."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 200)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times) * 1e6


def first_seal_imports() -> float:
    """Milliseconds a fresh process spends importing what hptrack's first seal needs."""
    import subprocess

    code = ("import time, hptrack; t = time.perf_counter(); "
            "import pyarrow, pyarrow.parquet, pyarrow.compute; print(time.perf_counter() - t)")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return float(out.stdout) * 1e3
    except (subprocess.CalledProcessError, ValueError):
        return float("nan")


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --- report ------------------------------------------------------------------

def print_table(results: dict[str, Result]):
    ref_t, ref_b = results.get("hptrack-trial"), results.get("hptrack-batch")
    head = (f"{'system':<15} {'trials/s':>9} {'us/trial':>9} {'loop s':>8} {'durable s':>9} "
            f"{'closed s':>8} {'trial/x':>8} {'batch/x':>8}  notes")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        vs_t = f"{ref_t.rate / r.rate:8.2f}" if ref_t else f"{'-':>8}"
        vs_b = f"{ref_b.rate / r.rate:8.2f}" if ref_b else f"{'-':>8}"
        spread = (f"; {r.spread[0] * 1e6 / r.n:.1f}-{r.spread[1] * 1e6 / r.n:.1f} us/trial"
                  if r.spread else "")
        flag = "" if r.valid else "  INVALID (data missing)"
        print(f"{name:<15} {r.rate:9.0f} {1e6 / r.rate:9.1f} {r.loop_s:8.3f} {r.durable_s:9.3f} "
              f"{r.sealed_s:8.3f} {vs_t} {vs_b}  {r.note}{spread}{flag}")
    print("trial/x, batch/x: how many times faster hptrack trial / batch is than that row.\n"
          "trials/s, us/trial and the ratios include finishing and closing ('closed s').")


def print_targets(results: dict[str, Result]) -> bool:
    r = results
    checks = []

    def target(label, value, ok, unit):
        checks.append(ok)
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value:.2f}{unit}")

    print("\nTargets (issue 2, Performance):")
    for name in ("hptrack-trial", "hptrack-batch"):
        if name in r and not r[name].valid:
            print(f"  FAIL  {name} lost data: the run is invalid")
            checks.append(False)
    if "hptrack-trial" in r and "optuna-journal" in r:
        ratio = r["hptrack-trial"].rate / r["optuna-journal"].rate
        target("hptrack trial / Optuna journal >= 5x", ratio, ratio >= 5, "x")
    if "hptrack-trial" in r and "optuna-sqlite" in r:
        ratio = r["hptrack-trial"].rate / r["optuna-sqlite"].rate
        target("hptrack trial / Optuna SQLite >= 30x", ratio, ratio >= 30, "x")
    if "hptrack-batch" in r and "bare" in r:
        b, bare = r["hptrack-batch"], r["bare"]
        overhead = (b.sealed_s - bare.sealed_s) / b.n * 1e6
        target("hptrack batch overhead <= 50 us/trial ((batch - bare) / N, finish and close included)",
               overhead, overhead <= 50, " us")
        print(f"        of which: trial loop {(b.loop_s - bare.loop_s) / b.n * 1e6:.1f} us, "
              f"finish (log flushed, durable) {(b.durable_s - b.loop_s) / b.n * 1e6:.1f} us, "
              f"close (sealed to Parquet) {(b.sealed_s - b.durable_s) / b.n * 1e6:.1f} us")
    if "hptrack-batch" in r and "optuna-memory" in r:
        ratio = r["hptrack-batch"].rate / r["optuna-memory"].rate
        target("hptrack batch / Optuna in-memory >= 3x", ratio, ratio >= 3, "x")
    if "hptrack-trial" in r:
        t = r["hptrack-trial"]
        print(f"  info  hptrack trial: {t.loop_s / t.n * 1e6:.1f} us/trial in the loop (every complete() "
              f"waits for its fsync); close (seal) {(t.sealed_s - t.durable_s) * 1e3:.1f} ms")
    for floor in ("json-fsync", "parquet-fsync"):
        if "hptrack-trial" in r and floor in r:
            print(f"  info  hptrack trial / {floor} floor: {r['hptrack-trial'].rate / r[floor].rate:.2f}x")
    return all(checks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000, help="trials per system (default 2000)")
    ap.add_argument("--quick", action="store_true", help="a 200-trial smoke run")
    ap.add_argument("--only", default=",".join(SYSTEMS),
                    help=f"comma-separated systems to run, from: {', '.join(SYSTEMS)}")
    ap.add_argument("--chunk", type=int, default=100,
                    help="trials per turn when interleaving the fsync-bound systems (default 100)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each CPU-bound system; the median counts (default 3)")
    ap.add_argument("--dir", default=REPO,
                    help="where the temporary folders go (default: the repository, not a tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep the written files")
    args = ap.parse_args(argv)
    n = 200 if args.quick else args.trials
    chunk = min(args.chunk, 20) if args.quick else args.chunk
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in systems if s not in CLASSES]
    if unknown:
        ap.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if "hptrack-batch" in systems and "bare" not in systems:
        systems.append("bare")  # the overhead target needs the baseline
    cpu = [s for s in SYSTEMS if s in systems and s in CPU_GROUP]
    disk = [s for s in SYSTEMS if s in systems and s in FSYNC_GROUP]

    import duckdb
    import optuna
    import pyarrow
    import pyarrow.compute  # imported up front like optuna: see first_seal_imports
    import pyarrow.parquet

    import hptrack

    root = tempfile.mkdtemp(prefix=".bench-", dir=args.dir)
    print(f"hptrack write benchmark: {n} trials x (5 params, {STEPS} reports, 1 value) per system")
    print(f"python {platform.python_version()}, hptrack {hptrack.__version__}, optuna {optuna.__version__}, "
          f"pyarrow {pyarrow.__version__}, duckdb {duckdb.__version__}; {os.cpu_count()} CPUs")
    print(f"files under {root}: {fs_type(root)}")
    if "tmpfs" in fs_type(root):
        print("WARNING: tmpfs - fsync is free here, durable figures mean nothing")
    print("Optuna: study.ask() + suggest_* x5 + trial.report x10 + study.tell(), with a sampler that "
          "returns\n  the precomputed params (no sampling cost: storage and framework cost only)")
    print(f"fsync-bound systems interleaved in chunks of {chunk} trials; CPU-bound ones run "
          f"{args.repeat}x, median shown")
    print(f"a fresh process pays {first_seal_imports():.0f} ms once, at its first seal, importing "
          "pyarrow + pyarrow.parquet + pyarrow.compute\n  (imported up front here, as optuna is; "
          "not in the figures)")
    print(f"before: load average {load()}; fsync probe {fsync_probe(root):.0f} us (median append+fdatasync)")

    results: dict[str, Result] = {}
    params = make_params(n)
    ok = False
    try:
        if cpu:
            results.update(run_repeated(cpu, params, root, max(1, args.repeat)))
        if disk:
            results.update(run_interleaved(disk, params, root, max(1, chunk)))
        print(f"after:  load average {load()}; fsync probe {fsync_probe(root):.0f} us\n")
        print_table({name: results[name] for name in SYSTEMS if name in results})
        ok = print_targets(results)
    finally:
        if args.keep:
            print(f"\nfiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'ALL TARGETS PASS' if ok else 'SOME TARGETS FAIL'} (only ratios from one run count)")
    return 0 if ok and all(r.valid for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
