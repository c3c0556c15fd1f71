"""`twinrun lint SCRIPT`: name the reproducibility pitfalls in a training script, by line."""

import json

import click

from twinrun.cli.app import main

# The linter and Rich are imported inside the command, like the other command modules, so that
# `twinrun --help` stays instant.


@main.command()
@click.argument("script")
@click.option("--strict", is_flag=True,
              help="Exit 1 when there is any finding (for CI); without it lint only informs.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def lint(script, strict, as_json):
    """Read SCRIPT (without running it) and name each reproducibility pitfall: its line, why
    it matters, and the fix. A notebook (.ipynb) is read cell by cell: each finding names its
    cell and the line in it; magics and shell lines are skipped.

    Exit status: 0, also with findings; with --strict 1 when there are findings; 2 when SCRIPT
    cannot be read or is not Python.
    """
    from twinrun.notebooks.reading import is_notebook

    if is_notebook(script):
        _lint_notebook(script, strict, as_json)
        return
    from twinrun.lint import lint_file
    from twinrun.report.lint import findings_json, render_findings

    findings = lint_file(script)
    if as_json:
        click.echo(json.dumps(findings_json(findings, script), indent=2))
    else:
        render_findings(findings, script)
    if strict and findings:
        raise SystemExit(1)


def _lint_notebook(path, strict, as_json):
    from twinrun.lint.notebook import lint_notebook, notebook_findings_json
    from twinrun.report.lint import render_notebook_findings

    findings = lint_notebook(path)
    if as_json:
        click.echo(json.dumps(notebook_findings_json(findings, path), indent=2))
    else:
        render_notebook_findings(findings, path)
    if strict and findings:
        raise SystemExit(1)
