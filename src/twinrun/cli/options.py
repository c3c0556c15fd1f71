"""Options shared by several commands, and the argument helpers they share."""

import json

import click

backend_option = click.option(
    "--backend", default=None, metavar="tensorflow|jax|torch",
    help="Keras backend (default: the one Keras would pick: KERAS_BACKEND, ~/.keras/keras.json, "
         "else tensorflow).")
seed_option = click.option("--seed", default=0, type=int, show_default=True, help="Run seed.")
preset_option = click.option("--preset", default="quick", show_default=True,
                             metavar="quick|study|full|tiny", help="Workload size.")
# Every command that reads or writes the store says the same about --store.
STORE_HELP = "The store folder (default: $TWINRUN_STORE, else ./twinrun-runs)."
store_option = click.option("--store", default=None, metavar="DIR", help=STORE_HELP)
wide_option = click.option(
    "--wide", is_flag=True,
    help="Every column, each row on one line, ids in full (as when piped); without it a "
         "terminal gets the columns that fit, ids and numbers never cut.")
data_dir_option = click.option("--data-dir", default=None, metavar="DIR",
                               help="Folder with the Fashion-MNIST IDX files.")
threads_option = click.option("--threads", default=None, type=int,
                              help="Thread-pool size (default: every CPU this process may use).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
portable_option = click.option(
    "--portable", is_flag=True,
    help="Portable CPU bits (torch and Keras on torch): cap the kernels at AVX2 and take MKL's "
         "compatible branch before start-up, so a run gives the same bits on any x86-64 CPU "
         "that passes `twinrun doctor --portable`, at the same --threads (docs/portable.md). "
         "TensorFlow and JAX: not portable, and the determinism report says so.")


def _positive_seconds(ctx, param, value):
    import math

    from twinrun.errors import TwinrunError

    if value is not None and not (value > 0 and math.isfinite(value)):
        # Zero or less would start the replicas only to stop them at once as "hung".
        raise TwinrunError(f"Expected --timeout to be a number of seconds above 0. "
                           f"Received: {value:g}.")
    return value


def timeout_option(help):
    """`--timeout SECONDS`, refused before anything runs unless it is above 0."""
    return click.option("--timeout", default=None, type=float, callback=_positive_seconds,
                        metavar="SECONDS", help=help)


def workload_run_options(command):
    """What names one run of a built-in workload, for `check` and `record`: --workload,
    --preset, --backend, --seed, --epochs, --no-determinism and --portable (in that order in
    --help)."""
    for option in reversed([
        click.option("--workload", default="fashion-cnn", show_default=True,
                     metavar="fashion-cnn|answer-demo",
                     help="Built-in workload (when no command)."),
        preset_option,
        backend_option,
        seed_option,
        click.option("--epochs", default=None, type=int, help="Most epochs (built-in workloads)."),
        click.option("--no-determinism", is_flag=True, help="Seed only; leave determinism off."),
        portable_option,
    ]):
        command = option(command)
    return command


def parameter_option(function):
    """`-p NAME VALUE`: set a variable of a notebook, in the cell after the one tagged
    `parameters` (papermill's convention)."""
    return click.option("-p", "--parameter", "parameters", nargs=2, multiple=True,
                        metavar="NAME VALUE",
                        help="With a notebook: set NAME to VALUE (a Python literal, else text) "
                             "after the cell tagged `parameters`.")(function)


def notebook_target(command, parameters=()):
    """`(notebook, parameters)` when COMMAND names a notebook, else None; `-p` needs one."""
    from twinrun.errors import TwinrunError
    from twinrun.checks.notebook import split_notebook_command

    found = split_notebook_command(command) if command else None
    if found is None:
        if parameters:
            raise TwinrunError("-p sets a variable of a notebook; name the notebook, for "
                               "example `twinrun check nb.ipynb -p lr 0.01`.")
        return None
    return found[0], [*map(tuple, parameters), *found[1]]


def json_text(value):
    """One JSON object; a non-finite number (an infinite effect size) becomes null."""
    from twinrun.files import finite

    return json.dumps(finite(value), indent=2, allow_nan=False)