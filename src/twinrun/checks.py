"""`twinrun check`: run a training N times in fresh processes and give the verdict.

Three entry points, one engine (`twinrun.replicas`):
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

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from twinrun.compare import (DIVERGED, IDENTICAL, Verdict, first_divergence, gpu_used,
                             likely_causes, loss_growth, weight_distance)
from twinrun.errors import TwinrunError
from twinrun.fingerprint import words_to_hex
from twinrun.replicas import ReplicaSpec, python_command, run_replicas

HASH_SEED_MODES = ("fixed", "random")


def validate_replicas(n, threads, minimum=2):
    if not isinstance(n, int) or n < minimum:
        if minimum == 1:
            raise TwinrunError(f"Expected -n to be at least 1. Received: n={n!r}.")
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


def new_check_id():
    return time.strftime("check-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def check_workload(config, *, n=2, parallel=None, lockstep=None, timeout=None, threads=None,
                   hash_seed="fixed", localize="auto", determinism=None, progress=None,
                   judging=None):
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

    Returns a `Verdict`; the replicas are recorded as runs and the verdict as a check in the
    store (`config.store`).

    Example (it trains the Fashion CNN twice, so it is not run as a doctest):

        verdict = check_workload(RunConfig(backend="torch", seed=7), n=2)
        verdict.verdict  # 'identical'
    """
    from twinrun.launch import child_environment, mark_unfinished, read_run_id
    from twinrun.store import Store
    from twinrun.train import prepare

    threads = validate_replicas(n, threads, minimum=_minimum_replicas(judging))
    determinism = _per_replica("--determinism", determinism, n)
    _validate_hash_seed(hash_seed)
    config = prepare(config)
    plan = plan_replicas(n, threads or [config.threads] * n, parallel,
                         _judged_lockstep(judging, lockstep))
    check_id = new_check_id()
    store = Store(config.store)
    directory = store.check_dir(check_id)
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
            env = child_environment(c, {"TWINRUN_REPLICA": str(i), **(extra_env or {})})
            if hash_seed == "random":
                env.pop("PYTHONHASHSEED", None)
            result.append(ReplicaSpec(
                label=f"replica {i}",
                command=python_command("twinrun.programs.worker", config_path, result_path,
                                       "--quiet"),
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
                                timeout=timeout, progress=progress,
                                on_end=on_end if config.record else None,
                                compare=_streaming(judging))
        results = [_read_result(o.spec.result) for o in outcomes]
        verdict = _judge(judging, outcomes, results, plan)
        if verdict.verdict == DIVERGED and localize:
            _localize(verdict, lambda extra: specs(extra, tag=".localize"), plan.parallel,
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
                  program=None, portable=False):
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
        progress: optional callback of `twinrun.replicas.run_replicas`.
        environment: extra environment variables for every replica.
        label: how the check is named in the store (default: the command line).
        program: what the command runs, where it is not a script: an object with `kind` (the
            store's kind of check), `label`, `no_trace_message(outcome)` and
            `locate(verdict, outcomes)` (a notebook: `twinrun.notebook_checks.NotebookProgram`).
        portable: put the `--portable` settings in every replica's environment (torch's CPU
            kernels then give the same bits on any x86-64 CPU with AVX2; docs/portable.md).

    Example (it runs train.py twice, so it is not run as a doctest):

        verdict = check_command(["python", "train.py"], n=2, seed=7, store="runs")
        verdict.verdict  # 'identical', or 'diverged' with verdict.first_divergence
    """
    from twinrun.backends import KERAS_BACKENDS, resolve_backend
    from twinrun.determinism import environment_for
    from twinrun.seeds import derive_seeds, validate_seed
    from twinrun.store import Store

    threads = validate_replicas(n, threads, minimum=_minimum_replicas(judging))
    determinism = _per_replica("--determinism", determinism if isinstance(determinism, list)
                               else [determinism], n)
    _validate_hash_seed(hash_seed)
    validate_seed(seed)
    plan = plan_replicas(n, threads or [None] * n, parallel, _judged_lockstep(judging, lockstep))
    # A script may use any framework (or several): without --backend, prepare them all.
    backends = [resolve_backend(backend)] if backend else list(KERAS_BACKENDS)
    shown = program.label if program is not None else " ".join(map(str, command))
    command, target = _resolve_command(command)
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
            replica_threads = threads[i] if threads else None
            env = dict(os.environ)
            preset = set()
            for name in backends:
                prepared = environment_for(
                    name, threads=replica_threads, determinism=determinism[i],
                    hash_seed=seeds["hash"] if hash_seed == "fixed" else None,
                    portable=portable)
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
            study_id=check_id, replica=i, artifacts=directory)

    def on_end(outcome):
        _record_script_run(records, run_ids.get(outcome.spec.label), outcome)

    try:
        outcomes = run_replicas(specs(), parallel=plan.parallel, lockstep=plan.lockstep,
                                timeout=timeout, progress=progress, on_start=on_start,
                                on_end=on_end, compare=_streaming(judging))
        for outcome in outcomes:
            if not outcome.reader.trace.header:
                raise TwinrunError(program.no_trace_message(outcome) if program is not None
                                   else _no_trace_message(outcome, command))
        verdict = _judge(judging, outcomes, [None] * n, plan)
        for entry in verdict.replicas:
            entry["run_id"] = run_ids.get(entry["label"])
        verdict.notes.extend(_phase_notes(verdict, outcomes))
        if verdict.verdict == DIVERGED and localize:
            _localize(verdict, lambda extra: specs(extra, tag=".localize"), plan.parallel,
                      timeout)
        if program is not None:
            program.locate(verdict, outcomes)
        verdict.notes.append(f"traces and logs in {directory}")
        kind = program.kind if program is not None else ("function" if label else "command")
        _record_check(records, check_id, verdict, kind=kind, label=label or shown,
                      folder=directory)
        return verdict
    finally:
        records.close()


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
    return json.dumps(verdict.to_dict(), default=float)


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


_PYTHON = re.compile(r"python(\d+(\.\d+)?)?$")


def _resolve_command(command):
    """Check the command before any replica starts; return it and what it runs.

    For `python [options] script.py ...` and `python [options] -m package.module ...` the
    script or module must exist (options such as `-W ignore` and `-X dev` take a value, which
    is no script). `python` and `python3` become this interpreter, so the script sees the same
    packages.

    Returns `(command, target)`: the argument list, and the script path, `-m module`,
    `-c` or the program that the replicas run.
    """
    if not command:
        raise TwinrunError("No command to check: put it after `--`, for example "
                           "`twinrun check -n 2 -- python train.py`.")
    command = [str(a) for a in command]
    program = os.path.basename(command[0])
    if not _PYTHON.match(program):
        if shutil.which(command[0]) is None and not Path(command[0]).is_file():
            raise TwinrunError(f"Command not found: {command[0]}.")
        return command, command[0]
    if program in ("python", "python3"):
        command[0] = sys.executable
    kind, value = python_target(command[1:])
    if kind == "script":
        if not Path(value).is_file():
            raise TwinrunError(f"Script not found: {value} (from {Path.cwd()}).")
        return command, value
    if kind == "module":
        if not value:
            raise TwinrunError("`python -m` needs a module name, for example "
                               "`twinrun check -- python -m mypackage.train`.")
        if not _module_exists(value):
            raise TwinrunError(f"Module not found: {value} (from {Path.cwd()}); run the check "
                               f"from the folder that holds it, or install it.")
        return command, f"-m {value}"
    if kind == "code":
        return command, "-c"
    raise TwinrunError("Python would read the program from stdin, which replicas do not get; "
                       "name a script, `-m module` or `-c code` after `python`.")


HOOKED = "twinrun.programs.hooked"


def hooked_command(command):
    """The command with twinrun's hooks before the script (`twinrun.programs.hooked`), so a
    script that never imports twinrun is seeded, made deterministic and traced.

    `python [options] script.py ARGS` becomes `python [options] -m twinrun.programs.hooked
    script.py ARGS`, and likewise for `-m module` and `-c code`: the interpreter's options stay
    where they were, and the script sees the `sys.argv`, `sys.path[0]` and `__file__` plain
    Python gives it. Other programs are left as they are: the hooks need a `python` command
    (the explicit API, `twinrun.keras.Trace` or `twinrun.torch.Tracer`, works in any).

    Example:
    >>> hooked_command(["python", "-u", "train.py", "--epochs", "2"])[1:]
    ['-u', '-m', 'twinrun.programs.hooked', 'train.py', '--epochs', '2']
    >>> hooked_command(["python", "-m", "pkg.train"])[1:]
    ['-m', 'twinrun.programs.hooked', '-m', 'pkg.train']
    """
    command = [str(a) for a in command]
    if not command or not _PYTHON.match(os.path.basename(command[0])):
        return command
    args = command[1:]
    kind, target = python_target(args)
    if kind not in ("script", "module", "code") or (
            kind == "module" and (target or "").startswith("twinrun.programs.")):
        return command  # twinrun's own programs (`twinrun.check(fn)`) trace themselves
    i, j = _program_start(args)
    if j is None:  # a script: the hooks go right before it
        return [command[0], *args[:i], "-m", HOOKED, *args[i:]]
    letters = args[i][1:]
    rest = letters[j + 1:]
    bundled = [f"-{letters[:j]}"] if j else []  # -uc CODE: the bundled options stay first
    return [command[0], *args[:i], *bundled, "-m", HOOKED, f"-{letters[j]}",
            *([rest] if rest else []), *args[i + 1:]]


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


def _phase_notes(verdict, outcomes):
    """The verdict's notes on the phases of a hooked script (several fits or optimizers)."""
    from twinrun.hooks import phase_notes

    divergence = verdict.first_divergence
    return phase_notes(outcomes[0].spec.trace,
                       divergence.step if divergence is not None else None)


def python_target(args):
    """What `python ARGS` runs: `("script", path)`, `("module", name)`, `("code", text)`, or
    `("stdin", None)`; the interpreter's own options (`-W ignore`, `-Xdev`, `-u`) are skipped.

    Example:
    >>> python_target(["-W", "ignore", "-X", "dev", "train.py", "--epochs", "2"])
    ('script', 'train.py')
    >>> python_target(["-u", "-m", "package.train"])
    ('module', 'package.train')
    """
    i, j = _program_start(args)
    if i >= len(args) or args[i] == "-":
        return "stdin", None
    if j is None:
        return "script", args[i]
    letters = args[i][1:]
    value = letters[j + 1:] or (args[i + 1] if i + 1 < len(args) else None)
    return ("code" if letters[j] == "c" else "module"), value


def _program_start(args):
    """Where the program begins in `python ARGS`, past the interpreter's own options:
    `(i, None)` when `args[i]` is the script (or `-`, stdin), `(i, j)` when letter `j` of the
    bundled option `args[i]` is its `-c` or `-m`, and `(len(args), None)` when nothing follows.

    Example:
    >>> _program_start(["-W", "ignore", "-uc", "print(1)"])
    (2, 1)
    """
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-":
            return i, None
        if arg.startswith("--"):
            # Long options: only --check-hash-based-pycs takes a value (the next argument).
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        if arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            for j, letter in enumerate(letters):
                if letter in "cm":  # the rest of the arguments belong to the program
                    return i, j
                if letter in "WX":  # takes a value: attached (-Xdev) or the next argument
                    if not letters[j + 1:]:
                        i += 1
                    break
            i += 1
            continue
        return i, None
    return len(args), None


def _module_exists(name):
    """Whether `python -m name` finds `name`, looked up without importing (running) any of it."""
    from importlib.machinery import BuiltinImporter, FrozenImporter, PathFinder

    search = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep), *sys.path[1:]]
    search = [p for p in search if p]
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        full = ".".join(parts[:depth])
        spec = PathFinder.find_spec(full, search)
        if spec is None and depth == 1:
            spec = BuiltinImporter.find_spec(full) or FrozenImporter.find_spec(full)
        if spec is None:
            return False
        if depth < len(parts):
            search = list(spec.submodule_search_locations or [])
            if not search:
                return False
    return True


