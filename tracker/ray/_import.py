"""Import a Ray Tune experiment folder: ``hptrack.ray.import_results(path)``.

Reads the files Ray Tune writes (no Ray needed to import, and nothing is
unpickled): the latest ``experiment_state-*.json`` if there is one (trial ids,
statuses, tags, the metric of ``TuneConfig``), and per trial folder
``result.json`` (one result per line), ``params.json`` and ``error.txt``; for
PBT ``pbt_global.txt`` (else the union of the ``pbt_policy_<trial>.txt``
files: these keep only each member's current lineage, so some exploits may be
missing without the global file).

The events are those of :class:`hptrack.ray.Callback` on a live run:

- ``search_started``: strategy ``pbt`` when PBT policy files exist, else
  ``random`` (Ray's variant generator: grid and random sampling) or
  ``custom`` (a ``searcher-state`` file: a search algorithm). The metric is
  ``metric=`` or the experiment's ``TuneConfig(metric=)``; ``mode`` is needed
  when it is not given (Ray keeps it only in ``tuner.pkl``).
- A trial per Ray trial: ``trial_started`` with the config of its first
  result (``params.json`` holds the last config, which PBT changes), flattened
  as ``a/b``; a ``trial_reported`` per result line (``step`` =
  ``training_iteration``, the metric as value, the other numbers and the params
  in ``payload.metrics``); then ``trial_completed`` with the **last** value
  (as the live callback and hptrack's PBT do; the best value per ``mode`` is
  in ``payload.metrics.best``), ``trial_failed`` when ``error.txt`` exists or
  Ray says ERROR, or nothing when Ray says the trial is still running (no
  ``experiment_state`` file: a trial without an error is taken as ended).
- Each PBT exploit ends the replaced member's trial ``trial_pruned`` at its
  last step and starts a new trial with ``trial_forked`` (``parent_trial_id``,
  ``parent_score``, ``replaced_trial_id``, ``replaced_score``,
  ``params_before``, ``params_after``; ``explore`` and ``copied_score`` are
  null: the files do not keep them); ``step`` is the parent's iteration the
  copy resumed from. The results of a Ray trial are split among its trials at
  the first restart (``iterations_since_restore == 1``) with the new config
  after the exploited iteration. An exploit made on a member's final result
  leaves a trial with no results of its own; it completes with the parent's
  value at the copied step, as Ray's ``ResultGrid`` reports it.

Times are Ray's: ``timestamp`` of each result (whole seconds, as Ray records
them); a trial starts ``time_this_iter_s`` before its first result.

Importing is idempotent: trial ids are derived from the search, the Ray trial
id and the fork count, trials already ended in the store are skipped, and a
trial imported while running gets only its new results and its end. A folder
with nothing new writes nothing.
"""

from __future__ import annotations

import glob
import json
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hptrack._importing import derived_trial_id, known_trials

# bookkeeping fields Ray adds to every result: not metrics of the model
RAY_FIELDS = frozenset({
    "training_iteration", "done", "timestamp", "time_this_iter_s", "time_total_s", "pid",
    "hostname", "node_ip", "time_since_restore", "iterations_since_restore",
    "timesteps_since_restore", "timesteps_total", "episodes_total", "checkpoint_dir_name",
    "should_checkpoint", "trial_id", "date", "experiment_tag", "config",
})
_LIVE = ("RUNNING", "PENDING", "PAUSED")
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_")


