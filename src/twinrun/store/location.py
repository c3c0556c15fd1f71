"""Which folder is the run store when the caller names none."""

import os
from pathlib import Path

DEFAULT_STORE_DIR = "twinrun-runs"
STORE_ENV_VAR = "TWINRUN_STORE"


def default_store_path():
    """Return the store folder used when none is given: `$TWINRUN_STORE`, else `./twinrun-runs`.

    Example:

        >>> default_store_path()
        PosixPath('twinrun-runs')
    """
    return Path(os.environ.get(STORE_ENV_VAR) or DEFAULT_STORE_DIR).expanduser()
