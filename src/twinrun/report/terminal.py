"""Rich renderings for the terminal; plain text when the output is not a terminal."""

import contextlib
import sys
import time

from rich.console import Console
from rich.table import Table


def console():
    return Console()


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
        table.add_row(name, value)
    out.print(table)
    if result.get("impossible_controls"):
        out.print("[yellow]Not reproducible for sure:[/] could not fix "
                  + ", ".join(result["impossible_controls"]))


ANSWER_COLUMNS = ("loss", "acc", "val_loss", "val_acc")


def render_verdict(verdict, label, out=None):
    """The verdict of `twinrun check`: replicas, identical or where they diverged, and why."""
    out = out or console()
    replicas = verdict["replicas"]
    answer_table = all(all(k in r["metrics"] for k in ANSWER_COLUMNS) for r in replicas)
    table = Table(title=f"{len(replicas)} replicas of {label}", title_justify="left")
    with_accuracy = any(r["metrics"].get("test_accuracy") is not None for r in replicas)
    table.add_column("#", justify="right")
    table.add_column("steps", justify="right")
    if answer_table:
        for name in ANSWER_COLUMNS:
            table.add_column(name, justify="right")
    else:
        table.add_column("final loss", justify="right")
        if with_accuracy:
            table.add_column("test acc", justify="right")
    table.add_column("fingerprint", no_wrap=True)
    for i, r in enumerate(replicas):
        m = r["metrics"]
        cells = [str(i), str(r["steps"])]
        if answer_table:
            cells += [f"{m[k]:.8f}" for k in ANSWER_COLUMNS]
        else:
            cells.append(_num(r.get("final_loss"), 8))
            if with_accuracy:
                cells.append(_num(m.get("test_accuracy"), 4))
        cells.append(r.get("fingerprint") or "")
        table.add_row(*cells)
    if answer_table and len(replicas) > 1:
        spread = []
        for k in ANSWER_COLUMNS:
            values = [r["metrics"][k] for r in replicas]
            ref = max(abs(v) for v in values) or 1.0
            spread.append(f"{100 * (max(values) - min(values)) / ref:.4f} %")
        table.add_row("Δ", "", *spread, "max rel. diff", style="bold")
    out.print(table)

    divergence = verdict.get("first_divergence")
    if verdict["verdict"] == "identical":
        out.print(f"[bold green]IDENTICAL[/]: every step, every tensor, same bits "
                  f"({verdict['steps_compared']} steps compared).")
    else:
        where = ("in the training data, before step 0" if divergence["step"] < 0
                 else f"at step {divergence['step']} (epoch {(divergence.get('epoch') or 0) + 1})")
        out.print(f"[bold red]DIVERGED[/] {where}: {', '.join(divergence['records'])} differ.")
        if divergence.get("variables"):
            names = divergence["variables"]
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            out.print(f"  first variables to differ: {shown}")
        layer = divergence.get("layer")
        if layer:
            kind = layer.get("class") or "layer"
            how = ("its output differed although its input was identical"
                   if not layer.get("inputs_differed") else "its input already differed")
            if layer.get("variable"):
                how = f"the gradient of {layer['variable']} differed first (backward order)"
            out.print(f"  localised to layer [bold]{layer['name']}[/] ({kind}): {how}.")
        loc = verdict.get("localization") or {}
        if loc.get("note"):
            out.print(f"  {loc['note']}")
        growth = verdict.get("loss_growth") or []
        if growth:
            picks = _growth_points(growth)
            out.print("  |Δloss| by step: " + ", ".join(
                f"{g['step']}: {g['max_abs_loss_diff']:.3g}" for g in picks))
        distance = verdict.get("weight_distance") or []
        if distance:
            out.print("  weight distance by epoch: " + ", ".join(
                f"{d['epoch']}: {d['max_relative_distance']:.3g}" for d in distance[:12]))
        for cause in verdict.get("likely_causes") or []:
            out.print(f"  likely cause: {cause}")
    diff = verdict.get("environment_diff") or []
    if diff:
        env = Table(title="environment differences", title_justify="left")
        env.add_column("key")
        for i in range(len(replicas)):
            env.add_column(f"replica {i}")
        for d in diff[:20]:
            env.add_row(d["key"], *[_short(v) for v in d["values"]])
        out.print(env)
    for note in verdict.get("notes") or []:
        out.print(f"[dim]{note}[/]")


def _growth_points(growth):
    if len(growth) <= 8:
        return growth
    step = max(1, len(growth) // 7)
    return growth[::step][:7] + [growth[-1]]


def _num(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def _short(value, width=40):
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


STATE_STYLE = {"applied": "green", "already set": "green", "not needed": "dim",
               "off": "yellow", "impossible": "bold red"}


def render_doctor(environment, audits, out=None):
    """The environment fingerprint's headline facts and one audit table per backend."""
    out = out or console()
    cpu = environment.get("cpu") or {}
    python = environment.get("python") or {}
    packages = environment.get("packages") or {}
    facts = Table(show_header=False, box=None, title="this machine", title_justify="left")
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("python", str(python.get("version")))
    facts.add_row("os", str((environment.get("os") or {}).get("platform")))
    facts.add_row("cpu", f"{cpu.get('model')} ({cpu.get('logical_cores')} logical cores)")
    gpu = environment.get("gpu") or {}
    facts.add_row("gpu", str(gpu.get("devices") or gpu.get("name") or "none"))
    for name in ("keras", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch", "numpy"):
        if packages.get(name):
            facts.add_row(name, str(packages[name]))
    out.print(facts)
    for audit in audits:
        if "error" in audit:
            out.print(f"[bold]{audit['backend']}[/]: {audit['error']}")
            continue
        table = Table(title=f"determinism on {audit['backend']}", title_justify="left")
        table.add_column("control")
        table.add_column("state")
        table.add_column("detail")
        for control in audit["controls"]:
            style = STATE_STYLE.get(control["state"], "")
            table.add_row(control["name"], f"[{style}]{control['state']}[/]" if style
                          else control["state"], control.get("detail", ""))
        out.print(table)


@contextlib.contextmanager
def replica_progress(enabled=True, out=None):
    """A live status line of each replica's state and steps while a check runs.

    Yields the callback `run_replicas` calls, or None when the output is no terminal: piped
    output stays exactly the verdict (and an error stays one sentence).
    """
    out = out or Console(file=sys.stderr)
    if not enabled or not out.is_terminal:
        yield None
        return
    last = {"shown": 0.0}
    with out.status("starting replicas ...") as status:
        def update(states):
            now = time.monotonic()
            if now - last["shown"] > 0.25:
                last["shown"] = now
                status.update("  ".join(f"{label}: {state}, {steps} steps"
                                        for label, (state, steps) in states.items()))

        yield update
