"""`twinrun record`: run a training once and keep its trace as a reference file."""

import click

from twinrun.cli.app import main
from twinrun.cli.check import _thread_list
from twinrun.cli.outputs import writable_file_path
from twinrun.cli.options import (data_dir_option, json_option, notebook_target, parameter_option,
                                 store_option, timeout_option, workload_run_options)


@main.command()
@click.option("-o", "--output", required=True, metavar="REF.twinrun",
              callback=writable_file_path,
              help="The reference file to write (replaced if it exists).")
@workload_run_options
@click.option("--threads", default=None, callback=_thread_list, metavar="N",
              help="Thread-pool size (default: every CPU this process may use).")
@click.option("--snapshots", is_flag=True,
              help="Also keep the per-epoch weight snapshots, so that `check --rtol` compares "
                   "the weights too (larger file).")
@timeout_option("Seconds before the run counts as hung.")
@parameter_option
@store_option
@data_dir_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(output, workload, preset, backend, seed, epochs, no_determinism, portable, threads,
           snapshots, timeout, parameters, store, data_dir, as_json, command):
    """Run a training once and write its per-step fingerprints, losses and environment to
    REF.twinrun, to check later runs against (`twinrun check --against REF.twinrun`), on
    another machine or after an upgrade.

    Without COMMAND it records a built-in workload; with `-- python train.py ARGS`, your
    script (traced as under `twinrun check`); with NOTEBOOK.ipynb, the notebook run top to
    bottom in a fresh kernel. With --portable the reference keeps the portable settings, and
    `check --against` applies them, so it travels to other x86-64 CPUs (torch; record and
    check at the same --threads). The format is documented in
    docs/reference-format.md. Exit status: 0 written, 2 error.
    """
    from twinrun import checks
    from twinrun.errors import TwinrunError
    from twinrun.report.terminal import replica_progress

    if threads is not None and len(threads) != 1:
        raise TwinrunError(f"Expected one --threads value for the one run. Received: "
                           f"{len(threads)} values.")

    notebook = notebook_target(command, parameters)
    with replica_progress(enabled=not as_json) as progress:
        if notebook is not None:
            from twinrun.checks.notebook import record_notebook

            verdict = record_notebook(
                notebook[0], output, parameters=notebook[1], snapshots=snapshots, seed=seed,
                backend=backend, determinism=[not no_determinism], threads=threads,
                timeout=timeout, store=store, progress=progress, portable=portable)
        elif command:
            verdict = checks.record_command(
                list(command), output, snapshots=snapshots, seed=seed, backend=backend,
                determinism=[not no_determinism], threads=threads, timeout=timeout,
                store=store, progress=progress, portable=portable,
                findings=checks.script_findings(list(command)))
        else:
            from twinrun.runconfig import RunConfig

            config = RunConfig(workload=workload, backend=backend, seed=seed, preset=preset,
                               epochs=epochs, determinism=not no_determinism, store=store,
                               data_dir=data_dir, portable=portable)
            verdict = checks.record_workload(config, output, snapshots=snapshots,
                                             threads=threads, timeout=timeout,
                                             progress=progress)
    if as_json:
        click.echo(checks.verdict_json(verdict))
    else:
        from twinrun.report.reference import (render_findings_above,
                                              render_reference_and_tolerance)

        shown = verdict.to_dict()
        render_findings_above(shown["findings"])
        render_reference_and_tolerance(shown)
