"""`twinrun check`: run a training N times in fresh processes and give the verdict.

Three entry points, one engine (`checks.replicas`):
- `check_workload`: a built-in workload (`fashion-cnn`, `answer-demo`);
- `check_command`: the user's own script, which writes its trace with `twinrun.keras.Trace`
  or `twinrun.torch.Tracer`;
- `check_function`: a Python function (from a notebook, whose kernel cannot be restarted
  with a new hash seed), run in fresh processes.

Every form keeps a record in the store: each replica as a run (the worker of a built-in
workload records its own; for a script the launcher records it from the trace), and the verdict
as a check (`twinrun checks`, `twinrun show CHECK_ID`). The check's folder,
`<store>/checks/<check_id>/`, keeps each replica's trace and whole log (`replica-N.log`).
"""

import functools
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from twinrun.checks.commands import HOOKED, hooked_command, resolve_command
from twinrun.checks.findings import hook_phase_notes
from twinrun.checks.judging import (_final_fingerprint, judge_outcomes, judged_lockstep,
                                    minimum_replicas, compared_while_running)
from twinrun.checks.localize import (localize_against_reference, localize_divergence,
                                     place_sampled_divergence, trace_every_environment)
from twinrun.checks.planning import (per_replica, plan_replicas, validate_hash_seed,
                                     validate_replicas)
from twinrun.checks.replicas import ReplicaSpec, run_replicas
from twinrun.checks.verdict import DIVERGED
from twinrun.errors import TwinrunError
from twinrun.files import finite, read_json


def new_check_id():
    return time.strftime("check-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def check_workload(config, *, n=2, parallel=None, lockstep=None, timeout=None, threads=None,
                   hash_seed="fixed", localize="auto", determinism=None, progress=None,
                   judging=None, trace_every=1):
    """Run a built-in workload `n` times in fresh processes and compare the replicas.

    Arguments:
        config: a `RunConfig` (workload, backend, seed, preset, ...).
        n: number of replicas (at least 2).
        parallel, lockstep: how the replicas run (`plan_replicas`): by default all at once,
            compared in lockstep and stopped at the first difference; `lockstep=False` or a
            `parallel` below `n` runs `parallel` at a time, each to its end.
        timeout: seconds a replica may take before it counts as hung.
        threads: optional list, one thread count per replica (or one for all).
        determinism: optional list of booleans, one per replica (or one for all), replacing
            `config.determinism`: `[True, False]` compares a deterministic replica with a
            default one.
        hash_seed: `"fixed"` (the launcher sets PYTHONHASHSEED) or `"random"`.
        localize: `"auto"`/True to name the first divergent layer, False to skip.
        trace_every: fingerprint the whole state every k-th step only; a divergence is then
            placed by a rerun that traces every step (`place_sampled_divergence`).
        progress: optional `f(states, expected_steps)` (`twinrun.report.terminal.
            replica_progress`): each replica's state and steps, and the most steps one takes.

    Returns a `Verdict`; the replicas are recorded as runs and the verdict as a check in the
    store (`config.store`).

    Example (it trains the Fashion CNN twice, so it is not run as a doctest):

        verdict = check_workload(RunConfig(backend="torch", seed=7), n=2)
        verdict.verdict  # 'identical'
    """
    from twinrun.launch import mark_unfinished, read_run_id, run_environment, worker_command
    from twinrun.store import Store
    from twinrun.train import prepare

    threads = validate_replicas(n, threads, minimum=minimum_replicas(judging))
    determinism = per_replica("--determinism", determinism, n)
    validate_hash_seed(hash_seed)
    config = prepare(config)
    plan = plan_replicas(n, threads or [config.threads] * n, parallel,
                         judged_lockstep(judging, lockstep))
    if progress is not None:  # with the steps a replica takes, the display can give an ETA
        from twinrun.workloads import workload_module

        progress = functools.partial(
            progress, expected_steps=workload_module(config.workload).max_steps(config))
    check_id = new_check_id()
    store = Store(config.store)
    directory = store.check_dir(check_id)
    configs = []
    for i in range(n):
        replica_config = replace(config, trace=str(directory / f"replica-{i}.trace"),
                                 check_id=check_id, replica=i,
                                 threads=threads[i] if threads else config.threads,
                                 determinism=determinism[i] if determinism else config.determinism)
        configs.append(replica_config)

    def specs(extra_env=None, tag=""):
        result = []
        for i, c in enumerate(configs):
            c = replace(c, trace=str(directory / f"replica-{i}{tag}.trace"),
                        record=c.record and not tag)
            config_path = directory / f"replica-{i}{tag}.config.json"
            result_path = directory / f"replica-{i}{tag}.result.json"
            config_path.write_text(json.dumps(c.to_dict()))
            result_path.unlink(missing_ok=True)
            Path(c.trace).unlink(missing_ok=True)
            env = run_environment(c, {"TWINRUN_REPLICA": str(i),
                                      **trace_every_environment(trace_every),
                                      **replay_environment(judging),
                                      **(extra_env or {})}, hash_seed=hash_seed)
            result.append(ReplicaSpec(
                label=f"replica {i}", command=worker_command(config_path, result_path),
                env=env, trace=Path(c.trace), log=directory / f"replica-{i}{tag}.log",
                result=result_path))
        return result

    def on_end(outcome):
        # The worker records its own run; one that was stopped, hung or crashed could not
        # finish its row, so the launcher does.
        status, reason = _ending(outcome)
        mark_unfinished(config.store, read_run_id(outcome.spec.result), status, reason)

    try:
        outcomes = run_replicas(specs(), parallel=plan.parallel, lockstep=plan.lockstep,
                                concurrent_steps=plan.concurrent_steps, timeout=timeout,
                                progress=progress,
                                on_end=on_end if config.record else None,
                                compare=compared_while_running(judging))
        results = [read_json(o.spec.result) for o in outcomes]
        verdict = judge_outcomes(judging, outcomes, results, plan)
        if verdict.verdict == DIVERGED and trace_every > 1:
            place_sampled_divergence(verdict, lambda extra: specs(extra, tag=".dense"),
                                     plan.parallel, timeout, trace_every)
        if verdict.verdict == DIVERGED and localize:
            localize_divergence(verdict, lambda extra: specs(extra, tag=".localize"), plan.parallel,
                      timeout)
        verdict.notes.append(f"traces and logs in {directory}")
        if config.record:
            _record_check(store, check_id, verdict, kind="workload", folder=directory,
                          label=f"{config.workload} ({config.preset}) on {config.backend}")
        return verdict
    finally:
        store.close()


