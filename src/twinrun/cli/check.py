"""`twinrun check`: prove a training reproduces bit for bit, or show where and why it diverges."""

import click

from twinrun.cli.app import main, silence_closed_stdout, warn_on_failure
from twinrun.cli.export import export_after, mlflow_option
from twinrun.cli.outputs import report_option
from twinrun.cli.options import (data_dir_option, json_option, notebook_target, parameter_option,
                                 store_option, timeout_option, workload_run_options)


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
@click.option("-n", "n", default=None, type=int,
              help="Number of replicas (default 2; with --against, runs compared with the "
                   "reference, default 1).")
@workload_run_options
@click.option("--threads", default=None, callback=_thread_list, metavar="N[,N...]",
              help="Thread-pool size, one value for all replicas or one per replica.")
@click.option("--determinism", "determinism_list", default=None, callback=_switch_list,
              metavar="on|off[,...]", help="Determinism per replica, e.g. on,off.")
@click.option("--hash-seed", default="fixed", show_default=True, metavar="fixed|random",
              help="Fix PYTHONHASHSEED in every replica (--no-determinism keeps it fixed: it "
                   "is a seed), or leave hashing randomised.")
@click.option("--jobs", "parallel", default=None, type=int,
              help="With --no-lockstep: replicas run at a time (default: as many as the CPUs "
                   "hold at their thread count). A value below -n implies --no-lockstep.")
# The old name of --jobs (studies say --jobs too), still read.
@click.option("--parallel", "parallel_alias", default=None, type=int, hidden=True)
@click.option("--lockstep/--no-lockstep", default=None,
              help="Lockstep (the default): every replica at once, compared step by step, all "
                   "stopped at the first difference. --no-lockstep: each trains to its end "
                   "(the verdict shows how the difference grew).")
@timeout_option("Seconds before a replica counts as hung.")
@click.option("--localize/--no-localize", default=True, show_default=True,
              help="On divergence, rerun to name the first layer that differs.")
@click.option("--trace-every", "trace_every", default="1", show_default=True,
              metavar="K|sampled",
              help="Fingerprint the whole training state every K-th step only (the batch and "
                   "the loss still every step; `sampled` is K=16); a divergence is then placed "
                   "at its exact step and tensor by a rerun that traces every step since the "
                   "last sampled one.")
@click.option("--against", "against", default=None, metavar="REF.twinrun",
              help="Run once and compare step by step with a reference written by `twinrun "
                   "record` (exit 1 when the bits moved: a regression gate for CI).")
@click.option("--rtol", default=None, type=float, metavar="R",
              help="Relative tolerance: bits may differ if every step's loss and every epoch's "
                   "weights stay within it (verdict within_tolerance). The runs train to "
                   "their end.")
@click.option("--atol", default=None, type=float, metavar="A",
              help="Absolute tolerance, added to rtol x |value| (with --rtol).")
@click.option("--strict", is_flag=True,
              help="With --rtol: exit 1 for within_tolerance too (only identical passes).")