def flat_params(config: dict, prefix: str = "") -> dict:
    """A Ray config flattened to hptrack params: nested dicts as ``a/b``, anything
    that is not a scalar as its repr."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "/"))
            continue
        v = num(v)
        out[key] = v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)
    return out


def num(v: Any) -> Any:
    return v.item() if hasattr(v, "item") and not isinstance(v, (list, dict)) else v


def finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def result_metrics(result: dict, metric: str, params: dict) -> dict:
    """The numbers of one result worth keeping beside the metric, and the params."""
    out = {k: float(v) for k, v in result.items()
           if k not in RAY_FIELDS and k != metric and not k.startswith("config/") and finite(v)}
    out.update(params)
    return out


# --- reading the folder --------------------------------------------------------------------

@dataclass
class RayTrial:
    ray_id: str
    folder: str
    tag: str | None = None
    status: str | None = None
    start: float | None = None          # seconds, from the experiment state
    last_result: dict = field(default_factory=dict)   # Ray's, from the experiment state
    results: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class Exploit:
    target: str          # Ray trial ids
    parent: str
    target_iter: int
    parent_iter: int
    parent_config: dict
    new_config: dict


@dataclass
class Experiment:
    path: str
    trials: dict          # ray id -> RayTrial, in folder order
    exploits: list        # in the order Ray made them
    metric: str | None
    strategy: str


def read_experiment(path: str | os.PathLike) -> Experiment:
    """Everything the import needs from a Ray Tune experiment folder."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no Ray Tune experiment folder at {path}")
    state = _experiment_state(path)
    trials = {}
    for folder in sorted(os.listdir(path)):
        full = os.path.join(path, folder)
        if not (os.path.isfile(os.path.join(full, "result.json"))
                or os.path.isfile(os.path.join(full, "params.json"))):
            continue
        t = _read_trial(full, state.get("trials", {}))
        trials[t.ray_id] = t
    if not trials:
        inner = sorted(os.path.basename(os.path.dirname(p)) for p in
                       glob.glob(os.path.join(path, "*", "experiment_state-*.json")))
        hint = f" (experiments in it: {', '.join(inner)})" if inner else ""
        raise ValueError(f"{path} holds no Ray Tune trial folders (with result.json or params.json); "
                         f"pass the experiment folder, <storage_path>/<name>, that Tuner wrote{hint}")
    pbt = os.path.isfile(os.path.join(path, "pbt_global.txt")) or bool(
        glob.glob(os.path.join(path, "pbt_policy_*.txt")))
    strategy = "pbt" if pbt else (
        "custom" if glob.glob(os.path.join(path, "searcher-state-*")) else "random")
    return Experiment(path, trials, _exploits(path, trials) if pbt else [], state.get("metric"),
                      strategy)


def _experiment_state(path):
    files = sorted(glob.glob(os.path.join(path, "experiment_state-*.json")))
    if not files:
        return {}
    with open(files[-1]) as f:
        data = json.load(f)
    trials = {}
    for entry in data.get("trial_data", []):
        t, meta = (json.loads(x) if isinstance(x, str) else x for x in entry)
        trials[t["trial_id"]] = {
            "folder": t.get("relative_logdir"), "status": t.get("status"),
            "tag": (t.get("experiment_tag") or "").split("@perturbed")[0] or None,
            "start": meta.get("start_time"), "last_result": meta.get("last_result") or {}}
    return {"trials": trials, "metric": (data.get("runner_data") or {}).get("_metric")}


def _read_trial(folder, known):
    results = []
    if os.path.isfile(os.path.join(folder, "result.json")):
        with open(os.path.join(folder, "result.json")) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        results.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass  # a line cut short by a crash
    params = {}
    if os.path.isfile(os.path.join(folder, "params.json")):
        with open(os.path.join(folder, "params.json")) as f:
            params = json.load(f)
    name = os.path.basename(folder)
    ray_id = next((r["trial_id"] for r in results if r.get("trial_id")), None)
    if ray_id is None:
        by_folder = [k for k, v in known.items() if v["folder"] == name]
        m = _TRIAL_ID.search(name)
        ray_id = by_folder[0] if by_folder else (m.group(1) if m else name)
    info = known.get(ray_id, {})
    error = None
    if os.path.isfile(os.path.join(folder, "error.txt")):
        with open(os.path.join(folder, "error.txt")) as f:
            lines = [x for x in f.read().splitlines() if x.strip()]
        error = (lines[-1] if lines else "the Ray trial raised an error")[:2000]
    elif info.get("status") == "ERROR":
        error = "the Ray trial raised an error"
    tag = info.get("tag")
    if tag is None:
        m = re.search(re.escape(ray_id) + r"_(.+)_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d$", name)
        tag = m.group(1) if m else None
    return RayTrial(ray_id, folder, tag, info.get("status"), info.get("start"),
                    info.get("last_result") or {}, results, params, error)


def tag_resolver(tags: dict[str, str], ray_ids: Any) -> Callable[[object], str | None]:
    """PBT's records name trials by their original experiment tag (``0_lr=0.01``):
    a function from such a tag to the Ray trial id, given ``tags`` (tag -> id) and
    the ids (``<hash>_00000``: the tag's leading number is the trial's index)."""
    by_index = {int(k.rsplit("_", 1)[1]): k for k in ray_ids if re.fullmatch(r".+_\d+", k)}

    def ray_id(tag):
        if tag in tags:
            return tags[tag]
        head = str(tag).split("_", 1)[0]
        return by_index.get(int(head)) if head.isdigit() else None
    return ray_id