def check_command(command, *, n=2, backend=None, seed=0, determinism=True, parallel=None,
                  lockstep=None, timeout=None, threads=None, hash_seed="fixed", localize="auto",
                  store=None, progress=None, environment=None, label=None, judging=None,
                  program=None, portable=False, trace_every=1):
    """Run the user's command `n` times in fresh processes and compare their traces.

    A `python` command runs under twinrun's hooks (`hooked_command`, `twinrun.hooks`): seeded
    and deterministic before its first line, every Keras `fit` and torch optimizer step traced,
    so the script needs no change. A script may also write its trace itself with
    `twinrun.keras.Trace()` or `twinrun.torch.Tracer` (both find the path in `TWINRUN_TRACE`)
    and call `twinrun.deterministic()` with no seed to take the one passed here. Each replica
    is recorded as a run in the store, and the verdict as a check.

    Arguments:
        command: the argument list, e.g. `["python", "train.py", "--epochs", "1"]`.
        n, backend, seed, determinism, parallel, lockstep, timeout, threads, hash_seed,
            localize, store: as for `twinrun check`.
        progress: optional callback of `twinrun.checks.replicas.run_replicas`.
        environment: extra environment variables for every replica.
        label: how the check is named in the store (default: the command line).
        program: what the command runs, where it is not a script: an object with `kind` (the
            store's kind of check), `label`, `no_trace_message(outcome)` and
            `locate(verdict, outcomes)` (a notebook: `twinrun.checks.notebook.NotebookProgram`).
        portable: put the `--portable` settings in every replica's environment (torch's CPU
            kernels then give the same bits on any x86-64 CPU with AVX2; docs/portable.md).
        trace_every: fingerprint the whole state every k-th step only; a divergence is then
            placed by a rerun that traces every step (`place_sampled_divergence`).

    Example (it runs train.py twice, so it is not run as a doctest):

        verdict = check_command(["python", "train.py"], n=2, seed=7, store="runs")
        verdict.verdict  # 'identical', or 'diverged' with verdict.first_divergence
    """
    from twinrun.backends import KERAS_BACKENDS, resolve_backend
    from twinrun.seeds import derive_seeds, validate_seed
    from twinrun.store import Store

    threads = validate_replicas(n, threads, minimum=minimum_replicas(judging))
    determinism = per_replica("--determinism", determinism if isinstance(determinism, list)
                               else [determinism], n)
    validate_hash_seed(hash_seed)
    validate_seed(seed)
    plan = plan_replicas(n, threads or [None] * n, parallel, judged_lockstep(judging, lockstep))
    # A script may use any framework (or several): without --backend, prepare them all.
    backend = resolve_backend(backend) if backend else None
    backends = [backend] if backend else list(KERAS_BACKENDS)
    shown = program.label if program is not None else " ".join(map(str, command))
    command, target = resolve_command(command)
    if program is not None:
        target = program.label
    command = hooked_command(command)
    check_id = new_check_id()
    records = Store(store)
    directory = records.check_dir(check_id)
    seeds = derive_seeds(seed)

    def specs(extra_env=None, tag=""):
        result = []
        for i in range(n):
            trace = directory / f"replica-{i}{tag}.trace"
            trace.unlink(missing_ok=True)
            env = command_replica_environment(
                i, trace, backend=backend, seed=seed, threads=threads[i] if threads else None,
                determinism=determinism[i], hash_seed=hash_seed, portable=portable,
                extra={**trace_every_environment(trace_every), **replay_environment(judging),
                       **(environment or {}), **(extra_env or {})})
            result.append(ReplicaSpec(label=f"replica {i}", command=list(command), env=env,
                                      trace=trace, log=directory / f"replica-{i}{tag}.log"))
        return result

    run_ids = {}

    def on_start(spec):
        i = int(spec.label.split()[-1])
        run_ids[spec.label] = records.start_run(
            workload=target, backend=backend, seed=seed,
            config={"command": [str(a) for a in spec.command], "replica": i,
                    "threads": threads[i] if threads else None, "hash_seed": hash_seed,
                    "determinism": determinism[i], "backends_prepared": backends,
                    "portable": portable},
            seeds=seeds, determinism={"determinism": determinism[i]}, environment={},
            check_id=check_id, replica=i, artifacts=directory)

    def on_end(outcome):
        _record_script_run(records, run_ids.get(outcome.spec.label), outcome)

    try:
        outcomes = run_replicas(specs(), parallel=plan.parallel, lockstep=plan.lockstep,
                                concurrent_steps=plan.concurrent_steps, timeout=timeout,
                                progress=progress, on_start=on_start, on_end=on_end,
                                compare=compared_while_running(judging))
        for outcome in outcomes:
            if not outcome.reader.trace.header:
                raise TwinrunError(program.no_trace_message(outcome) if program is not None
                                   else _no_trace_message(outcome, command))
        verdict = judge_outcomes(judging, outcomes, [None] * n, plan)
        for entry in verdict.replicas:
            entry["run_id"] = run_ids.get(entry["label"])
        verdict.notes.extend(hook_phase_notes(verdict, outcomes))
        if verdict.verdict == DIVERGED and trace_every > 1:
            place_sampled_divergence(verdict, lambda extra: specs(extra, tag=".dense"),
                                     plan.parallel, timeout, trace_every)
        if verdict.verdict == DIVERGED and localize:
            make_specs = lambda extra: specs(extra, tag=".localize")  # noqa: E731
            if judging is not None and judging.reference is not None:
                localize_against_reference(verdict, judging.reference, make_specs, timeout)
            else:
                localize_divergence(verdict, make_specs, plan.parallel, timeout)
        if program is not None:
            program.locate(verdict, outcomes)
        verdict.notes.append(f"traces and logs in {directory}")
        kind = program.kind if program is not None else ("function" if label else "command")
        _record_check(records, check_id, verdict, kind=kind, label=label or shown,
                      folder=directory)
        return verdict
    finally:
        records.close()


