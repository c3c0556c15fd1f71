"""`twinrun doctor`: this machine's environment fingerprint and each backend's determinism audit."""

import json

import click

from twinrun.cli.app import main
from twinrun.cli.options import json_option


@main.command()
@click.option("--timeout", default=None, metavar="SEC",
              help="Seconds each backend's audit may take before it counts as hung "
                   "(default: $TWINRUN_AUDIT_TIMEOUT, else 180).")
@click.option("--portable", is_flag=True,
              help="Instead: the portable self-test. Train a fixed tiny torch workload under "
                   "the --portable settings at 1 and 2 threads, in fresh processes, and "
                   "compare with the bits twinrun ships (exit 0 when this CPU reproduces "
                   "them, 1 when it does not, 2 when it cannot be tested).")
@json_option
def doctor(timeout, portable, as_json):
    """Show this machine's environment and what determinism each backend gets here.

    Each backend is audited in a fresh process; one that hangs, crashes or prints nonsense
    gets one line saying so, and the others are still shown.
    """
    from twinrun.audit import audit_installed, audit_timeout
    from twinrun.environment import fingerprint_environment
    from twinrun.report.terminal import audit_progress

    seconds = audit_timeout(timeout)
    environment = fingerprint_environment()
    if portable:
        _portable(environment, as_json)
        return
    with audit_progress() as on_done:
        audits = audit_installed(timeout=seconds, on_done=on_done)
    if as_json:
        click.echo(json.dumps({"environment": environment, "backends": audits}, default=str))
        return
    from twinrun.report.terminal import render_doctor

    render_doctor(environment, audits)


def _portable(environment, as_json):
    from twinrun.portable import portable_selftest

    result = portable_selftest()
    result["cpu"] = {k: (environment.get("cpu") or {}).get(k) for k in ("model", "identity", "isa")}
    if as_json:
        click.echo(json.dumps(result))
    else:
        from twinrun.report.terminal import render_portable_selftest

        render_portable_selftest(result)
    raise SystemExit({True: 0, False: 1, None: 2}[result["reproduces"]])
