"""`twinrun check`: run a training N times in fresh processes and give the verdict.

Three entry points, one engine (`twinrun.replicas`):
- `check_workload`: a built-in workload (`fashion-cnn`, `answer-demo`);
- `check_command`: the user's own script, which writes its trace with `twinrun.keras.Trace`
  or `twinrun.torch.Tracer`;
- `check_function`: a Python function (from a notebook, whose kernel cannot be restarted
  with a new hash seed), run in fresh processes.
"""

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

from twinrun.compare import (DIVERGED, IDENTICAL, Verdict, first_divergence, likely_causes,
                             loss_growth, weight_distance)
from twinrun.errors import TwinrunError
from twinrun.fingerprint import words_to_hex
from twinrun.replicas import ReplicaSpec, python_command, run_replicas

HASH_SEED_MODES = ("fixed", "random")


def validate_replicas(n, threads):
    if not isinstance(n, int) or n < 2:
        raise TwinrunError(f"Expected -n to be at least 2 (two replicas to compare). Received: n={n!r}.")
    if threads is not None:
        if len(threads) not in (1, n):
            raise TwinrunError(
                f"Expected --threads to give one value, or one per replica ({n}). "
                f"Received: {len(threads)} values.")
        if any(t < 1 for t in threads):
            raise TwinrunError(f"Expected every --threads value to be at least 1. Received: {threads}.")
        if len(threads) == 1:
            threads = threads * n
    return threads