def replay_environment(judging):
    """What a run compared with a reference needs in its environment: the reference's
    fingerprint scheme, so that its step words can be compared with the recorded ones."""
    from twinrun.fingerprint import SCHEME_VARIABLE

    reference = judging.reference if judging is not None else None
    if reference is None or reference.fingerprint_scheme not in (2, 3):
        return {}
    return {SCHEME_VARIABLE: str(reference.fingerprint_scheme)}


def command_replica_environment(replica, trace, *, backend, seed, threads=None,
                                determinism=True, hash_seed="fixed", portable=False, extra=None):
    """The environment of replica `replica` of a user's command (`check_command`): the one
    child environment (`twinrun.launch.child_environment`), plus where the replica writes its
    trace, its number, and the check's seed that `twinrun.deterministic()` takes.

    Arguments:
        replica: the replica's number (0 first).
        trace: the trace file it writes.
        backend: a resolved backend name, or None to prepare every Keras backend.
        seed, threads, determinism, hash_seed, portable: as for `check_command`, for this
            replica.
        extra: variables added last (`check_command`'s `environment`, localisation's step).
    """
    from twinrun.launch import child_environment
    from twinrun.seeds import derive_seeds

    return child_environment(backend, seeds=derive_seeds(seed), threads=threads,
                             determinism=determinism, hash_seed=hash_seed, portable=portable,
                             extra={"TWINRUN_TRACE": str(trace), "TWINRUN_REPLICA": str(replica),
                                    "TWINRUN_SEED": str(seed), **(extra or {})})


