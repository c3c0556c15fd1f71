"""Names, arguments and messages from the user's code are printed as text, never as Rich markup.

A layer called `[/x]` is a name, not a closing tag (as markup it raised `MarkupError` after both
replicas had trained), `[red]x` must not colour anything, and `ESC [2J` must not clear the
terminal: it is shown as `\\x1b[2J`.
"""

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from rich.style import Style

from conftest import run_cli
from twinrun.report.terminal import determinism_table, render_verdict
from twinrun.report.text import data_text, printable

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = SCRIPTS / "torch_markup_names.py"
TAG = "[/x] [red]x \x1b[2J"
# Wide enough that Rich does not wrap a line through a name (it reads COLUMNS when piped).
WIDE = {"COLUMNS": "1000"}


# printable / data_text


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2J", "\\x1b[2J"),
    ("carriage\rreturn", "carriage\\x0dreturn"),
    ("del\x7f", "del\\x7f"),
    ("csi\x9b2J", "csi\\x9b2J"),
    ("two\nlines\tand a tab", "two\\x0alines\\x09and a tab"),
    ("[/x] [red]x", "[/x] [red]x"),
    ("Ünïcode ✓", "Ünïcode ✓"),
])
def test_printable_escapes_every_terminal_control_character_and_nothing_else(raw, shown):
    assert printable(raw) == shown


def test_printable_can_keep_the_lines_of_a_message_but_still_escapes_carriage_returns():
    assert printable("tail:\n\tline\r\x1b[1m", lines=True) == "tail:\n\tline\\x0d\\x1b[1m"


def test_data_text_is_never_parsed_as_markup():
    out = Console(file=StringIO(), force_terminal=True, color_system="standard", width=200)
    out.print(data_text("[/x] [red]x [bold]y[/bold]"))
    printed = out.file.getvalue()
    assert "[/x] [red]x [bold]y[/bold]" in printed
    assert "\x1b[31m" not in printed and "\x1b[1m" not in printed


# the verdict of a real check


def check_markup_script(*args, store, options=()):
    return run_cli("check", "-n", "2", "--store", store, *options,
                   "--", "python", SCRIPT, "--tag", TAG, *args, env=WIDE)


@pytest.mark.slow
def test_an_identical_check_prints_markup_and_control_characters_literally_and_exits_0(store):
    completed = check_markup_script(store=store)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert "IDENTICAL" in completed.stdout
    assert printable(TAG) in completed.stdout  # the check's label, with \x1b escaped
    assert "\x1b" not in completed.stdout


@pytest.mark.slow
def test_a_diverging_check_prints_layer_and_variable_names_literally_and_exits_1(store):
    completed = check_markup_script("--diverge", store=store)
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    out = completed.stdout
    assert "\x1b" not in out
    assert printable(TAG) in out
    assert "DIVERGED at step 1 (epoch 1)" in out
    variables = next(line for line in out.splitlines() if "first variables to differ" in line)
    for name in ("[red]x", "[/x].weight", "\\x1b[2J.weight", "\\x1b[2J.bias"):
        assert name in variables
    assert "localised to layer [/x] (Offset): its output differed although its input was " \
           "identical." in out


@pytest.mark.slow
def test_the_text_verdict_counts_steps_and_epochs_as_the_json_verdict_does(store):
    completed = check_markup_script("--diverge", "--steps", "4", "--epoch-steps", "2",
                                    "--diverge-from", "3", store=store,
                                    options=["--json", "--no-localize"])
    assert completed.returncode == 1, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    divergence = verdict["first_divergence"]
    # Step 3 with 2 steps an epoch is the second epoch's second step: epochs count from 1.
    assert (divergence["step"], divergence["epoch"]) == (3, 2)
    out = Console(file=StringIO(), width=1000)
    render_verdict(verdict, "the script", out=out)
    text = out.file.getvalue()
    assert "DIVERGED at step 3 (epoch 2)" in text
    growth = verdict["loss_growth"]
    assert f"|Δloss| by step: {growth[0]['step']}: " in text
    distance = verdict["weight_distance"]
    assert distance, verdict
    assert "weight distance at the end of epoch: " + ", ".join(
        f"{d['epoch']}: {d['max_relative_distance']:.3g}" for d in distance) in text


# determinism states, as `doctor` (and `show`) colour them

# The meaning of each state's colour: green done, dim nothing to do, yellow turned off by the
# user, bold red a reason the run may not repeat.
EXPECTED_STYLE = {"applied": "green", "already set": "green", "not needed": "dim",
                  "off": "yellow", "impossible": "bold red"}


def test_every_state_the_determinism_code_defines_has_its_colour():
    from twinrun.determinism.common import STATES
    from twinrun.report.terminal import state_style

    assert set(STATES) == set(EXPECTED_STYLE)
    for state in STATES:
        assert state_style(state) == EXPECTED_STYLE[state], state

_REPORTS = """
import json, os, twinrun
reports = [twinrun.deterministic(0, backend="torch").to_dict()]  # PYTHONHASHSEED=0: already set
os.environ.pop("PYTHONHASHSEED")
reports.append(twinrun.deterministic(0, backend="torch").to_dict())  # impossible
reports.append(twinrun.deterministic(0, backend="torch", determinism=False).to_dict())  # off
print(json.dumps(reports))
"""


@pytest.fixture(scope="module")
def real_reports():
    """Determinism reports the code produces: set up, hash seed unfixable, and switched off."""
    import os

    env = dict(os.environ, PYTHONHASHSEED="0")
    completed = subprocess.run([sys.executable, "-c", _REPORTS], env=env, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_real_determinism_reports_cover_the_states_a_user_meets(real_reports):
    states = {c["state"] for report in real_reports for c in report["controls"]}
    assert {"applied", "already set", "off", "impossible"} <= states
    assert states <= set(EXPECTED_STYLE), f"a state without a colour: {states - set(EXPECTED_STYLE)}"


def test_each_determinism_state_is_coloured_for_what_it_means(real_reports):
    out = Console(file=StringIO(), force_terminal=True, color_system="standard", width=300)
    seen = set()
    for report in real_reports:
        states = {c["state"] for c in report["controls"]}
        for segment in out.render(determinism_table(report)):
            state = segment.text.strip()
            if state in states and segment.style is not None:
                expected = Style.parse(EXPECTED_STYLE[state])
                assert segment.style.color == expected.color, (state, segment.style)
                assert bool(segment.style.bold) == bool(expected.bold), (state, segment.style)
                assert bool(segment.style.dim) == bool(expected.dim), (state, segment.style)
                seen.add(state)
    assert {"applied", "already set", "off", "impossible"} <= seen