def _check_dir(store_path, check_id):
    from twinrun.store import default_store_path

    root = Path(store_path) if store_path else Path(default_store_path())
    directory = root / "checks" / check_id
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def new_check_id():
    return time.strftime("check-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def check_workload(config, *, n=2, parallel=None, lockstep=False, timeout=None, threads=None,
                   hash_seed="fixed", localize="auto", determinism=None, progress=None):
    """Run a built-in workload `n` times in fresh processes and compare the replicas.

    Arguments:
        config: a `RunConfig` (workload, backend, seed, preset, ...).
        n: number of replicas (at least 2).
        parallel: replicas run at a time (default: as many as the CPUs allow).
        lockstep: compare as they go; stop all replicas at the first difference.
        timeout: seconds a replica may take before it counts as hung.
        threads: optional list, one thread count per replica (or one for all).
        determinism: optional list of booleans, one per replica (or one for all), replacing
            `config.determinism`: `[True, False]` compares a deterministic replica with a
            default one.
        hash_seed: `"fixed"` (the launcher sets PYTHONHASHSEED) or `"random"`.
        localize: `"auto"`/True to name the first divergent layer, False to skip.

    Returns a `Verdict`.

    Example:
    >>> verdict = check_workload(RunConfig(backend="torch", seed=7), n=2)
    >>> verdict.verdict
    'identical'
    """
    from twinrun.train import prepare

    threads = validate_replicas(n, threads)
    determinism = _per_replica("--determinism", determinism, n)
    _validate_hash_seed(hash_seed)
    config = prepare(config)
    check_id = new_check_id()
    directory = _check_dir(config.store, check_id)
    configs = []
    for i in range(n):
        replica_config = replace(config, trace=str(directory / f"replica-{i}.trace"),
                                 study_id=check_id, replica=i,
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
            from twinrun.launch import child_environment

            env = child_environment(c, {"TWINRUN_REPLICA": str(i), **(extra_env or {})})
            if hash_seed == "random":
                env.pop("PYTHONHASHSEED", None)
            result.append(ReplicaSpec(
                label=f"replica {i}",
                command=python_command("twinrun.worker", config_path, result_path, "--quiet"),
                env=env, trace=Path(c.trace), result=result_path))
        return result

    parallel = parallel or _default_parallel(n, threads or [config.threads] * n)
    outcomes = run_replicas(specs(), parallel=parallel, lockstep=lockstep, timeout=timeout,
                            progress=progress)
    results = [_read_result(o.spec.result) for o in outcomes]
    verdict = build_verdict(outcomes, results)
    if verdict.verdict == DIVERGED and localize:
        _localize(verdict, lambda extra: specs(extra, tag=".localize"), parallel, timeout)
    verdict.notes.append(f"traces in {directory}")
    return verdict


def check_command(command, *, n=2, backend=None, seed=0, determinism=True, parallel=None,
                  lockstep=False, timeout=None, threads=None, hash_seed="fixed", localize="auto",
                  store=None, progress=None, environment=None):
    """Run the user's command `n` times in fresh processes and compare their traces.

    The script writes its trace with `twinrun.keras.Trace()` or `twinrun.torch.Tracer` (both
    find the path in `TWINRUN_TRACE`) and may call `twinrun.deterministic()` with no seed to
    take the one passed here.
    """
    from twinrun.backends import KERAS_BACKENDS, resolve_backend
    from twinrun.determinism import environment_for
    from twinrun.seeds import derive_seeds, validate_seed

    threads = validate_replicas(n, threads)
    determinism = _per_replica("--determinism", determinism if isinstance(determinism, list)
                               else [determinism], n)
    _validate_hash_seed(hash_seed)
    validate_seed(seed)
    # A script may use any framework (or several): without --backend, prepare them all.
    backends = [resolve_backend(backend)] if backend else list(KERAS_BACKENDS)
    command = _resolve_command(command)
    check_id = new_check_id()
    directory = _check_dir(store, check_id)
    seeds = derive_seeds(seed)

    def specs(extra_env=None, tag=""):
        result = []
        for i in range(n):
            replica_threads = threads[i] if threads else None
            env = dict(os.environ)
            preset = set()
            for name in backends:
                prepared = environment_for(
                    name, threads=replica_threads, enabled=determinism[i],
                    hash_seed=seeds["hash"] if hash_seed == "fixed" else None)
                preset.update(prepared["TWINRUN_PRESET_VARIABLES"].split(","))
                env.update(prepared)
            env["TWINRUN_PRESET_VARIABLES"] = ",".join(sorted(preset))
            if backend is None:
                env.pop("KERAS_BACKEND", None)
                if "KERAS_BACKEND" in os.environ:
                    env["KERAS_BACKEND"] = os.environ["KERAS_BACKEND"]
            if hash_seed == "random":
                env.pop("PYTHONHASHSEED", None)
            trace = directory / f"replica-{i}{tag}.trace"
            trace.unlink(missing_ok=True)
            env.update(TWINRUN_TRACE=str(trace), TWINRUN_REPLICA=str(i), TWINRUN_SEED=str(seed),
                       PYTHONUNBUFFERED="1", **(environment or {}), **(extra_env or {}))
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            result.append(ReplicaSpec(label=f"replica {i}", command=list(command), env=env,
                                      trace=trace))
        return result

    parallel = parallel or _default_parallel(n, threads or [None] * n)
    outcomes = run_replicas(specs(), parallel=parallel, lockstep=lockstep, timeout=timeout,
                            progress=progress)
    for outcome in outcomes:
        if not outcome.reader.trace.header:
            raise TwinrunError(
                f"Replica {outcome.spec.label.split()[-1]} wrote no trace: add "
                "`twinrun.keras.Trace()` to model.fit's callbacks, or a `twinrun.torch.Tracer` "
                "to your training loop.")
    verdict = build_verdict(outcomes, [None] * n)
    if verdict.verdict == DIVERGED and localize:
        _localize(verdict, lambda extra: specs(extra, tag=".localize"), parallel, timeout)
    verdict.notes.append(f"traces in {directory}")
    return verdict


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
    try:
        return check_command([sys.executable, "-m", "twinrun.fnrunner", path], n=n,
                             environment={"TWINRUN_FN_KEY": key.hex()}, **options)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _per_replica(option, values, n):
    if values is None:
        return None
    if len(values) not in (1, n):
        raise TwinrunError(f"Expected {option} to give one value, or one per replica ({n}). "
                           f"Received: {len(values)} values.")
    return list(values) * n if len(values) == 1 else list(values)


def _validate_hash_seed(mode):
    if mode not in HASH_SEED_MODES:
        raise TwinrunError(f"Expected --hash-seed to be one of {', '.join(HASH_SEED_MODES)}. "
                           f"Received: {mode!r}.")


def _resolve_command(command):
    if not command:
        raise TwinrunError("No command to check: put it after `--`, for example "
                           "`twinrun check -n 2 -- python train.py`.")
    command = list(command)
    if os.path.basename(command[0]) in ("python", "python3"):
        # The interpreter twinrun runs in, so the script sees the same packages.
        command[0] = sys.executable
        script = next((a for a in command[1:] if not a.startswith("-")), None)
        if script is not None and "-m" not in command[1:] and "-c" not in command[1:]:
            if not Path(script).is_file():
                raise TwinrunError(f"Script not found: {script} (from {Path.cwd()}).")
    elif shutil.which(command[0]) is None and not Path(command[0]).is_file():
        raise TwinrunError(f"Command not found: {command[0]}.")
    return command


def _default_parallel(n, threads):
    from twinrun.launch import available_cpus

    cpus = available_cpus()
    per_replica = max((t or cpus) for t in threads)
    return max(1, min(n, cpus // per_replica))


def _read_result(path):
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def build_verdict(outcomes, results):
    """Compare the replicas' traces and assemble the `Verdict`."""
    from twinrun.environment import environment_diff

    traces = [o.reader.trace for o in outcomes]
    for o in outcomes:
        if not o.reader.trace.steps and not o.stopped:
            raise TwinrunError(f"{o.spec.label.capitalize()} recorded no training step in its trace.")
    divergence = first_divergence(traces)
    environments = [_comparable_environment(t.header) for t in traces]
    env_diff = environment_diff(environments)
    replicas = []
    for outcome, trace, result in zip(outcomes, traces, results):
        last = trace.steps[-1] if trace.steps else None
        entry = {
            "label": outcome.spec.label,
            "steps": len(trace.steps),
            "stopped_early": outcome.stopped,
            "fingerprint": (result or {}).get("fingerprint")
            or (words_to_hex(last["variables"]) if last else None),
            "final_loss": last.get("loss") if last else None,
            "metrics": _metrics(trace, result),
        }
        if result and result.get("run_id"):
            entry["run_id"] = result["run_id"]
        replicas.append(entry)
    verdict = Verdict(
        verdict=IDENTICAL if divergence is None else DIVERGED,
        steps_compared=min(len(t.steps) for t in traces),
        replicas=replicas, first_divergence=divergence, environment_diff=env_diff)
    if divergence is not None:
        verdict.loss_growth = loss_growth(traces, divergence.step)
        verdict.likely_causes = likely_causes(divergence, env_diff)
    verdict.weight_distance = weight_distance(traces)
    return verdict


def _comparable_environment(header):
    environment = dict(header.get("environment") or {})
    environment["process"] = {k: header.get(k) for k in
                              ("hash_seed", "hash_probe", "determinism", "threads")}
    return environment


def _metrics(trace, result):
    metrics = dict(trace.epochs[-1]["metrics"]) if trace.epochs else {}
    for key in ("test_accuracy", "test_loss", "loss", "acc", "val_loss", "val_acc",
                "epochs_trained"):
        if result and key in result:
            metrics[key] = result[key]
    return metrics


def _localize(verdict, make_specs, parallel, timeout):
    from twinrun.localize import localize_step

    divergence = verdict.first_divergence
    if divergence.step < 0 or {"data", "batch"} & set(divergence.records):
        verdict.localization = {"step": divergence.step, "layer": None,
                                "note": "The data differed, so no layer is to blame."}
        return
    step = divergence.step

    def reached(reader):
        return any(r["step"] == step for r in reader.trace.layers) or reader.trace.finished

    outcomes = run_replicas(make_specs({"TWINRUN_LOCALIZE_STEP": str(step)}),
                            parallel=parallel, timeout=timeout, stop_when=reached)
    result = localize_step([o.reader.trace for o in outcomes], step)
    verdict.localization = result
    if result["layer"] is not None:
        divergence.layer = result["layer"]
    if result["race"] and result["rerun_divergence"] is not None:
        verdict.notes.append(result["note"])
