"""Rich renderings for the terminal; plain text when the output is not a terminal."""

import contextlib
import sys
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from twinrun.report.formatting import console, duration, fixed, short_fingerprint, where
from twinrun.report.text import data_text, printable


def render_run_result(result, out=None):
    """One finished run: its id, seed, epochs, test metrics and weights fingerprint."""
    out = out or console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("run", result.get("run_id") or "(not recorded)"),
        ("workload", f"{result['workload']} ({result['preset']}) on {result['backend']}"),
        ("seed", str(result["seed"])),
        ("determinism", "on" if result.get("determinism") else "off"),
        ("epochs trained", f"{result['epochs_trained']} (best val_loss {result['best_val_loss']:.5f} "
                           f"at epoch {result['best_epoch']})"),
        ("test accuracy", f"{result['test_accuracy']:.4f}"),
        ("test loss", f"{result['test_loss']:.5f}"),
        ("fingerprint", result["fingerprint"]),
        ("wall time", f"{result['wall_time']:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, data_text(value))
    out.print(table)
    if result.get("impossible_controls"):
        out.print(Text.assemble(("Not reproducible for sure:", "yellow"), " could not fix ",
                                data_text(", ".join(result["impossible_controls"]))))


ANSWER_COLUMNS = ("loss", "acc", "val_loss", "val_acc")


def render_verdict(verdict, label, out=None, headline=True):
    """The verdict of `twinrun check`: replicas, identical or where they diverged, and why.

    Every name in it (the command, layers, variables, paths, notes) is printed as text, never
    read as Rich markup, with control characters escaped. Steps and epochs are printed as the
    JSON verdict holds them, counted as everywhere in twinrun: steps from 0 (step 0 is the first
    optimizer step), epochs from 1 (`first_divergence.epoch`, and `weight_distance[].epoch`,
    the epoch whose end was measured).

    Arguments:
        verdict: `Verdict.to_dict()`.
        label: what was checked (the command line or the workload's name).
        out: a Rich console (default: stdout).
        headline: open with the verdict's headline (`render_check_headline`); the caller
            printed it already when False.
    """
    out = out or console()
    if headline:
        render_check_headline(verdict, out)
    replicas = verdict["replicas"]
    answer_table = all(all(k in r["metrics"] for k in ANSWER_COLUMNS) for r in replicas)
    # Against a recorded reference, row 0 is the recording, not a replica run now.
    row_names = [r.get("label") if r.get("label") == "reference" else str(i)
             for i, r in enumerate(replicas)]
    if verdict.get("reference"):
        runs = len(replicas) - 1
        title = Text.assemble(f"the reference and {runs} run{'s' if runs != 1 else ''} of ",
                              data_text(label))
    else:
        title = Text.assemble(f"{len(replicas)} replicas of ", data_text(label))
    # Every cell is a number or a fingerprint, which a cut would change: no cell is cut, and
    # the light frame leaves the five answer columns room at 80 columns.
    from rich import box

    out.print(title, soft_wrap=not out.is_terminal)  # as wide as it is, not the table
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    with_accuracy = any(r["metrics"].get("test_accuracy") is not None for r in replicas)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    if answer_table:
        for name in ANSWER_COLUMNS:
            table.add_column(name, justify="right", no_wrap=True)
    else:
        table.add_column("final loss", justify="right", no_wrap=True)
        if with_accuracy:
            table.add_column("test acc", justify="right", no_wrap=True)
    table.add_column("fingerprint", no_wrap=True)
    for i, r in enumerate(replicas):
        m = r["metrics"]
        cells = [row_names[i], str(r["steps"])]
        if answer_table:
            cells += [f"{m[k]:.8f}" for k in ANSWER_COLUMNS]
        else:
            cells.append(fixed(r.get("final_loss"), 8))
            if with_accuracy:
                cells.append(fixed(m.get("test_accuracy"), 4))
        cells.append(short_fingerprint(r.get("fingerprint")))
        table.add_row(*map(data_text, cells))
    if answer_table and len(replicas) > 1:
        spread = []
        for k in ANSWER_COLUMNS:
            values = [r["metrics"][k] for r in replicas]
            ref = max(abs(v) for v in values) or 1.0
            spread.append(f"{100 * (max(values) - min(values)) / ref:.4f} %")
        table.add_row(*map(Text, ["Δ", "", *spread, "max rel. diff"]), style="bold")
    out.print(table)

    divergence = verdict.get("first_divergence")
    if verdict["verdict"] == "identical":
        out.print(Text.assemble(("IDENTICAL", "bold green"),
                                ": every step, every tensor, same bits "
                                f"({verdict['steps_compared']} steps compared)."))
    elif divergence.get("digest"):
        digest = divergence["digest"]
        point = ("the run's end" if digest["at"] == "end"
                 else f"the end of {digest['at']}")
        out.print(Text.assemble(("DIVERGED", "bold red"), " ", where(divergence),
                                ": the exact digest of the whole state at ", data_text(point),
                                " differs, although every step's words and losses up to it agreed."))
        out.print(Text.assemble("  exact digests: ",
                                data_text(" vs ".join(str(d) for d in digest["digests"]))))
    else:
        out.print(Text.assemble(("DIVERGED", "bold red"), " ", where(divergence), ": ",
                                data_text(", ".join(divergence["records"])), " differ."))
    if verdict["verdict"] != "identical":
        if divergence.get("variables"):
            names = divergence["variables"]
            shown = _names(names[:6])
            if len(names) > 6:
                shown.append(f" and {len(names) - 6} more")
            out.print(Text.assemble("  first variables to differ: ", *shown))
        layer = divergence.get("layer")
        if layer:
            kind = layer.get("class") or "layer"
            how = Text("its output differed although its input was identical"
                       if not layer.get("inputs_differed") else "its input already differed")
            if layer.get("variable"):
                how = Text.assemble("the gradient of ", data_text(layer["variable"], "bold"),
                                    " differed first (backward order)")
            out.print(Text.assemble("  localised to layer ", data_text(layer["name"], "bold"),
                                    " (", data_text(kind), "): ", how, "."))
        loc = verdict.get("localization") or {}
        if loc.get("note"):
            out.print(Text.assemble("  ", data_text(loc["note"])))
        growth = verdict.get("loss_growth") or []
        if growth:
            picks = _growth_points(growth)
            out.print(Text("  |Δloss| by step: " + ", ".join(
                f"{g['step']}: {g['max_abs_loss_diff']:.3g}" for g in picks)))
        distance = verdict.get("weight_distance") or []
        if distance:
            out.print(Text("  weight distance at the end of epoch: " + ", ".join(
                f"{d['epoch']}: {d['max_relative_distance']:.3g}" for d in distance[:12])))
        for cause in verdict.get("likely_causes") or []:
            out.print(Text.assemble("  likely cause: ", data_text(cause)))
    diff = verdict.get("environment_diff") or []
    if diff:
        env = Table(title="environment differences", title_justify="left")
        env.add_column("key")
        for name in row_names:
            env.add_column(name if name == "reference" else f"replica {name}")
        for d in diff[:20]:
            env.add_row(data_text(d["key"]), *[data_text(_short(v)) for v in d["values"]])
        out.print(env)
    for note in verdict.get("notes") or []:
        out.print(data_text(note, "dim"))


HEADLINE_STYLE = {"identical": "bold green", "within_tolerance": "bold green",
                  "diverged": "bold red", "recorded": "bold"}


def render_check_headline(verdict, out=None):
    """The verdict's one sentence, then the finding that explains a divergence, with its
    `file:line`, code and fix (`twinrun.report.headline.check_reading`)."""
    from twinrun.report.headline import check_reading

    out = out or console()
    reading = check_reading(verdict)
    out.print(data_text(reading["headline"], HEADLINE_STYLE.get(verdict.get("verdict"), "bold")),
              soft_wrap=not out.is_terminal)
    culprit = reading["culprit"]
    if culprit:
        out.print(Text.assemble("  at ", data_text(culprit["where"], "bold"), ": ",
                                data_text(culprit.get("title") or "")),
                  soft_wrap=not out.is_terminal)
        if culprit.get("code"):
            out.print(Text.assemble("    ", data_text(culprit["code"])),
                      soft_wrap=not out.is_terminal)
        if culprit.get("fix"):
            out.print(Text.assemble("    fix: ", data_text(culprit["fix"])),
                      soft_wrap=not out.is_terminal)
    out.print()


def _names(names):
    parts = []
    for i, name in enumerate(names):
        if i:
            parts.append(", ")
        parts.append(data_text(name))
    return parts


def _growth_points(growth):
    if len(growth) <= 8:
        return growth
    step = max(1, len(growth) // 7)
    return growth[::step][:7] + [growth[-1]]


def _short(value, width=40):
    text = printable(value)
    return text if len(text) <= width else text[: width - 1] + "…"


# The colour of each determinism state (`twinrun.determinism.common.STATES`), in `doctor` and
# `show`: green = done, dim = nothing to do here, yellow = the user turned it off, bold red = a
# reason the run may not repeat (a thread pool that could not be pinned included). A state
# missing here is shown yellow.
STATE_STYLE = {"applied": "green", "already set": "green", "not needed": "dim",
               "off": "yellow", "impossible": "bold red"}
UNKNOWN_STATE_STYLE = "yellow"


def state_style(state):
    """The Rich style of a determinism control's state (see `STATE_STYLE`).

    Example:
    >>> state_style("impossible")
    'bold red'
    """
    return STATE_STYLE.get(str(state), UNKNOWN_STATE_STYLE)


def determinism_table(report, title=None):
    """A determinism report (`DeterminismReport.to_dict()`) as a table of coloured states.

    Arguments:
        report: a dict with `controls`, each with `name`, `state` and `detail`.
        title: the table's title (default: "determinism on BACKEND").

    Example:
    >>> table = determinism_table({"backend": "torch", "controls": [
    ...     {"name": "torch.manual_seed", "state": "applied", "detail": "seed 1"}]})
    >>> table.row_count
    1
    """
    if title is None:
        title = Text.assemble("determinism on ", data_text(report.get("backend")))
    table = Table(title=title, title_justify="left")
    # A control's name is what a person searches for: never cut; the detail wraps instead.
    table.add_column("control", no_wrap=True, min_width=max(
        [7] + [len(str(c.get("name"))) for c in report.get("controls") or []]))
    table.add_column("state", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for control in report.get("controls") or []:
        state = control.get("state")
        table.add_row(data_text(control.get("name")), data_text(state, state_style(state)),
                      data_text(control.get("detail")))
    return table


def render_doctor(environment, audits, out=None, portable=None):
    """The one-line summary (`twinrun.report.headline.doctor_headline`), the environment
    fingerprint's headline facts and one audit table per backend; `portable` is the
    portability check's answer (None: not checked)."""
    from twinrun.report.headline import doctor_headline

    out = out or console()
    out.print(data_text(doctor_headline(environment, audits, portable), "bold"),
              soft_wrap=not out.is_terminal)
    out.print()
    cpu = environment.get("cpu") or {}
    python = environment.get("python") or {}
    packages = environment.get("packages") or {}
    facts = Table(show_header=False, box=None, title="this machine", title_justify="left")
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("python", data_text(python.get("version")))
    facts.add_row("os", data_text((environment.get("os") or {}).get("platform")))
    facts.add_row("cpu", data_text(f"{cpu.get('model')} ({cpu.get('logical_cores')} logical cores)"))
    gpu = environment.get("gpu") or {}
    facts.add_row("gpu", data_text(gpu.get("devices") or gpu.get("name") or "none"))
    for name in ("keras", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch", "numpy"):
        if packages.get(name):
            facts.add_row(name, data_text(packages[name]))
    out.print(facts)
    for audit in audits:
        if "error" in audit:
            out.print(Text.assemble(data_text(audit["backend"], "bold"), ": ",
                                    data_text(audit["error"])))
            continue
        out.print(determinism_table(audit))


def render_portable_selftest(result, out=None):
    """`twinrun doctor --portable`: the CPU, each run's digests against the shipped ones, and
    the one-sentence conclusion."""
    out = out or console()
    cpu = result.get("cpu") or {}
    described = " ".join(str(v) for v in (cpu.get("model"), cpu.get("identity") and
                                          f"({cpu['identity']})") if v)
    out.print(Text.assemble(("cpu ", "bold"), data_text(described or "unknown"), ", widest "
                            "vector instructions ", data_text(cpu.get("isa") or "unknown")))
    if result.get("runs"):
        expected = result.get("expected") or {}
        table = Table(title="portable self-test (torch, 20 steps)", title_justify="left")
        table.add_column("threads")
        table.add_column("torch kernels")
        for column in ("matmul", "trained"):  # digests are for copying: never cut
            table.add_column(column, no_wrap=True, min_width=16)
        table.add_column("first difference")
        for run in result["runs"]:
            where = run.get("first_difference")
            place = ("none" if where is None else "matmul" if where["step"] == -1
                     else "final weights" if where["step"] is None
                     else f"step {where['step']}, {where['tensor']}")
            table.add_row(data_text(run.get("threads")), data_text(run.get("cpu_capability")),
                          _digest_cell(run.get("matmul"), expected.get("matmul")),
                          _digest_cell(run.get("trained"), expected.get("trained")),
                          data_text(place, "green" if where is None else "red"))
        out.print(table)
    style = {True: "green", False: "red"}.get(result.get("reproduces"), "yellow")
    out.print(data_text(result.get("message"), style))


def _digest_cell(value, expected):
    return data_text(value, "green" if value == expected else "red")


# Before this many seconds a doctor run says nothing about its progress: a quick one stays
# quiet, a slow one (a framework's first import can take half a minute) says what it waits on.
SLOW_PROBE_S = 2.0


@contextlib.contextmanager
def audit_progress(out=None):
    """Progress of `twinrun doctor`'s audits on stderr, once they take more than
    `SLOW_PROBE_S`: one plain line saying what runs, then one as each backend's audit ends (a
    terminal gets the same lines; stdout stays the result). Yields `audit_installed`'s
    `on_done`."""
    import threading

    out = out or Console(file=sys.stderr, soft_wrap=True)
    started = time.monotonic()
    lock = threading.Lock()
    said = {"opening": False}

    def opening():
        with lock:
            if not said["opening"]:
                said["opening"] = True
                out.print(Text("doctor: auditing each installed backend in a fresh process "
                               "(importing a framework can take half a minute) ..."))

    timer = threading.Timer(SLOW_PROBE_S, opening)
    timer.daemon = True
    timer.start()

    def on_done(audit):
        if time.monotonic() - started < SLOW_PROBE_S:
            return
        opening()
        with lock:
            outcome = "failed" if audit.get("error") else "audited"
            out.print(Text.assemble("doctor: ", data_text(audit.get("backend")),
                                    f" {outcome} after {time.monotonic() - started:.0f} s"))

    try:
        yield on_done
    finally:
        timer.cancel()


class ReplicaSteps:
    """How far a check's replicas are, and when they should be done, from their step counts.

    Arguments:
        expected_steps: the steps one replica trains at most (None when unknown: a script).

    Example:
    >>> seen = ReplicaSteps(100)
    >>> seen.line({"replica 0": ("running", 1), "replica 1": ("running", 0)}, now=5.0)
    'replica 0: running, 1/100 steps  replica 1: running, 0/100 steps'
    >>> seen.line({"replica 0": ("running", 50), "replica 1": ("running", 49)}, now=15.0)
    'replica 0: running, 50/100 steps  replica 1: running, 49/100 steps  ETA 10.3 s'
    """

    def __init__(self, expected_steps=None):
        self.expected_steps = expected_steps
        self.first = None  # (time, steps of all replicas) at the first step: after start-up

    def line(self, states, now=None):
        now = time.monotonic() if now is None else now
        of = f"/{self.expected_steps}" if self.expected_steps else ""
        text = "  ".join(f"{label}: {state}, {steps}{of} steps"
                         for label, (state, steps) in states.items())
        done = sum(steps for _, steps in states.values())
        if self.first is None:
            if done:
                self.first = (now, done)
            return text
        eta = self._eta(states, now, done)
        return text + (f"  ETA {eta}" if eta else "")

    def _eta(self, states, now, done):
        began, steps_then = self.first
        if not self.expected_steps or done <= steps_then or now <= began:
            return None
        rate = (done - steps_then) / (now - began)  # steps of all replicas together per second
        left = sum(max(0, self.expected_steps - steps) for state, steps in states.values()
                   if state != "done")
        return duration(left / rate)


@contextlib.contextmanager
def replica_progress(enabled=True, out=None, plain=None, every=30.0):
    """Each replica's state and steps, and the time left, while a check runs.

    On a terminal a live status line (on stderr); otherwise, unless `enabled` is False
    (`--json`), a plain line on stdout every `every` seconds, before the verdict, so a piped
    `make run` shows it is alive and an error stays the one sentence on stderr.

    Yields the callback `run_replicas` calls: `update(states, expected_steps=None)`, where
    `expected_steps` is what one replica trains at most, when known; or None when disabled.
    """
    out = out or Console(file=sys.stderr)
    if not enabled:
        yield None
        return
    seen = ReplicaSteps()

    def updater(show, interval, shown):
        last = {"shown": shown}

        def update(states, expected_steps=None):
            seen.expected_steps = expected_steps or seen.expected_steps
            text = seen.line(states)
            now = time.monotonic()
            if now - last["shown"] >= interval:
                last["shown"] = now
                show(data_text(text))
        return update

    if not out.is_terminal:
        plain = plain or Console(file=sys.stdout, highlight=False)
        # The first plain line comes `every` seconds after the start, not at once.
        yield updater(lambda text: plain.print(text, soft_wrap=True), every, time.monotonic())
        return
    with out.status("starting replicas ...") as status:
        yield updater(status.update, 0.25, 0.0)