@report_option
@mlflow_option
@parameter_option
@store_option
@data_dir_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def check(ctx, n, workload, preset, backend, seed, epochs, no_determinism, portable,
          determinism_list, threads, hash_seed,
          parallel, parallel_alias, lockstep, timeout, localize, trace_every, against, rtol, atol,
          strict,
          report_path, mlflow_uri, parameters, store, data_dir, as_json, command):
    """Run a training N times in fresh processes: identical, or where and why it diverged.

    Without COMMAND it checks a built-in workload; with `-- python train.py ARGS` it checks
    your script as it is: twinrun seeds it and traces every Keras fit and every PyTorch
    optimizer step before its first line runs (a script may also trace itself with
    twinrun.keras.Trace() or twinrun.torch.Tracer). With NOTEBOOK.ipynb each replica runs
    the notebook top to bottom in a fresh Jupyter kernel whose environment twinrun sets
    before it starts, hooked the same way; the verdict names cells and lines, and each
    replica's executed notebook is kept in the check's folder (-p NAME VALUE sets a
    variable after the cell tagged `parameters`).
    A script's reproducibility pitfalls (`twinrun lint`) are printed above the verdict.
    Exit status: 0 identical (or within_tolerance without --strict), 1 diverged, 2 error.

    \b
    References and tolerance:
    - --against REF.twinrun runs once and compares every step with the reference
      `twinrun record` wrote, naming what changed since (versions, CPU, threads).
      Without COMMAND or --workload it reruns the workload the reference recorded.
    - --rtol R [--atol A]: where the bits differ but every step's loss and every
      epoch's weights stay within |x - x0| <= A + R |x0|, the verdict is
      within_tolerance, with the largest loss difference in %.
    - A reference recorded with --portable is checked with the same settings,
      so it checks identical on any x86-64 CPU that passes `twinrun doctor
      --portable` (torch, same --threads).

    \b
    How the replicas run:
    - By default all N start at once and are compared in lockstep: no replica
      takes step s+1 before every replica's step s was compared, so a divergence
      at step 0 is reported a step after start-up, not after N trainings.
    - Thread counts are never lowered to make the replicas fit the CPUs (the count
      changes the bits): when N x threads is more than the CPUs, the replicas take
      turns, only as many computing a step at once as fit (one: step by step),
      instead of fighting over the cores; the verdict says which was chosen.
    - --no-lockstep (or --jobs below N): --jobs at a time, each to its end;
      the traces are still compared as they grow.
    """
    from twinrun import checks
    from twinrun.errors import TwinrunError
    from twinrun.checks.tolerance import validate_tolerance

    if parallel is None:
        parallel = parallel_alias
    if parallel is not None and parallel < 1:
        raise TwinrunError(f"Expected --jobs to be at least 1. Received: {parallel}.")
    tolerance = validate_tolerance(rtol, atol)
    trace_every = validate_trace_every(trace_every)
    if trace_every > 1 and (against is not None or notebook_target(command, parameters)):
        raise TwinrunError("--trace-every samples the replicas' traces of a script or a "
                           "workload compared with each other; drop it with --against or a "
                           "notebook.")
    if strict and tolerance is None:
        raise TwinrunError("--strict makes within_tolerance fail, so it needs --rtol; without "
                           "a tolerance only identical passes anyway.")
    reference = None
    if against is not None:
        from twinrun.checks.reference import read_reference

        reference = read_reference(against)
        if not command and _default(ctx, "workload"):
            workload, preset, backend, seed, epochs = _recorded_workload(
                ctx, reference, against, preset, backend, seed, epochs)
    from twinrun.report.terminal import replica_progress

    with replica_progress(enabled=not as_json) as progress:
        verdict = _run(checks, command, n, workload, preset, backend, seed, epochs,
                       no_determinism, determinism_list, threads, hash_seed, parallel, lockstep,
                       timeout, localize, store, data_dir, progress, reference, tolerance,
                       parameters, portable, trace_every)
    label = " ".join(command) if command else workload
    try:
        _show(checks, verdict, label, as_json)
    except BrokenPipeError:
        # `twinrun check | head`: the reader has what it wanted; the exit status stays the
        # verdict's.
        silence_closed_stdout()
    except SystemExit:
        # Rich's own way out of a closed stdout (Console.on_broken_pipe: /dev/null, then exit
        # 1); rendering raises nothing else of the kind, and 1 is not the verdict's to lose.
        pass
    # From here on nothing may change the exit status: it is the verdict's (0 or 1), and a
    # report or export that fails is a warning.
    if verdict.check_id is not None:
        from twinrun.cli.outputs import offer_report

        warn_on_failure(offer_report, verdict.check_id, report_path, store=store,
                        as_json=as_json)
        warn_on_failure(export_after, verdict.check_id, mlflow_uri, store=store,
                        as_json=as_json)
    passed = verdict.identical or (verdict.verdict == "within_tolerance" and not strict)
    raise SystemExit(0 if passed else 1)


def _show(checks, verdict, label, as_json):
    if as_json:
        from twinrun.report.headline import verdict_with_reading_json

        # What `twinrun show CHECK_ID --json` prints: the stored verdict with its reading.
        click.echo(verdict_with_reading_json(checks.verdict_json(verdict)))
        return
    from twinrun.report.reference import render_findings_above, render_reference_and_tolerance
    from twinrun.report.terminal import render_check_headline, render_verdict

    shown = verdict.to_dict()
    render_check_headline(shown)
    render_findings_above(shown["findings"])
    if shown["verdict"] == "within_tolerance":
        # The verdict table says how the bits differ; the tolerance line says it is fine.
        render_verdict(dict(shown, verdict="diverged"), label, headline=False)
    else:
        render_verdict(shown, label, headline=False)
    render_reference_and_tolerance(shown)


