"""The one exception type twinrun shows to users.

Every failure a user can cause (bad input, missing data, a crashed replica) is raised as a
`TwinrunError` whose message is one complete sentence with the next step in it. The CLI
prints that sentence and exits non-zero; it never shows a traceback for these.
"""


class TwinrunError(Exception):
    """A failure explained in one sentence, meant to be shown to the user as is."""

    exit_code = 2


class DataError(TwinrunError):
    """Fashion-MNIST (or another data set) is missing, corrupt or truncated."""


class StoreError(TwinrunError):
    """The run store cannot be opened, written or read."""


class BackendError(TwinrunError):
    """An unknown or uninstalled backend was asked for."""
