"""The `twinrun` command line: parse, call the library, render. Nothing else lives here.

Each command group is its own module in this package; they import the library lazily so that
`twinrun --help` imports no deep-learning framework.
"""

import sys

import click

from twinrun.errors import TwinrunError


class _Group(click.Group):
    """A click group that turns a `TwinrunError` into one sentence and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TwinrunError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twinrun")
def main():
    """twinrun makes deep-learning training reproducible, proves it, and measures the
    randomness that is left."""


def _register():
    # Imported here (not at the top) so each module can `from twinrun.cli import main`.
    from twinrun.cli import check, data, doctor, runs, train  # noqa: F401


_register()
