"""The `twinrun` command line: parse, call the library, print. Nothing else lives here.

`app` holds the command group (`main`) and the exit-status contract (`warn_on_failure`,
signals, a closed stdout); each command group is its own module, which adds its commands to
`main` when imported here. They import the library lazily so that `twinrun --help` imports no
deep-learning framework.
"""

from twinrun.cli.app import main, warn_on_failure
# Imported for what they register on `main`.
from twinrun.cli import check, data, diff, doctor, export, lint, record, report  # noqa: F401
from twinrun.cli import runs, studies, train  # noqa: F401

__all__ = ["main", "warn_on_failure"]
