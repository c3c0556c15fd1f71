"""`twinrun check`: prove a training reproduces bit for bit, or show where and why it diverges."""

import click

from twinrun.cli import main
from twinrun.cli.options import (backend_option, data_dir_option, json_option, preset_option,
                                 seed_option, store_option)


def _thread_list(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, received {value!r}")


def _switch_list(ctx, param, value):
    if value is None:
        return None
    words = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not words or any(w not in ("on", "off") for w in words):
        raise click.BadParameter(f"expected on or off, separated by commas; received {value!r}")
    return [w == "on" for w in words]


@main.command(context_settings={"ignore_unknown_options": False})
@click.option("-n", "n", default=2, type=int, show_default=True, help="Number of replicas.")
@click.option("--workload", default="fashion-cnn", show_default=True,
              metavar="fashion-cnn|answer-demo", help="Built-in workload (when no command).")
@preset_option
@backend_option
@seed_option
@click.option("--epochs", default=None, type=int, help="Most epochs (built-in workloads).")
@click.option("--no-determinism", is_flag=True, help="Seed only; leave determinism off.")
@click.option("--threads", default=None, callback=_thread_list, metavar="N[,N...]",
              help="Thread-pool size, one value for all replicas or one per replica.")
@click.option("--determinism", "determinism_list", default=None, callback=_switch_list,
              metavar="on|off[,...]", help="Determinism per replica, e.g. on,off.")
@click.option("--hash-seed", default="fixed", show_default=True, metavar="fixed|random",
              help="Fix PYTHONHASHSEED in every replica, or leave hashing randomised.")
@click.option("--parallel", default=None, type=int,
              help="With --no-lockstep: replicas run at a time (default: as many as the CPUs "
                   "hold at their thread count). A value below -n implies --no-lockstep.")
@click.option("--lockstep/--no-lockstep", default=None,
              help="Lockstep (the default): every replica at once, compared step by step, all "
                   "stopped at the first difference. --no-lockstep: each trains to its end "
                   "(the verdict shows how the difference grew).")
@click.option("--timeout", default=None, type=float, help="Seconds before a replica counts as hung.")
@click.option("--localize/--no-localize", default=True, show_default=True,
              help="On divergence, rerun to name the first layer that differs.")
@store_option
@data_dir_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def check(n, workload, preset, backend, seed, epochs, no_determinism, determinism_list,
          threads, hash_seed,
          parallel, lockstep, timeout, localize, store, data_dir, as_json, command):
    """Run a training N times in fresh processes: identical, or where and why it diverged.

    Without COMMAND it checks a built-in workload; with `-- python train.py ARGS` it checks
    your script, which writes its trace with twinrun.keras.Trace() or twinrun.torch.Tracer.
    Exit status: 0 identical, 1 diverged, 2 error.

    \b
    How the replicas run:
    - By default all N start at once and are compared in lockstep: no replica
      takes step s+1 before every replica's step s was compared, so a divergence
      at step 0 is reported a step after start-up, not after N trainings.
    - Thread counts are never lowered to make the replicas fit the CPUs (the count
      changes the bits): when N x threads is more than the CPUs, the replicas share
      the cores and take about as long as N runs one after another.
    - --no-lockstep (or --parallel below N): --parallel at a time, each to its
      end; the traces are still compared as they grow.
    """
    from twinrun import checks

    if parallel is not None and parallel < 1:
        from twinrun.errors import TwinrunError

        raise TwinrunError(f"Expected --parallel to be at least 1. Received: {parallel}.")
    from twinrun.report.terminal import replica_progress

    with replica_progress(enabled=not as_json) as progress:
        verdict = _run(checks, command, n, workload, preset, backend, seed, epochs,
                       no_determinism, determinism_list, threads, hash_seed, parallel, lockstep,
                       timeout, localize, store, data_dir, progress)
    label = " ".join(command) if command else workload
    if as_json:
        click.echo(checks.verdict_json(verdict))  # what `twinrun show CHECK_ID --json` prints
    else:
        from twinrun.report.terminal import render_verdict

        render_verdict(verdict.to_dict(), label)
    raise SystemExit(0 if verdict.identical else 1)


def _run(checks, command, n, workload, preset, backend, seed, epochs, no_determinism,
         determinism_list, threads, hash_seed, parallel, lockstep, timeout, localize, store,
         data_dir, progress):
    if command:
        return checks.check_command(
            list(command), n=n, backend=backend, seed=seed,
            determinism=determinism_list or [not no_determinism],
            parallel=parallel, lockstep=lockstep, timeout=timeout, threads=threads,
            hash_seed=hash_seed, localize=localize, store=store, progress=progress)
    from twinrun.runconfig import RunConfig

    config = RunConfig(workload=workload, backend=backend, seed=seed, preset=preset,
                       epochs=epochs, determinism=not no_determinism, store=store,
                       data_dir=data_dir)
    return checks.check_workload(
        config, n=n, parallel=parallel, lockstep=lockstep, timeout=timeout, threads=threads,
        hash_seed=hash_seed, localize=localize, determinism=determinism_list,
        progress=progress)
