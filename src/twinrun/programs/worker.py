"""The inside of a fresh-process run: `python -m twinrun.programs.worker CONFIG RESULT
[--quiet]`.

The launcher has already put the environment in place (see `twinrun.launch`). This process
makes itself deterministic, trains, records the run in the store and writes its result as
JSON. A failure a user can fix is written as `{"error": sentence}`, never as a traceback.
"""

import json
import sys
import time
from pathlib import Path

from twinrun.errors import TwinrunError
from twinrun.launch import run_id_path
from twinrun.programs.frameworks import leave_out_unused_frameworks
from twinrun.runconfig import RunConfig
from twinrun.workloads import workload_module


def _say(message, quiet):
    if not quiet:
        print(message, flush=True)


def execute(config, quiet=False, on_start=None):
    """Run one validated `RunConfig` in this process and return its result dict.

    Arguments:
        config: the validated `RunConfig`.
        quiet: show no progress.
        on_start: optional `f(run_id)`, called once the run's store row exists, so the
            launcher can mark the row if this process is stopped before it finishes.

    The result holds the run's identity (`run_id`, workload, backend, seed, preset), its
    `environment` and `determinism_report`, and everything the workload's `train` returned
    but the model (see `twinrun.workloads.fashion_cnn.train`): `test_accuracy`, `test_loss`,
    `best_val_loss`, `best_val_accuracy`, `stopped_epoch`, `class_accuracy`, `perturbation`,
    `options`, `history`, ..., the weights' `initial_fingerprint` and final `fingerprint`,
    and, with `config.predictions`, `predictions`: the predicted class of every test image,
    one byte each in test-set order, as hex text (`bytes.fromhex(result["predictions"])`).
    A recorded run's metrics keep its `METRIC_KEYS`.
    """
    started = time.perf_counter()
    from twinrun.environment import fingerprint_environment
    from twinrun.store import Store

    workload = workload_module(config.workload)
    # Open the store and load the data before importing a framework: a bad store or missing
    # data should fail in a second, not after TensorFlow's start-up.
    store = Store(config.store) if config.record else None
    data = workload.load_data(config)

    import keras  # noqa: F401  (imports the backend named by KERAS_BACKEND)

    from twinrun.determinism import deterministic

    report = deterministic(config.seed, backend=config.backend, threads=config.threads,
                           determinism=config.determinism, seeds=config.seeds,
                           portable=config.portable)
    if config.determinism and report.impossible:
        names = ", ".join(c.name for c in report.impossible)
        print(f"Warning: this run may not repeat: could not fix {names}.", file=sys.stderr)
        for control in report.impossible:
            print(f"  {control.name}: {control.detail}", file=sys.stderr)
    environment = fingerprint_environment(backend=config.backend, threads=config.threads)

    run_id = None
    if store is not None:
        run_id = store.start_run(
            workload=config.workload, backend=config.backend, seed=config.seed,
            config=config.to_dict(), seeds=config.seeds, determinism=report.to_dict(),
            environment=environment, study_id=config.study_id, check_id=config.check_id,
            replica=config.replica,
            artifacts=Path(config.trace).parent if config.trace else None)
        if on_start is not None:
            on_start(run_id)
        _say(f"run {run_id}: {config.workload} ({config.preset}) on {config.backend}, "
             f"seed {config.seed}, determinism {'on' if config.determinism else 'off'}", quiet)
    try:
        result = _train(config, data, store, run_id, quiet)
    except BaseException as error:
        if store is not None:
            store.fail_run(run_id, str(error) or type(error).__name__)
            store.close()
        raise
    wall_time = time.perf_counter() - started
    metrics = {k: result[k] for k in METRIC_KEYS if k in result}
    if store is not None:
        store.finish_run(run_id, fingerprint=result["fingerprint"], metrics=metrics,
                         epochs_trained=result["epochs_trained"], wall_time=wall_time,
                         extra={"steps_per_epoch": result.get("steps_per_epoch")})
        store.close()
    return {
        "run_id": run_id,
        "workload": config.workload,
        "backend": config.backend,
        "seed": config.seed,
        "preset": config.preset,
        "determinism": config.determinism,
        "threads": config.threads,
        "fingerprint": result["fingerprint"],
        "epochs_trained": result["epochs_trained"],
        "wall_time": wall_time,
        "impossible_controls": [c.name for c in report.impossible],
        # A study driver records runs that ran elsewhere (record=False) from this result.
        "environment": environment,
        "determinism_report": report.to_dict(),
        **{k: v for k, v in result.items() if k not in ("model", "fingerprint")},
    }


# What a run's stored metrics keep from its result (the studies read them back from the store).
# `predictions` (only with `config.predictions`) is the predicted class of every test image,
# one byte each in test-set order, as hex text: `bytes.fromhex(metrics["predictions"])`.
METRIC_KEYS = ("test_loss", "test_accuracy", "class_accuracy", "per_class", "confusion_matrix",
               "best_epoch", "best_val_loss", "best_val_accuracy", "stopped_epoch",
               "early_stopped", "perturbation", "initial_fingerprint", "predictions")


def _train(config, data, store, run_id, quiet):
    from twinrun.progress import progress_callback, store_callback

    workload = workload_module(config.workload)
    callbacks = []
    if store is not None:
        callbacks.append(store_callback(store, run_id))

    def attach(batches):
        callbacks.append(progress_callback(epochs_of(config), len(batches), enabled=not quiet))
        if config.trace:
            from twinrun.keras import Trace

            callbacks.append(Trace(config.trace, batches=batches))

    return workload.train(config, data, callbacks=callbacks, on_dataset=attach)


def epochs_of(config):
    """The most epochs a run may train (the preset's, `--epochs` or `--set epochs`)."""
    return workload_module(config.workload).max_epochs(config)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet = "--quiet" in argv
    config_path, result_path = [a for a in argv if a != "--quiet"][:2]
    result_file = Path(result_path)
    try:
        config = RunConfig.from_dict(json.loads(Path(config_path).read_text())).validated()
        leave_out_unused_frameworks(config.backend)
        result = execute(config, quiet=quiet,
                         on_start=lambda run_id: run_id_path(result_file).write_text(run_id))
    except TwinrunError as error:
        result_file.write_text(json.dumps({"error": str(error)}))
        return error.exit_code
    result_file.write_text(json.dumps(result, default=float))
    return 0


def exit_now(code):
    """Exit without the interpreter's teardown, once everything this run wrote is closed.

    With TensorFlow loaded, tearing the interpreter down (thread pools, module finalisers) takes
    1.3-1.5 s on this 2-core CPU, 0.05 s with `os._exit`: for `twinrun check -n 2` that is
    seconds a user waits for nothing. Only after a successful run: the result file, the store's
    transactions and the trace are all closed by then; a failing run exits normally.
    """
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    status = main()
    if status == 0:
        exit_now(0)
    sys.exit(status)
