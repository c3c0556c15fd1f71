"""`twinrun doctor`: this machine's environment fingerprint and each backend's determinism audit."""

import json

import click

from twinrun.cli import main
from twinrun.cli.options import json_option


@main.command()
@click.option("--timeout", default=None, metavar="SEC",
              help="Seconds each backend's audit may take before it counts as hung "
                   "(default: $TWINRUN_AUDIT_TIMEOUT, else 180).")
@json_option
def doctor(timeout, as_json):
    """Show this machine's environment and what determinism each backend gets here.

    Each backend is audited in a fresh process; one that hangs, crashes or prints nonsense
    gets one line saying so, and the others are still shown.
    """
    from twinrun.audit import audit_installed, audit_timeout
    from twinrun.environment import fingerprint_environment

    seconds = audit_timeout(timeout)
    environment = fingerprint_environment()
    audits = audit_installed(timeout=seconds)
    if as_json:
        click.echo(json.dumps({"environment": environment, "backends": audits}, default=str))
        return
    from twinrun.report.terminal import render_doctor

    render_doctor(environment, audits)
