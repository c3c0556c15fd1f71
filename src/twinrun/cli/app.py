"""The `twinrun` command group, and the exit-status contract every command keeps.

Exit status, for every command: 0 success (for `check`: identical), 1 `check` found a
divergence, 2 any error, 130 interrupted. Every error is one `Error:` sentence on stderr; an
unexpected exception inside twinrun also exits 2, and its traceback goes to a log file that
the sentence names (see `twinrun.errors.error_log_folder`), or to stderr with `--debug`.

- SIGTERM and SIGHUP end any command with one sentence and status 2, SIGINT with 130; while
  replicas or study runs are going, they are stopped first (`twinrun.launch.stop_on_signals`).
- What a command does after its result is decided (writing the report, the MLflow export) goes
  through `warn_on_failure`: a failure there is one `Warning:` sentence, and the status stays
  the result's. What those side jobs need is checked before anything runs.
- A stdout closed by its reader (`twinrun runs | head`) ends the command quietly, status 1 as
  Click and Rich end then; `check` keeps its verdict's status.
"""

import contextlib
import sys
import threading

import click

from twinrun.errors import TwinrunError

ERROR_EXIT = 2
INTERRUPTED_EXIT = 130
CLOSED_PIPE_EXIT = 1


class _Group(click.Group):
    """A click group that keeps the exit-status contract whatever the command raises."""

    def invoke(self, ctx):
        try:
            with _stop_signals_as_errors():
                return super().invoke(ctx)
        # click's own ways out (usage errors exit 2, --help and --version exit 0, Abort 1) and
        # the SystemExit that `check` raises with the verdict's status pass through untouched.
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                SystemExit):
            raise
        except BrokenPipeError:
            # The reader went away (`twinrun runs | head`): what it read is all it wanted. No
            # sentence; status 1, as Click (for --help) and Rich (for tables) end then too.
            silence_closed_stdout()
            sys.exit(CLOSED_PIPE_EXIT)
        except TwinrunError as error:
            _fail(str(error), error, ctx, expected=True, exit_code=error.exit_code)
        except _Stopped as error:
            _fail(f"twinrun was stopped by {error.signal_name}; nothing more was run.", error,
                  ctx, expected=True, exit_code=ERROR_EXIT)
        except KeyboardInterrupt as error:
            _fail("Interrupted; nothing more was run.", error, ctx, expected=True,
                  exit_code=INTERRUPTED_EXIT)
        except OSError as error:
            full = _full_device_sentence(error)
            _fail(full or _unexpected_sentence(error), error, ctx, expected=full is not None,
                  exit_code=ERROR_EXIT)
        except Exception as error:  # noqa: BLE001  (the contract: a bug still gets a sentence)
            _fail(_unexpected_sentence(error), error, ctx, expected=False, exit_code=ERROR_EXIT)


class _Stopped(BaseException):
    """SIGTERM or SIGHUP outside a phase that handles them itself (`launch.stop_on_signals`
    does while children run). A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way out can swallow it."""

    def __init__(self, signum):
        import signal

        super().__init__(signum)
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def _stop_signals_as_errors():
    """SIGTERM and SIGHUP end the command with one sentence and exit status 2, as SIGINT does
    with 130 (Python's KeyboardInterrupt); without this they kill it silently (143, 129).

    A second signal while the first one's cleanup runs takes the default way out at once.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [signal.SIGTERM, signal.SIGHUP]

    def handler(signum, frame):
        for each in signums:
            signal.signal(each, signal.SIG_DFL)
        raise _Stopped(signum)

    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def silence_closed_stdout():
    """After a BrokenPipeError on stdout: send what is still written there to /dev/null, so
    that neither the rest of the command nor Python's flush at exit fails on the closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def warn_on_failure(side_job, *args, **kwargs):
    """Run a side job after a command's result is decided and shown (writing its report,
    exporting it): if it fails, print one `Warning:` sentence that names a log of the failure,
    and let the command keep its own exit status (for `check`, the verdict's 0 or 1).

    Arguments:
        side_job: the function to call; `args` and `kwargs` are passed on.

    Example:

        warn_on_failure(offer_report, check_id, report_path, store=store, as_json=as_json)
    """
    from twinrun.errors import log_traceback
    from twinrun.errors import printable

    try:
        return side_job(*args, **kwargs)
    except Exception as error:  # noqa: BLE001  (no side job may change the result's status)
        sentence = str(error) if isinstance(error, TwinrunError) else _unexpected_sentence(error)
        path = log_traceback(error)
        where = f" The log of this failure is {path}." if path else ""
        click.echo(f"Warning: {printable(sentence, lines=True)}{where}", err=True)
        return None


def _debug(ctx):
    root = ctx.find_root()
    return bool((root.params or {}).get("debug"))


def _fail(sentence, error, ctx, expected, exit_code):
    """Print the one `Error:` sentence (and with --debug the traceback), then exit."""
    import traceback

    from twinrun.errors import printable

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


def _full_device_sentence(error):
    """One sentence for a write the machine refused for want of space (the output redirected to
    a full disk, a store on one): the machine's state, not a bug in twinrun. None otherwise."""
    import errno

    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f" writing {error.filename}" if error.filename else ""
    reason = ("No space left on the device" if error.errno == errno.ENOSPC
              else "The disk quota is exceeded")
    return f"{reason}{where}; free some space and run the command again."


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
