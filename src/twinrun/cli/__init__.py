"""The `twinrun` command line: parse, call the library, render. Nothing else lives here.

Each command group is its own module in this package; they import the library lazily so that
`twinrun --help` imports no deep-learning framework.

Exit status, for every command: 0 success (for `check`: identical), 1 `check` found a
divergence, 2 any error, 130 interrupted. Every error is one `Error:` sentence on stderr; an
unexpected exception inside twinrun also exits 2, and its traceback goes to a log file that
the sentence names (see `twinrun.errors.error_log_folder`), or to stderr with `--debug`.
"""

import sys

import click

from twinrun.errors import TwinrunError

ERROR_EXIT = 2
INTERRUPTED_EXIT = 130


class _Group(click.Group):
    """A click group that keeps the exit-status contract whatever the command raises."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        # click's own ways out (usage errors exit 2, --help and --version exit 0, Abort 1) and
        # the SystemExit that `check` raises with the verdict's status pass through untouched.
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                SystemExit):
            raise
        except TwinrunError as error:
            _fail(str(error), error, ctx, expected=True, exit_code=error.exit_code)
        except KeyboardInterrupt as error:
            _fail("Interrupted; nothing more was run.", error, ctx, expected=True,
                  exit_code=INTERRUPTED_EXIT)
        except Exception as error:  # noqa: BLE001  (the contract: a bug still gets a sentence)
            _fail(_unexpected_sentence(error), error, ctx, expected=False, exit_code=ERROR_EXIT)


def _debug(ctx):
    root = ctx.find_root()
    return bool((root.params or {}).get("debug"))


def _fail(sentence, error, ctx, expected, exit_code):
    """Print the one `Error:` sentence (and with --debug the traceback), then exit."""
    import traceback

    from twinrun.report.text import printable

    debug = _debug(ctx)
    if not expected and not debug:
        from twinrun.errors import log_traceback

        path = log_traceback(error)
        sentence += (f" The full traceback is in {path}." if path else
                     " No log folder could be written; run with `twinrun --debug` to see the "
                     "traceback.")
    click.echo(f"Error: {printable(sentence, lines=True)}", err=True)
    if debug:
        click.echo("".join(traceback.format_exception(type(error), error, error.__traceback__)),
                   err=True, nl=False)
    sys.exit(exit_code)


def _unexpected_sentence(error):
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    detail = detail.strip().splitlines()[0] if detail.strip() else type(error).__name__
    if len(detail) > 300:
        detail = detail[:299] + "…"
    return f"twinrun failed unexpectedly ({detail}); this is a bug in twinrun, please report it."


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twinrun")
@click.option("--debug", is_flag=True, envvar="TWINRUN_DEBUG",
              help="On an unexpected error, print the full traceback instead of writing it to "
                   "a log file.")
def main(debug):
    """twinrun makes deep-learning training reproducible, proves it, and measures the
    randomness that is left.

    Exit status: 0 success (`check`: identical), 1 `check` diverged, 2 any error.
    """


def _register():
    # Imported here (not at the top) so each module can `from twinrun.cli import main`.
    from twinrun.cli import check, data, doctor, lint, report, runs, studies, train  # noqa: F401
    from twinrun.cli import record  # noqa: F401
    from twinrun.cli import export  # noqa: F401
    from twinrun.cli import diff  # noqa: F401


_register()