def _ending(outcome):
    """The store status and reason of a replica that did not finish by itself."""
    if outcome.failure:
        return "failed", f"{outcome.spec.label} {outcome.failure}"
    if outcome.stop_reason:
        return "stopped", outcome.stop_reason
    return "failed", f"{outcome.spec.label} ended (code {outcome.returncode}) without a result"


def _record_script_run(store, run_id, outcome):
    """Finish the store row of one replica of a script from what its trace says."""
    if run_id is None:
        return
    trace = outcome.reader.trace
    last = trace.steps[-1] if trace.steps else None
    known = {"backend": trace.header.get("backend"),
             "environment": trace.header.get("environment"),
             "epochs_trained": len(trace.epochs), "wall_time": outcome.wall_time}
    fingerprint = _final_fingerprint(trace)
    if outcome.failure or outcome.stop_reason:
        status, reason = _ending(outcome)
        store.end_unfinished_run(run_id, status, reason, fingerprint=fingerprint, **known)
        return
    metrics = dict(trace.epochs[-1]["metrics"]) if trace.epochs else {}
    if last is not None:
        metrics["final_loss"] = last.get("loss")
    store.finish_run(run_id, fingerprint=fingerprint, metrics=metrics,
                     epochs_trained=known.pop("epochs_trained"),
                     wall_time=known.pop("wall_time"),
                     extra={"steps": len(trace.steps), "exit_code": outcome.returncode}, **known)


def _record_check(store, check_id, verdict, *, kind, label, folder):
    """Keep the verdict, as the exact JSON `twinrun check --json` prints, in the store."""
    verdict.check_id = check_id
    verdict.notes.append(f"recorded as {check_id} (`twinrun show {check_id}` shows it again)")
    store.record_check(check_id, kind=kind, label=label, verdict=verdict.verdict,
                       result=verdict_json(verdict), replicas=len(verdict.replicas),
                       steps_compared=verdict.steps_compared, folder=folder)


def verdict_json(verdict):
    """The verdict as `twinrun check --json` prints it (and `twinrun show CHECK_ID --json`)."""
    # JSON has no NaN: a loss that became NaN is null, so every parser reads the verdict.
    return json.dumps(finite(verdict.to_dict()), default=float, allow_nan=False)


def check_function(fn, *, n=2, **options):
    """Run `fn()` in `n` fresh processes and compare the traces it writes.

    `fn` is sent to the fresh processes with cloudpickle, so a function defined in a notebook
    works; inside it, use `twinrun.keras.Trace()` or `twinrun.torch.Tracer(...)` with no path.
    """
    import tempfile

    try:
        import cloudpickle
    except ImportError as error:
        raise TwinrunError("twinrun.check(fn) needs cloudpickle: `pip install cloudpickle`.") from error
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is not None and module.__name__ != "__main__":
        origin = getattr(module, "__file__", None) or ""
        if "site-packages" not in origin:
            # A module the fresh process may not find on its path (a test file, a script
            # next to the notebook): send its code along instead of a reference to it.
            cloudpickle.register_pickle_by_value(module)
    # Unpickling runs code, so the child loads only a payload signed with a key that exists
    # nowhere but in this process and its replicas' environment: a file swapped or planted in
    # the (private) folder is refused, not run.
    key = secrets.token_bytes(32)
    payload = cloudpickle.dumps(fn)
    folder = tempfile.mkdtemp(prefix="twinrun-fn-")
    path = os.path.join(folder, "function.pkl")
    with open(path, "wb") as out:
        out.write(hmac.new(key, payload, hashlib.sha256).digest() + payload)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        return check_command([sys.executable, "-m", "twinrun.programs.fnrunner", path], n=n,
                             environment={"TWINRUN_FN_KEY": key.hex()},
                             label=f"twinrun.check({name})", **options)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _no_trace_message(outcome, command):
    """Why a replica wrote no trace, and what to do: one sentence."""
    replica = outcome.spec.label.split()[-1]
    if HOOKED in command:
        return (f"Replica {replica} wrote no trace: twinrun saw no training it can trace in "
                f"the script (no Keras `Model.fit`, no `torch.optim` optimizer step; pure "
                f"JAX/optax loops, say, are not seen), so add the explicit API: "
                f"`twinrun.keras.Trace()` in model.fit's callbacks, or a "
                f"`twinrun.torch.Tracer` in your training loop (README, Zero-change checks).")
    return (f"Replica {replica} wrote no trace: twinrun's hooks enter only a `python` "
            f"command, so add `twinrun.keras.Trace()` to model.fit's callbacks, or a "
            f"`twinrun.torch.Tracer` to your training loop.")