def original_tag(experiment_tag: str | None) -> str | None:
    """The tag PBT's records use: Ray appends ``@perturbed[...]`` at each exploit."""
    return (experiment_tag or "").split("@perturbed")[0] or None


def parse_exploit(line: str, ray_id: Callable[[object], str | None]) -> Exploit | None:
    """One line of ``pbt_global.txt`` / ``pbt_policy_<trial>.txt`` (documented by
    Ray's PopulationBasedTraining: [target tag, clone tag, target iteration, clone
    iteration, clone config, new config]); None for a blank line or a trial
    ``ray_id`` (see :func:`tag_resolver`) does not know."""
    if not line.strip():
        return None
    target, parent, t_iter, p_iter, p_config, new_config = json.loads(line)
    target, parent = ray_id(target), ray_id(parent)
    if target is None or parent is None:
        return None  # a trial folder that is gone
    return Exploit(target, parent, int(t_iter or 0), int(p_iter or 0), p_config or {},
                   new_config or {})


def _exploits(path, trials):
    """PBT's exploit records, in the order Ray made them."""
    files = [os.path.join(path, "pbt_global.txt")]
    if not os.path.isfile(files[0]):
        files = sorted(glob.glob(os.path.join(path, "pbt_policy_*.txt")))
    ray_id = tag_resolver({t.tag: t.ray_id for t in trials.values() if t.tag}, trials)
    seen, out = set(), []
    for name in files:
        with open(name) as f:
            for line in f:
                if line in seen:
                    continue
                seen.add(line)
                e = parse_exploit(line, ray_id)
                if e is not None:
                    out.append(e)
    if len(files) > 1 or os.path.basename(files[0]) != "pbt_global.txt":
        out.sort(key=lambda e: e.target_iter)  # per member its exploits come in iteration order
    return out


def fork_facts(e: Exploit, metric: str, parent_lines: list, replaced_lines: list,
               child_lines: list, last_result: dict | None = None) -> tuple[int, dict]:
    """The step a PBT child resumed after and its fork payload (scores, configs, Ray
    ids), from the results: the parent's up to the exploit, the replaced member's
    and the child's own (empty for a child that never ran; ``last_result`` is then
    Ray's last result of the member: the copied one). Shared by the live callback
    and the import, so both record the same lineage."""
    first = child_lines[0].get("training_iteration") if child_lines else None
    last = last_result or {}
    # Ray's record has the parent's iteration as Ray last saw it, which can lag the
    # checkpoint copied; the child's first result (or Ray's last result of a child
    # that never ran) says which it was
    if isinstance(first, numbers.Integral):
        step = int(first) - 1
    elif isinstance(last.get("training_iteration"), numbers.Integral):
        step = int(last["training_iteration"])
    else:
        step = e.parent_iter
    parent_score = _value_at(parent_lines, step, metric)
    if parent_score is None and first is None and finite(last.get(metric)):
        parent_score = float(last[metric])
    # the score PBT ranked the replaced member by: its last result before the exploit
    # (Ray's record of its iteration lags one behind for the trial whose result made
    # PBT perturb: Ray updates a trial's last result after the scheduler has seen it)
    vals = [r[metric] for r in replaced_lines if finite(r.get(metric))]
    replaced_score = float(vals[-1]) if vals else None
    return step, {"parent_score": parent_score, "replaced_score": replaced_score,
                  "params_before": flat_params(e.parent_config), "explore": None,
                  "copied_score": None,
                  "ray_trial_id": e.target, "ray_parent_trial_id": e.parent}


# --- the plan: hptrack trials from Ray trials ---------------------------------------------

@dataclass
class Segment:
    """One hptrack trial: a Ray trial from its start or from an exploit to the next."""
    ray_id: str
    index: int             # exploits of the Ray trial before this one
    params: dict
    lines: list
    exploit: Exploit | None = None
    trial_id: str = ""
    start_us: int | None = None


