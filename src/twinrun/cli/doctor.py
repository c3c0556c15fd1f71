"""`twinrun doctor`: this machine's environment fingerprint and each backend's determinism audit."""

import json

import click

from twinrun.cli import main
from twinrun.cli.options import json_option


@main.command()
@json_option
def doctor(as_json):
    """Show this machine's environment and what determinism each backend gets here."""
    from twinrun.audit import audit_installed
    from twinrun.environment import fingerprint_environment

    environment = fingerprint_environment()
    audits = audit_installed()
    if as_json:
        click.echo(json.dumps({"environment": environment, "backends": audits}, default=str))
        return
    from twinrun.report.terminal import render_doctor

    render_doctor(environment, audits)