def _default(ctx, name):
    return ctx.get_parameter_source(name) in (click.core.ParameterSource.DEFAULT, None)


def _recorded_workload(ctx, reference, against, preset, backend, seed, epochs):
    """`check --against REF` alone reruns the built-in workload the reference recorded (a
    command is never taken from a file: the user names it)."""
    from twinrun.errors import TwinrunError

    identity = reference.identity
    if identity.get("kind") != "workload":
        raise TwinrunError(
            f"{against} was recorded from a command; name it after `--`, as recorded: "
            f"`twinrun check --against {against} -- "
            f"{' '.join(map(str, identity.get('command') or ['python', 'train.py']))}`.")
    return (identity["workload"],
            identity.get("preset") if _default(ctx, "preset") else preset,
            identity.get("backend") if _default(ctx, "backend") else backend,
            identity.get("seed") if _default(ctx, "seed") else seed,
            identity.get("epochs") if _default(ctx, "epochs") else epochs)


def validate_trace_every(value):
    """`--trace-every`'s value as k: a positive integer, or `sampled`."""
    from twinrun.errors import TwinrunError
    from twinrun.trace.recording import SAMPLED_EVERY

    if str(value).strip().lower() == "sampled":
        return SAMPLED_EVERY
    try:
        every = int(value)
    except ValueError:
        every = 0
    if every < 1:
        raise TwinrunError(f"Expected --trace-every to be a positive number of steps or "
                           f"`sampled`. Received: {value}.")
    return every


def _count(n, default):
    # Not `n or default`: -n 0 is refused by the check, not replaced by the default.
    return default if n is None else n


def _run(checks, command, n, workload, preset, backend, seed, epochs, no_determinism,
         determinism_list, threads, hash_seed, parallel, lockstep, timeout, localize, store,
         data_dir, progress, reference=None, tolerance=None, parameters=(), portable=False,
         trace_every=1):
    notebook = notebook_target(command, parameters)
    if command:
        options = dict(backend=backend, seed=seed,
                       determinism=determinism_list or [not no_determinism],
                       parallel=parallel, lockstep=lockstep, timeout=timeout, threads=threads,
                       hash_seed=hash_seed, store=store, progress=progress, portable=portable)
        if notebook is not None:
            from twinrun.checks import notebook as notebook_check

            path, parameters = notebook
            if reference is not None:
                return notebook_check.check_notebook_against(
                    path, reference, parameters=parameters, n=_count(n, 1), tolerance=tolerance,
                    **options)
            return notebook_check.check_notebook(
                path, parameters=parameters, n=_count(n, 2), localize=localize, **options,
                judging=checks.Judging(tolerance=tolerance))
        findings = checks.script_findings(list(command))
        if reference is not None:
            return checks.check_command_against(list(command), reference, n=_count(n, 1),
                                                tolerance=tolerance, findings=findings,
                                                localize=localize, **options)
        return checks.check_command(
            list(command), n=_count(n, 2), localize=localize, trace_every=trace_every,
            **options, judging=checks.Judging(tolerance=tolerance, findings=findings))
    from twinrun.runconfig import RunConfig

    config = RunConfig(workload=workload, backend=backend, seed=seed, preset=preset,
                       epochs=epochs, determinism=not no_determinism, store=store,
                       data_dir=data_dir, portable=portable)
    options = dict(parallel=parallel, lockstep=lockstep, timeout=timeout, threads=threads,
                   hash_seed=hash_seed, determinism=determinism_list, progress=progress)
    if reference is not None:
        return checks.check_workload_against(config, reference, n=_count(n, 1), tolerance=tolerance,
                                             **options)
    return checks.check_workload(config, n=_count(n, 2), localize=localize,
                                 trace_every=trace_every, **options,
                                 judging=checks.Judging(tolerance=tolerance))