def segments(exp: Experiment) -> dict[str, list[Segment]]:
    """Ray trial id -> its segments (one per exploit, plus the first)."""
    out = {}
    for rid, t in exp.trials.items():
        mine = [e for e in exp.exploits if e.target == rid]
        first = t.results[0].get("config") if t.results else None
        params = flat_params(first if first is not None else t.params)
        segs, pos = [Segment(rid, 0, params, [])], 0
        for k, e in enumerate(mine, 1):
            lines = t.results
            hit = next((j for j in range(pos, len(lines))
                        if lines[j].get("training_iteration") == e.target_iter), pos)
            new = flat_params(e.new_config)
            cut = next((j for j in range(max(hit, pos) + 1, len(lines))
                        if lines[j].get("iterations_since_restore") == 1
                        and flat_params(lines[j].get("config") or e.new_config) == new), len(lines))
            segs[-1].lines = lines[pos:cut]
            segs.append(Segment(rid, k, new, [], e))
            pos = cut
        segs[-1].lines = t.results[pos:]
        out[rid] = segs
    return out


def _us(seconds):
    return None if seconds is None else int(round(float(seconds) * 1e6))


def _line_us(line):
    return _us(line["timestamp"]) if finite(line.get("timestamp")) else None


def _value_at(lines, step, metric):
    vals = [r.get(metric) for r in lines if r.get("training_iteration") == step]
    vals = [v for v in vals if finite(v)]
    return float(vals[-1]) if vals else None


# --- writing --------------------------------------------------------------------------------

@dataclass
class ImportResult:
    search_id: str
    name: str
    trials: int            # hptrack trials in the folder (a Ray trial and each of its forks)
    written: int           # of which this import wrote or extended
    forks: int
    running: int           # left running (Ray says they still run)