@dataclass
class ReplicaPlan:
    """How the replicas of a check run (`plan_replicas`)."""

    parallel: int   # replicas running at a time
    lockstep: bool  # compared step by step, all stopped at the first difference
    threads: list   # each replica's thread count (all the CPUs where not pinned)
    pinned: bool    # whether the thread counts were given (else the framework's default)
    cpus: int       # CPUs this process may use

    @property
    def shared_cores(self):
        """True when the replicas running at once have more threads than there are CPUs."""
        return sum(sorted(self.threads)[-self.parallel:]) > self.cpus


def plan_replicas(n, threads, parallel=None, lockstep=None):
    """Decide how `n` replicas run: all side by side in lockstep, or `parallel` at a time.

    The rule (`twinrun check --help` says it too):
    - By default all `n` start at once and are compared in lockstep: no replica takes step s+1
      before every replica's step s has been compared, so a divergence stops them all within
      a step of where it happened, after start-up, not after `n` trainings.
    - Thread counts are never lowered to make the replicas fit the CPUs: the count changes the
      bits, so the verdict must be about the count a run really uses. When `n` x threads is
      more than the CPUs, the replicas share the cores (about as long as running them one
      after another; docs/performance.md measures it).
    - `lockstep=False`, or a `parallel` below `n`: `parallel` at a time (default: as many as
      fit, CPUs // threads), each training to its end, so the verdict shows how the
      difference grew over the whole run. The traces are still compared as they grow.

    Arguments:
        n: number of replicas.
        threads: one thread count per replica (None: not pinned, i.e. all the CPUs).
        parallel: replicas at a time, or None for the rule above.
        lockstep: True, False, or None for the rule above.

    Returns a `ReplicaPlan`.

    Example:
    >>> plan = plan_replicas(2, [2, 2])
    >>> plan.lockstep, plan.parallel
    (True, 2)
    >>> plan_replicas(3, [1, 1, 1], parallel=1).lockstep
    False
    """
    from twinrun.launch import available_cpus

    cpus = available_cpus()
    pinned = all(t is not None for t in threads)
    threads = [t or cpus for t in threads]
    per_replica = max(threads)
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int)
                                 or parallel < 1):
        raise TwinrunError(f"Expected --parallel to be at least 1. Received: {parallel!r}.")
    if lockstep is None:
        lockstep = parallel is None or parallel >= n
    if lockstep:
        if parallel is not None and parallel < n:
            raise TwinrunError(
                f"Lockstep runs every replica at once, so --parallel {parallel} cannot hold "
                f"for -n {n}; drop --parallel, or pass --no-lockstep to run {parallel} at a "
                f"time.")
        return ReplicaPlan(parallel=n, lockstep=True, threads=threads, pinned=pinned, cpus=cpus)
    fits = max(1, min(n, cpus // per_replica))
    return ReplicaPlan(parallel=min(n, parallel or fits), lockstep=False, threads=threads,
                       pinned=pinned, cpus=cpus)


def _plan_note(plan, stopped):
    """What the verdict says about how the replicas ran."""
    n = len(plan.threads)
    if not plan.lockstep:
        return (f"The replicas ran {plan.parallel} at a time, each to its end, compared as "
                f"they went.")
    note = f"The {n} replicas ran side by side, compared in lockstep"
    if plan.shared_cores and plan.pinned:
        note += (f"; with {' + '.join(map(str, plan.threads))} threads on {plan.cpus} CPUs "
                 f"they shared the cores (thread counts are kept as asked, since they change "
                 f"the bits)")
    elif plan.shared_cores:
        note += (f"; each free to use all {plan.cpus} CPUs, they shared the cores (thread "
                 f"counts are left at the framework's default, since they change the bits)")
    note += "."
    if stopped:
        note += (" Lockstep stopped them at the divergence; pass --no-lockstep to train every "
                 "replica to its end and see how the difference grows.")
    return note


def _read_result(path):
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def build_verdict(outcomes, results, plan=None):
    """Compare the replicas' traces and assemble the `Verdict`.

    The traces were compared as they grew (`run_replicas`), so `first_divergence` goes on from
    where that comparison stopped and only the losses and last records are read here.

    Arguments:
        outcomes: the `ReplicaOutcome`s, replica 0 first.
        results: each replica's result dict (built-in workloads) or None.
        plan: the `ReplicaPlan` they ran by, said in the verdict's notes.
    """
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
            "fingerprint": (result or {}).get("fingerprint") or _final_fingerprint(trace),
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
        verdict.likely_causes = likely_causes(divergence, env_diff,
                                              gpu_used=gpu_used(environments))
    verdict.weight_distance = weight_distance(traces)
    if plan is not None:
        verdict.notes.append(_plan_note(plan, any(o.stopped for o in outcomes)))
    return verdict


def _final_fingerprint(trace):
    """A script run's final fingerprint: the exact digest of its whole state at its end, or
    (a trace without one) the hex of its last step's words."""
    ends = [d for d in trace.digests if d["at"] == "end"]
    if ends:
        return ends[-1]["digest"]
    last = trace.steps[-1] if trace.steps else None
    return words_to_hex(last["variables"]) if last and last["variables"] is not None else None


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
    if divergence.digest is not None:
        verdict.localization = {
            "step": divergence.step, "layer": None,
            "note": (f"Every step's fingerprint words and losses agreed; only the exact digest "
                     f"of the whole state at {_digest_point(divergence.digest)} differs, so no "
                     f"step's layers can be compared.")}
        return
    if divergence.step < 0 or {"data", "batch"} & set(divergence.records):
        verdict.localization = {"step": divergence.step, "layer": None,
                                "note": "The data differed, so no layer is to blame."}
        return
    step = divergence.step

    def reached(reader):
        return any(r["step"] == step for r in reader.trace.layers) or reader.trace.finished

    outcomes = run_replicas(make_specs({"TWINRUN_LOCALIZE_STEP": str(step)}),
                            parallel=parallel, timeout=timeout, stop_when=reached,
                            compare=False)
    result = localize_step([o.reader.trace for o in outcomes], step)
    verdict.localization = result
    if result["layer"] is not None:
        divergence.layer = result["layer"]
    if verdict.reference is None:  # a reference's causes name what changed since it
        environments = [(o.reader.trace.header or {}).get("environment") or {}
                        for o in outcomes]
        verdict.likely_causes = likely_causes(divergence, verdict.environment_diff, result,
                                              gpu_used=gpu_used(environments))
    if result["race"] and result["rerun_divergence"] is not None:
        verdict.notes.append(result["note"])


def _digest_point(digest):
    """Where a digest was taken, in words: "the run's end (after step 4)", "the end of
    epoch 2 (after step 99)" (epochs counted from 1 there: `epoch 2` is the second)."""
    at = digest["at"]
    return ("the run's end" if at == "end" else f"the end of {at}") + (
        f" (after step {digest['after_step']})")


# -- references, tolerance and findings: `twinrun record`, `check --against`, `--rtol` ---------
#
# `check_command` and `check_workload` take a `Judging` (`judging=`): how their runs are judged
# besides replica against replica. One run can be written as a reference (`record_command`,
# `record_workload`), or compared with one (`check_command_against`, `check_workload_against`);
# with a tolerance the runs train to their end and may be `within_tolerance`.

RECORDED = "recorded"


@dataclass
class Judging:
    """How a check's runs are judged.

    Arguments:
        reference: a `twinrun.reference.Reference`: compare the run(s) with it.
        tolerance: a `twinrun.tolerance.Tolerance`: bits may differ within it.
        record_to: write the single run as a reference file here (`twinrun record`).
        identity: what is run (`command_identity`, `workload_identity`), kept in a reference.
        snapshots: keep the per-epoch weight snapshots in the reference.
        findings: static findings in the script (`script_findings`), kept in the verdict.
        portable: the `--portable` settings the recorded run had, kept in a reference.
    """

    reference: object = None
    tolerance: object = None
    record_to: Path | None = None
    identity: dict | None = None
    snapshots: bool = False
    findings: list = None
    portable: bool = False

    @property
    def single(self):
        """One run is enough: it is compared with a file, or becomes one."""
        return self.reference is not None or self.record_to is not None

    @property
    def whole_runs(self):
        """The runs must train to their end (no lockstep stop at the first difference)."""
        return self.single or self.tolerance is not None


def _minimum_replicas(judging):
    return 1 if judging is not None and judging.single else 2


def _judged_lockstep(judging, lockstep):
    """The lockstep setting a check runs with: a tolerance needs whole runs, and a reference
    file cannot be held back step by step."""
    if judging is None or not judging.whole_runs:
        return lockstep
    if lockstep:
        raise TwinrunError("--lockstep stops the replicas at their first difference, but "
                           + ("--rtol needs every step of every run" if judging.tolerance
                              else "a reference is compared once the run has finished")
                           + "; drop --lockstep.")
    return False


def _streaming(judging):
    """Whether the replicas are compared with each other as they run (and their compared
    words freed): not when they are compared with a reference afterwards."""
    return judging is None or judging.reference is None


def _judge(judging, outcomes, results, plan):
    """The verdict of a check's outcomes, as `judging` asks (`build_verdict` without one)."""
    if judging is not None and judging.reference is not None:
        verdict = reference_verdict(judging.reference, outcomes, results, plan,
                                    judging.tolerance, judging.identity)
    else:
        verdict = build_verdict(outcomes, results, plan)
        if judging is not None and judging.tolerance is not None:
            apply_tolerance(verdict, [o.reader.trace for o in outcomes], judging.tolerance)
    if judging is not None and judging.record_to is not None:
        trace = outcomes[0].reader.trace
        from twinrun.reference import write_reference

        write_reference(judging.record_to, trace, judging.identity,
                        environment=trace.header.get("environment") or {},
                        snapshots=judging.snapshots,
                        portable=portable_settings(judging.identity) if judging.portable
                        else None)
        verdict.verdict = RECORDED
        verdict.reference = {"path": str(judging.record_to), "identity": judging.identity,
                             "steps": len(trace.steps)}
    verdict.findings = list((judging.findings if judging is not None else None) or [])
    verdict.findings += dynamic_findings([o.spec.trace for o in outcomes])
    return verdict


def apply_tolerance(verdict, traces, tolerance):
    """Judge `verdict` (built from `traces`, the first compared against) by `tolerance`: a
    divergence whose losses and weights all stay within it becomes `within_tolerance`."""
    from twinrun.compare import WITHIN_TOLERANCE
    from twinrun.tolerance import judge

    result = judge(traces, verdict.weight_distance, tolerance)
    verdict.tolerance = tolerance.to_dict()
    verdict.max_loss_difference = result.max_loss_difference
    verdict.max_weight_distance = result.max_weight_distance
    if verdict.verdict == DIVERGED and result.within:
        verdict.verdict = WITHIN_TOLERANCE
    if verdict.verdict == DIVERGED and result.reasons:
        verdict.notes.append("Not within tolerance: " + "; ".join(result.reasons) + ".")
    return result


def reference_verdict(reference, outcomes, results, plan=None, tolerance=None, identity=None):
    """Compare the run(s) of `outcomes` with a reference, step by step: the verdict names the
    first divergent step and tensor, and what changed in the environment since the recording.

    Arguments:
        reference: a `twinrun.reference.Reference`.
        outcomes: the runs' `ReplicaOutcome`s (traces read whole: not compared as they ran).
        results: each run's result dict (built-in workloads) or None.
        plan: the `ReplicaPlan` they ran by.
        tolerance: optional `twinrun.tolerance.Tolerance`.
        identity: what ran now (`command_identity`), to say whether the script changed.
    """
    from twinrun.compare import (Comparison, environment_changes, layer_of,
                                 reference_causes, with_exact_digests)
    from twinrun.environment import environment_diff

    for o in outcomes:
        if not o.reader.trace.steps:
            raise TwinrunError(f"{o.spec.label.capitalize()} recorded no training step in its "
                               f"trace.")
    reference.extract_snapshots(Path(outcomes[0].spec.trace).parent)
    traces = [reference.trace] + [o.reader.trace for o in outcomes]
    entries = [_reference_entry(reference)]
    for outcome, result in zip(outcomes, results):
        trace = outcome.reader.trace
        last = trace.steps[-1]
        entries.append({"label": outcome.spec.label, "steps": len(trace.steps),
                        "stopped_early": outcome.stopped,
                        "fingerprint": (result or {}).get("fingerprint")
                        or _final_fingerprint(trace),
                        "final_loss": last.get("loss"), "metrics": _metrics(trace, result)})
        if result and result.get("run_id"):
            entries[-1]["run_id"] = result["run_id"]
    divergence = with_exact_digests(traces, Comparison(traces).advance(final=True))
    lengths = [len(t.steps) for t in traces]
    if divergence is None and len(set(lengths)) > 1:
        raise TwinrunError(
            f"This run trained {lengths[1]} steps and the reference {lengths[0]}, agreeing on "
            f"every step they share; run the training the reference recorded (the same "
            f"epochs and data), or record the reference again.")
    env_diff = environment_diff([_comparable_environment(t.header) for t in traces])
    verdict = Verdict(verdict=IDENTICAL if divergence is None else DIVERGED,
                      steps_compared=min(lengths), replicas=entries,
                      first_divergence=divergence, environment_diff=env_diff)
    verdict.reference = reference.summary()
    verdict.environment_changes = environment_changes(env_diff)
    if divergence is not None:
        verdict.loss_growth = loss_growth(traces, divergence.step)
        verdict.likely_causes = reference_causes(divergence, env_diff)
        owner = layer_of(divergence.variables)
        verdict.localization = {
            "step": divergence.step, "layer": None, "owner": owner,
            "note": (f"The first tensors to differ belong to layer {owner}; a reference keeps "
                     f"no layer outputs, so no rerun localised it further." if owner else
                     "A reference keeps no layer outputs, so no rerun localised the layer.")}
    verdict.weight_distance = weight_distance(traces)
    if divergence is not None:
        verdict.notes.append(_portability_note(reference))
    recorded_sha = reference.identity.get("script_sha256")
    now_sha = (identity or {}).get("script_sha256")
    if recorded_sha and now_sha and recorded_sha != now_sha:
        verdict.notes.append(f"The script {reference.identity.get('script')} changed since the "
                             f"reference was recorded (its contents differ).")
    if tolerance is not None:
        apply_tolerance(verdict, traces, tolerance)
    if plan is not None and len(outcomes) > 1:
        verdict.notes.append(_plan_note(plan, any(o.stopped for o in outcomes)))
    return verdict


def portable_settings(identity):
    """What a reference recorded with `--portable` keeps: the variables that were set (those
    of its backend, or of every backend a script was prepared for)."""
    from twinrun.backends import KERAS_BACKENDS
    from twinrun.determinism import portable_variables

    backends = [identity["backend"]] if (identity or {}).get("backend") else KERAS_BACKENDS
    variables = {}
    for backend in backends:
        variables.update(portable_variables(backend))
    return {"variables": variables}


def _portability_note(reference):
    """What the verdict of a run that moved away from `reference` says about portability."""
    if reference.portable:
        return ("The reference was recorded with --portable and this run had the same settings; "
                "run `twinrun doctor --portable` here: a CPU that fails the self-test (or lacks "
                "AVX2) cannot reproduce portable bits, while one that passes points at the "
                "changes listed instead (versions, threads, the script).")
    return ("The reference was not recorded with --portable, so its bits are those of the CPU "
            "it was recorded on: record it again with `twinrun record --portable` (torch and "
            "Keras on torch; the same --threads) to check it on other CPUs, or compare with "
            "--rtol.")


def _reference_entry(reference):
    trace = reference.trace
    last = trace.steps[-1]
    return {"label": "reference", "steps": len(trace.steps), "stopped_early": False,
            "fingerprint": words_to_hex(last["variables"]) if last["variables"] else None,
            "final_loss": last.get("loss"), "metrics": _metrics(trace, None)}


def command_identity(command, *, seed=0, backend=None):
    """What a command reference was recorded from: the command (with `python` for whichever
    interpreter ran it), the seed and backend, and the script's SHA-256 (to say when it
    changed; a changed script is still the same workload).

    Example:
    >>> command_identity(["python3", "train.py", "--epochs", "2"], seed=0)["command"]
    ['python', 'train.py', '--epochs', '2']
    """
    args = [str(a) for a in command]
    if args and _PYTHON.match(os.path.basename(args[0])):
        args[0] = "python"
    script = None
    if args and args[0] == "python":
        kind, value = python_target(args[1:])
        if kind == "script":
            script = value
    return {"kind": "command", "command": args, "seed": seed, "backend": backend,
            "script": script, "script_sha256": _script_sha256(script)}


def workload_identity(config):
    """What a workload reference was recorded from: the fields of a (prepared) `RunConfig`
    that decide what trains; thread counts and determinism are the environment's."""
    values = config.to_dict()
    keys = ("workload", "preset", "backend", "seed", "epochs", "patience", "seed_overrides",
            "split_seed", "perturb_seed", "fold", "settings")
    return {"kind": "workload", **{k: values.get(k) for k in keys}}


def refuse_other_workload(reference, identity):
    """Raise `TwinrunError` (one sentence) when `reference` was recorded from something else
    than `identity` describes."""
    recorded = reference.identity
    if _comparable_identity(recorded) == _comparable_identity(identity):
        return
    how = (f"`twinrun record -o {reference.path} -- {' '.join(identity['command'])}`"
           if identity["kind"] == "command" else f"`twinrun record -o {reference.path} "
           f"--workload {identity['workload']}`")
    raise TwinrunError(
        f"{reference.path} was recorded from {describe_identity(recorded)}, not from "
        f"{describe_identity(identity)}; check what it recorded, or record a new reference "
        f"with {how}.")


def _comparable_identity(identity):
    """An identity as references are matched: a script by its file name (the checkout's
    folder differs between machines), its contents not at all (a changed script is a note)."""
    values = {k: v for k, v in identity.items() if k not in ("script", "script_sha256")}
    script = identity.get("script")
    if script and values.get("command"):
        values["command"] = [Path(a).name if a == script else a for a in values["command"]]
    return values


def describe_identity(identity):
    """What a reference was recorded from, in words.

    Example:
    >>> describe_identity({"kind": "workload", "workload": "answer-demo", "preset": "quick",
    ...                    "backend": "torch", "seed": 0})
    'the answer-demo workload (quick preset, torch backend, seed 0)'
    """
    if identity.get("kind") == "command":
        backend = f", {identity['backend']} backend" if identity.get("backend") else ""
        return (f"`{' '.join(map(str, identity.get('command') or []))}` (seed "
                f"{identity.get('seed')}{backend})")
    if identity.get("kind") == "workload":
        extra = [f"{k} {identity[k]}" for k in ("epochs", "patience", "split_seed",
                                                 "perturb_seed") if identity.get(k) is not None]
        return (f"the {identity.get('workload')} workload ({identity.get('preset')} preset, "
                f"{identity.get('backend')} backend, seed {identity.get('seed')}"
                + "".join(f", {e}" for e in extra) + ")")
    return "something this twinrun does not know"


def _script_sha256(script):
    if not script:
        return None
    try:
        return hashlib.sha256(Path(script).read_bytes()).hexdigest()
    except OSError:
        return None


def record_command(command, output, *, snapshots=False, seed=0, backend=None, **options):
    """Run the user's command once and write its trace as a reference file.

    Arguments:
        command: the argument list, e.g. `["python", "train.py"]`.
        output: the reference file to write (`ref.twinrun`).
        snapshots: keep the per-epoch weight snapshots in the reference.
        seed, backend, **options: as for `check_command` (threads, determinism, store, ...).

    Returns the `Verdict` of the single run, `verdict == "recorded"`.

    Example (it runs train.py once, so it is not run as a doctest):

        record_command(["python", "train.py"], "ref.twinrun", threads=[2])
    """
    judging = Judging(record_to=Path(output), snapshots=snapshots,
                      identity=command_identity(command, seed=seed, backend=backend),
                      findings=options.pop("findings", None),
                      portable=options.get("portable", False))
    return check_command(command, n=1, seed=seed, backend=backend, localize=False,
                         judging=judging, **options)


def record_workload(config, output, *, snapshots=False, **options):
    """Train a built-in workload once and write its trace as a reference file.

    Arguments:
        config: a `RunConfig`.
        output: the reference file to write.
        snapshots: keep the per-epoch weight snapshots in the reference.
        **options: as for `check_workload` (threads, timeout, progress).
    """
    from twinrun.train import prepare

    judging = Judging(record_to=Path(output), snapshots=snapshots,
                      identity=workload_identity(prepare(config)), portable=config.portable)
    return check_workload(config, n=1, localize=False, judging=judging, **options)


def check_command_against(command, reference, *, n=1, tolerance=None, seed=0, backend=None,
                          findings=None, **options):
    """Run the user's command (once by default) and compare it with a reference, step by step.

    Arguments:
        command: the argument list, as recorded.
        reference: a `twinrun.reference.Reference` (`read_reference`).
        n: runs to compare with it.
        tolerance: optional `twinrun.tolerance.Tolerance`.
        findings: static findings to keep in the verdict (`script_findings`).
        seed, backend, **options: as for `check_command`.

    Raises `TwinrunError` before running anything when the reference was recorded from
    another command, seed or backend.

    Example (it runs train.py once, so it is not run as a doctest):

        verdict = check_command_against(["python", "train.py"], read_reference("ref.twinrun"))
        verdict.verdict  # 'identical', 'diverged' or (with a tolerance) 'within_tolerance'
    """
    identity = command_identity(command, seed=seed, backend=backend)
    refuse_other_workload(reference, identity)
    judging = Judging(reference=reference, tolerance=tolerance, findings=findings,
                      identity=identity)
    # A portable reference is checked under the settings it was recorded with.
    options["portable"] = options.get("portable", False) or reference.portable
    return check_command(command, n=n, seed=seed, backend=backend, localize=False,
                         judging=judging, **options)


def check_workload_against(config, reference, *, n=1, tolerance=None, **options):
    """Train a built-in workload (once by default) and compare it with a reference.

    Arguments:
        config: a `RunConfig` of the workload the reference recorded.
        reference: a `twinrun.reference.Reference`.
        n, tolerance, **options: as for `check_command_against` and `check_workload`.
    """
    from twinrun.train import prepare

    refuse_other_workload(reference, workload_identity(prepare(config)))
    judging = Judging(reference=reference, tolerance=tolerance)
    # A portable reference is checked under the settings it was recorded with.
    config = replace(config, portable=config.portable or reference.portable)
    return check_workload(config, n=n, localize=False, judging=judging, **options)


def script_findings(command):
    """The static findings (`twinrun lint`) of the script a `python script.py` command runs,
    as dicts; empty for other commands, or a script lint cannot read (the run says why)."""
    from twinrun.lint import lint_file

    args = [str(a) for a in command]
    if not args or not _PYTHON.match(os.path.basename(args[0])):
        return []
    kind, script = python_target(args[1:])
    if kind != "script":
        return []
    try:
        return [dict(f.to_dict(), source="lint", file=script) for f in lint_file(script)]
    except TwinrunError:
        return []


def dynamic_findings(traces):
    """What the hooks noticed while the runs trained (`twinrun.hooks.findings`), as dicts;
    empty where this twinrun has no such hooks or they found nothing."""
    try:
        from twinrun.hooks import findings as hook_findings
    except ImportError:
        return []
    found = []
    for trace in traces:
        try:
            items = hook_findings(trace) or []
        except Exception:  # noqa: BLE001  (the hooks only add to a verdict; never lose it)
            continue
        for item in items:
            entry = item.to_dict() if hasattr(item, "to_dict") else item
            entry = dict(entry) if isinstance(entry, dict) else {"title": str(entry)}
            entry.setdefault("source", "hooks")
            if entry not in found:
                found.append(entry)
    return found
