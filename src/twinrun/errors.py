"""The one exception type twinrun shows to users.

Every failure a user can cause (bad input, missing data, a crashed replica) is raised as a
`TwinrunError` whose message is one complete sentence with the next step in it. The CLI
prints that sentence and exits non-zero; it never shows a traceback for these.

Anything else that escapes is a bug in twinrun: the CLI still prints one `Error:` sentence and
exits 2, and keeps the traceback in a file under `error_log_folder()` (or prints it with
`twinrun --debug`).
"""


# C0 controls, DEL and the C1 controls (some terminals read U+009B as the escape sequence
# introducer CSI, just like ESC [).
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
_ESCAPED = {code: f"\\x{code:02x}" for code in _CONTROLS}
_KEEP_LINES = {code: text for code, text in _ESCAPED.items() if code not in (0x09, 0x0A)}


def printable(value, lines=False):
    """`str(value)` with every terminal control character written as `\\xNN`.

    Arguments:
        value: any object; None becomes "".
        lines: keep newlines and tabs (for a message with an output tail); every other
            control character, CR included, is still escaped.

    Example:
    >>> printable("\\x1b[2J[/x]")
    '\\\\x1b[2J[/x]'
    >>> printable("a\\nb", lines=True)
    'a\\nb'
    """
    if value is None:
        return ""
    return str(value).translate(_KEEP_LINES if lines else _ESCAPED)


class TwinrunError(Exception):
    """A failure explained in one sentence, meant to be shown to the user as is."""

    exit_code = 2


class DataError(TwinrunError):
    """Fashion-MNIST (or another data set) is missing, corrupt or truncated."""


class StoreError(TwinrunError):
    """The run store cannot be opened, written or read."""


class BackendError(TwinrunError):
    """An unknown or uninstalled backend was asked for."""


def error_log_folder():
    """Where tracebacks of unexpected failures are kept: one file per failure.

    `$XDG_STATE_HOME/twinrun/errors/` (default `~/.local/state/twinrun/errors/`); where that
    cannot be written, `twinrun-<user id>-errors/` in the system's temporary folder.
    """
    import os
    import tempfile
    from pathlib import Path

    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    candidates = [Path(state) / "twinrun" / "errors",
                  Path(tempfile.gettempdir()) / f"twinrun-{os.getuid()}-errors"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None


def log_traceback(error, argv=None, folder=None):
    """Write `error`'s full traceback (and the command line) to a new file; return its path.

    Returns None when no folder can be written; the caller then says so instead.

    Arguments:
        error: the exception being handled.
        argv: the command line, recorded at the top of the log (default `sys.argv`).
        folder: where to write (default `error_log_folder()`).

    Example:
    >>> import tempfile
    >>> try:
    ...     1 / 0
    ... except ZeroDivisionError as error:
    ...     path = log_traceback(error, folder=tempfile.mkdtemp())
    >>> "ZeroDivisionError: division by zero" in path.read_text()
    True
    """
    import datetime
    import os
    import sys
    import traceback
    from pathlib import Path

    folder = error_log_folder() if folder is None else Path(folder)
    if folder is None:
        return None
    now = datetime.datetime.now()
    path = folder / f"error-{now:%Y%m%d-%H%M%S}-{os.getpid()}.log"
    lines = [f"command: {' '.join(sys.argv if argv is None else argv)}",
             f"time: {now.isoformat(timespec='seconds')}", ""]
    lines += traceback.format_exception(type(error), error, error.__traceback__)

    # Escaped like the terminal output: the message may hold a user's text, and a log is read
    # with `cat`.
    text = printable("\n".join(line.rstrip("\n") for line in lines) + "\n", lines=True)
    try:
        path.write_text(text)
    except OSError:
        return None
    return path