def import_results(path: str | os.PathLike, name: str | None = None, store: Any = None, *,
                   metric: str | None = None, mode: str | None = None) -> ImportResult:
    """Write the Ray Tune experiment folder ``path`` as the search ``name``
    (default ``ray-<folder name>``), keeping Ray's timestamps. ``metric`` is the
    result key to record (default: the experiment's ``TuneConfig(metric=)``);
    ``mode`` is ``"max"`` or ``"min"``. See the module doc for the events;
    importing the same folder again only adds what is new."""
    from hptrack.api import search, search_id_for

    if mode not in (None, "max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    exp = read_experiment(path)
    metric = metric or exp.metric or _only_metric(exp)
    if mode is None:
        raise ValueError(f"pass mode='max' or mode='min' (--mode) for {metric!r}: Ray keeps the "
                         "mode only in tuner.pkl, which hptrack does not unpickle")
    name = name or f"ray-{os.path.basename(exp.path)}"
    sid = search_id_for(name)
    segs = segments(exp)
    _place(exp, segs, sid)
    ordered = sorted((s for ss in segs.values() for s in ss),
                     key=lambda s: (s.start_us or 0, s.ray_id, s.index))
    numbers_ = {id(s): n for n, s in enumerate(ordered)}
    done = known_trials(store, sid)
    todo = [s for s in ordered if done.get(s.trial_id, ("running",))[0] == "running"]
    live = sum(1 for ss in segs.values() if exp.trials[ss[-1].ray_id].status in _LIVE
               and not exp.trials[ss[-1].ray_id].error)
    result = ImportResult(sid, name, len(ordered), 0, len(exp.exploits), live)
    if not any(_has_news(exp, segs, s, done.get(s.trial_id), metric) for s in todo):
        return result
    ends = [_line_us(r) for ss in segs.values() for s in ss for r in s.lines]
    s_ = search(name, strategy=exp.strategy, direction="minimize" if mode == "min" else "maximize",
                metric=metric, store=store, durability="batch",
                ts=min((s.start_us for s in ordered if s.start_us), default=None),
                imported_from="ray", ray_experiment=exp.path, quiet=True)  # re-import: no notice
    for seg in todo:
        _write(s_, exp, segs, seg, numbers_[id(seg)], done.get(seg.trial_id), metric, mode)
        result.written += 1
    if live:
        s_.writer.flush()
    else:
        s_.finish("ok", ts=max([e for e in ends if e] + [s.start_us or 0 for s in ordered]) or None,
                  imported_trials=len(ordered), forks=len(exp.exploits))
    return result


def _only_metric(exp):
    keys = sorted({k for t in exp.trials.values() for r in t.results for k, v in r.items()
                   if k not in RAY_FIELDS and not k.startswith("config/") and finite(v)})
    if len(keys) == 1:
        return keys[0]
    raise ValueError("pass metric= (--metric): the experiment does not name one; its results "
                     f"report {', '.join(keys) or 'no numbers'}")


def _place(exp, segs, sid):
    """Deterministic trial ids and start times (microseconds) of every segment."""
    for rid, ss in segs.items():
        prev_end = _us(exp.trials[rid].start)
        for s in ss:
            s.trial_id = derived_trial_id(sid, rid, s.index)
            first = s.lines[0] if s.lines else None
            start = None
            if first is not None and _line_us(first) is not None:
                start = _line_us(first) - _us(first.get("time_this_iter_s") or 0)
            if start is None or (s.index and prev_end is not None):
                # a fork starts when the member it replaces stopped, not before
                start = prev_end if start is None else max(start, prev_end)
            s.start_us = start
            ends = [_line_us(r) for r in s.lines if _line_us(r) is not None]
            prev_end = max(ends) if ends else start


def _reports(seg, metric):
    return [r for r in seg.lines
            if finite(r.get(metric)) and isinstance(r.get("training_iteration"), numbers.Integral)]


def _has_news(exp, segs, seg, prev, metric):
    if prev is None:
        return True
    return len(_reports(seg, metric)) > prev[1] or _end_of(exp, segs, seg) != "running"


def _end_of(exp, segs, seg):
    t = exp.trials[seg.ray_id]
    if seg is not segs[seg.ray_id][-1]:
        return "pruned"
    if t.error:
        return "failed"
    return "running" if t.status in _LIVE else "complete"


def _write(s, exp, segs, seg, number, prev, metric, mode):
    from hptrack.api import Trial

    fork = _fork(exp, segs, seg, metric) if seg.exploit is not None else None
    if prev is not None:
        t = Trial.attach(s, seg.trial_id, number, seg.params)  # started by an earlier import
    elif fork is not None:
        parent_id, step, info = fork
        t = s.fork(parent_id, seg.params, step=step, reason="pbt_exploit", trial_number=number,
                   ts=seg.start_us, trial_id=seg.trial_id,
                   replaced_trial_id=segs[seg.ray_id][seg.index - 1].trial_id, **info)
    else:
        t = s.trial(seg.params, trial_number=number, ts=seg.start_us, trial_id=seg.trial_id)
    reports = _reports(seg, metric)
    for r in reports[0 if prev is None else prev[1]:]:
        t.report(int(r["training_iteration"]), float(r[metric]), ts=_line_us(r),
                 **result_metrics(r, metric, seg.params))
    times = [_line_us(r) for r in seg.lines if _line_us(r) is not None]
    end_ts = max(times) if times else seg.start_us
    end = _end_of(exp, segs, seg)
    if end == "pruned":
        steps = [r["training_iteration"] for r in seg.lines if "training_iteration" in r]
        t.prune(int(steps[-1]) if steps else None, ts=end_ts)
    elif end == "failed":
        t.fail(exp.trials[seg.ray_id].error, ts=end_ts)
    elif end == "complete":
        if not reports and fork is not None and fork[2]["parent_score"] is not None:
            # an exploit on a member's final result: nothing ran after the copy, whose
            # result is the parent's at the copied step (as Ray's ResultGrid has it)
            copied = fork[2]["parent_score"]
            t.complete(copied, ts=end_ts, training_iteration=fork[1], best=copied)
            return
        if not reports:
            t.fail(f"the trial ended without reporting {metric!r}", ts=end_ts)
            return
        values = [float(r[metric]) for r in reports]
        t.complete(values[-1], ts=end_ts, training_iteration=int(reports[-1]["training_iteration"]),
                   best=max(values) if mode == "max" else min(values))


def _fork(exp, segs, seg, metric):
    """(parent trial id, step, payload) of the exploit that started ``seg``."""
    e = seg.exploit
    # the parent's trial at the time: one past each exploit of the parent made before this one
    at = next(i for i, x in enumerate(exp.exploits) if x is e)
    parent_seg = segs[e.parent][sum(1 for x in exp.exploits[:at] if x.target == e.parent)]
    parent_lines = [r for x in segs[e.parent][:parent_seg.index + 1] for r in x.lines]
    last = exp.trials[e.target].last_result if seg is segs[e.target][-1] else {}
    step, info = fork_facts(e, metric, parent_lines, segs[e.target][seg.index - 1].lines,
                            seg.lines, last)
    return parent_seg.trial_id, step, info


__all__ = ["Exploit", "ImportResult", "fork_facts", "import_results", "original_tag", "parse_exploit",
           "read_experiment", "segments", "tag_resolver"]
