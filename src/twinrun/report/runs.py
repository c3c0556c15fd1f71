"""Tables of the run store for the terminal: `twinrun runs`, `twinrun show`, `twinrun checks`.

Every value is data, never Rich markup: cells go in as `rich.text.Text`. On a terminal the
tables are Rich tables; in a pipe or a file they are aligned plain text without boxes or colour.
"""

import json
from datetime import datetime

from twinrun.report.formatting import console, duration, number, short_fingerprint

_RICH_TABLE_MAX_ROWS = 100

STATUS_STYLE = {"finished": "green", "failed": "red", "running": "yellow", "stopped": "yellow"}
VERDICT_STYLE = {"identical": "green", "diverged": "red"}


def shown_ids(out, ids, among, wide=False):
    """How each id prints: on a terminal its shortest unique prefix (8 characters or more,
    which `show`, `report` and `diff` resolve), in a pipe or with `--wide` in full."""
    if among is None or wide or not out.is_terminal:
        return {record_id: record_id for record_id in ids}
    from twinrun.report.fit import short_ids

    return short_ids(ids, among)


def render_runs(summaries, title, out=None, among=None, wide=False):
    """The table of `twinrun runs`: one row per run summary (see `Store.list_runs`).

    Arguments:
        summaries: `Store.list_runs` rows.
        title: the table's title.
        out: a Rich console (default: stdout).
        among: every id in the store (`Store.record_ids`): run ids print in their shortest
            unique form on a terminal; None prints them in full.
        wide: every column, each row on one line, ids in full.
    """
    out = out or console()
    columns = ["run id", "when", "status", "workload", "backend", "seed", "preset", "epochs",
               "test acc", "fingerprint", "wall time"]
    ids = shown_ids(out, [run["run_id"] for run in summaries], among, wide)
    rows = [
        [
            ids[run["run_id"]],
            _when(run["created_at"]),
            _styled(run["status"], STATUS_STYLE.get(run["status"])),
            run["workload"],
            run["backend"],
            seed_cell(run),
            run["preset"],
            run["epochs_trained"],
            number(run["test_accuracy"]),
            short_fingerprint(run["fingerprint"]),
            duration(wall_time(run)),
        ]
        for run in summaries
    ]
    _print_table(out, title, columns, rows,
                 right_aligned={"epochs", "test acc", "wall time"},
                 keep={"fingerprint", "seed"}, wide=wide,
                 drop_order=["preset", "backend", "when", "workload", "wall time", "epochs",
                             "fingerprint"])


def render_checks(checks, title, out=None, among=None, wide=False):
    """The table of `twinrun checks`: one row per stored check (see `Store.list_checks`);
    `among` and `wide` as in `render_runs`."""
    out = out or console()
    columns = ["check id", "when", "verdict", "replicas", "steps", "what"]
    ids = shown_ids(out, [check["check_id"] for check in checks], among, wide)
    rows = [[ids[check["check_id"]], _when(check["created_at"]),
             _styled(check["verdict"], VERDICT_STYLE.get(check["verdict"])),
             check["replicas"], check["steps_compared"], check["label"]] for check in checks]
    _print_table(out, title, columns, rows, right_aligned={"replicas", "steps"}, wide=wide,
                 drop_order=["when", "replicas"])


def render_run(run, out=None):
    """Every section of one stored run (see `Store.get_run`), for `twinrun show RUN_ID`."""
    out = out or console()
    _print_pairs(out, f"Run {run['run_id']}", [
        ("status", _styled(run["status"], STATUS_STYLE.get(run["status"]))),
        ("error", run["error"]),
        ("workload", run["workload"]),
        ("backend", run["backend"]),
        ("seed", run["seed"]),
        ("preset", run["preset"]),
        *group_pairs(run),
        ("started", _when(run["created_at"])),
        ("ended", _when(run["finished_at"])),
        ("wall time", duration(wall_time(run))),
        ("epochs", run["epochs_trained"]),
        ("fingerprint", short_fingerprint(run["fingerprint"])),
        ("artifacts", run.get("artifacts")),
    ])
    _print_pairs(out, "Config", _flat_pairs(run["config"]))
    _print_pairs(out, "Seeds", _seed_pairs(run))
    _print_determinism(out, run["determinism"])
    _print_pairs(out, "Environment", _environment_pairs(run["environment"]))
    _print_history(out, run["history"])
    _print_pairs(out, "Metrics", _flat_pairs(run["metrics"]))
    if run["extra"]:
        _print_pairs(out, "Extra", _flat_pairs(run["extra"]))


# The derived seeds as `--vary` names the sources: `shuffle` is the data order.
SEED_WORDS = {"shuffle": "order", "split_seed": "split", "perturb_seed": "perturb"}


def seed_cell(run):
    """A run's seed as `twinrun runs` lists it: the run seed, and the seeds a study varied.

    Example:
    >>> seed_cell({"seed": 0, "varied_seeds": {"shuffle": 79143651}})
    '0, order 79143651'
    """
    varied = run.get("varied_seeds") or {}
    parts = [str(run.get("seed"))]
    parts += [f"{SEED_WORDS.get(name, name)} {value}" for name, value in sorted(varied.items())]
    return ", ".join(parts)


def wall_time(run):
    """A run's wall time: from its start to its end as the store recorded them (the time a
    person waited), else the time the run measured itself.

    Example:
    >>> wall_time({"created_at": "2026-12-02T22:52:44+00:00",
    ...            "finished_at": "2026-12-02T22:53:47+00:00", "wall_time": 84.0})
    63.0
    """
    start, end = run.get("created_at"), run.get("finished_at")
    if start and end:
        try:
            return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        except ValueError:
            pass
    return run.get("wall_time")


def group_pairs(run):
    """What a run belongs to, in the words of each: a check's replica, or a study's run."""
    if run.get("check_id") is not None:
        return [("check", run["check_id"]), ("replica", run.get("replica"))]
    if run.get("study_id") is not None:
        return [("study", run["study_id"]),
                ("run in study", run.get("study_key") or run.get("replica"))]
    return []


def _echo(console, line):
    console.file.write(line + "\n")


def _styled(text, style):
    return (text, style) if style else text


def _print_table(console, title, columns, rows, right_aligned=(), show_header=True, keep=(),
                 drop_order=(), wide=False):
    """A Rich table on a terminal; aligned plain text (no boxes, no colour) in a pipe or file.

    On a terminal, ids and numbers (the first column, the `right_aligned` ones and `keep`)
    are never cut: other columns wrap, then are left out (`drop_order` first) and named under
    the table (`twinrun.report.fit`); `wide` shows every column, each row on one line, as a
    pipe does. Past `_RICH_TABLE_MAX_ROWS` rows a terminal gets the aligned layout too, with
    colour: Rich measures every cell and needs about a second for a thousand runs.
    """
    from twinrun.errors import printable

    title = printable(title)
    cells = [[printable(_plain(cell)) for cell in row] for row in rows]
    if console.is_terminal and not wide and len(rows) <= _RICH_TABLE_MAX_ROWS:
        from twinrun.report.fit import fit_columns

        kept = {columns[0], *right_aligned, *keep} if columns else set()
        fit = fit_columns(columns, cells, console.width, keep=kept, drop_order=drop_order)
        pick = fit.shown
        _print_rich_table(console, title, [columns[i] for i in pick],
                          [[row[i] for i in pick] for row in rows],
                          [[row[i] for i in pick] for row in cells], right_aligned,
                          show_header, kept, fit.widths)
        if fit.hidden:
            console.print()
            console.print(Text_(f"(not shown: {', '.join(fit.hidden)}; --wide shows all)",
                                style="dim"))
        return
    widths = [max([len(column)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]

    def aligned(value, width, column):
        return value.rjust(width) if column in right_aligned else value.ljust(width)

    if not console.is_terminal:
        _echo(console, title)
        lines = ([columns] if show_header else []) + cells
        for line in lines:
            _echo(console, "  ".join(map(aligned, line, widths, columns)).rstrip())
        _echo(console, "")
        return
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ignore")
    text.append(title + "\n", style="italic")
    if show_header:
        text.append("  ".join(map(aligned, columns, widths, columns)).rstrip() + "\n", style="bold")
    for row, plain_row in zip(rows, cells):
        for i, (cell, value, width, column) in enumerate(zip(row, plain_row, widths, columns)):
            style = cell[1] if isinstance(cell, tuple) else None
            text.append("  " if i else "")
            text.append(aligned(value, width, column), style=style)
        text.append("\n")
    console.print(text, soft_wrap=True)


def Text_(text, style=None):  # noqa: N802  (Rich's Text, imported only when printing)
    from rich.text import Text

    return Text(text, style=style or "")


def _print_rich_table(console, title, columns, rows, cells, right_aligned, show_header,
                      kept=(), widths=None):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left", show_header=show_header,
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if column in right_aligned else "left",
                         no_wrap=column in kept, overflow="fold",
                         min_width=widths[i] if widths else None)
    for row, plain_row in zip(rows, cells):
        table.add_row(*[
            Text(text, style=cell[1]) if isinstance(cell, tuple) else Text(text)
            for cell, text in zip(row, plain_row)
        ])
    console.print(table)


def _print_pairs(console, title, pairs):
    pairs = [(key, value) for key, value in pairs if value not in (None, "", [], {})]
    if pairs:
        _print_table(console, title, ["", ""], [[key, value] for key, value in pairs],
                     show_header=False)


def _print_determinism(console, determinism):
    if not determinism:
        return
    controls = determinism.get("controls") if isinstance(determinism, dict) else None
    if isinstance(controls, list) and all(isinstance(c, dict) for c in controls):
        from twinrun.report.terminal import state_style  # the verdict's colours, shared

        rows = [[c.get("name"), _styled(c.get("state"), state_style(c.get("state"))),
                 c.get("detail")] for c in controls]
        _print_table(console, "Determinism", ["control", "state", "detail"], rows)
        rest = {key: value for key, value in determinism.items() if key != "controls"}
        _print_pairs(console, "Determinism (other)", _flat_pairs(rest))
    else:
        _echo(console, "Determinism")
        # json.dumps escapes every control character itself.
        _echo(console, json.dumps(determinism, indent=2, sort_keys=True, default=str))
        _echo(console, "")


def _seed_pairs(run):
    """The run's derived seeds, each source named as `--vary` names it (`order`, not
    `shuffle`), with the split's seed when a study set it."""
    seeds = run.get("seeds") if isinstance(run.get("seeds"), dict) else {}
    pairs = [(SEED_WORDS.get(name, name) + (" (answer-demo inputs)" if name == "data" else ""),
              value) for name, value in sorted(seeds.items())]
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    for name in ("split_seed", "perturb_seed"):
        if config.get(name) is not None:
            pairs.append((SEED_WORDS[name], config[name]))
    return pairs


def _environment_pairs(env):
    if not isinstance(env, dict) or not env:
        return []
    python, system, cpu = env.get("python") or {}, env.get("os") or {}, env.get("cpu") or {}
    gpu, framework = env.get("gpu") or {}, env.get("framework") or {}
    pairs = [
        ("python", " ".join(str(part) for part in (python.get("implementation"),
                                                   python.get("version")) if part)),
        ("os", system.get("platform")),
        ("libc", system.get("libc")),
        ("host", env.get("hostname")),
        ("cpu", cpu.get("model")),
        ("cores", _cores(cpu)),
        ("threads", _compact(env.get("threads"))),
    ]
    pairs += [(name, value) for name, value in sorted((env.get("env") or {}).items()) if value]
    pairs += [(name, version) for name, version in (env.get("packages") or {}).items() if version]
    devices = gpu.get("devices") or []
    pairs += [
        ("gpu", ", ".join(str(device.get("name", device)) if isinstance(device, dict) else
                          str(device) for device in devices)),
        ("driver", gpu.get("driver")),
        ("cuda", gpu.get("cuda")),
        ("cudnn", gpu.get("cudnn")),
    ]
    if framework:
        pairs.append(("framework", f"{framework.get('name', '')} {framework.get('version', '')}".strip()))
        pairs.append(("devices", ", ".join(str(d) for d in framework.get("devices") or [])))
    return pairs


def _cores(cpu):
    cores, affinity = cpu.get("logical_cores"), cpu.get("affinity")
    if cores is None:
        return None
    if affinity is None or len(affinity) == cores:
        return str(cores)
    return f"{cores} (this process may use {len(affinity)})"


def _print_history(console, history):
    if not history:
        return
    columns = ["epoch"]
    for epoch in history:
        columns += [key for key in epoch if key not in columns]
    rows = [[epoch.get(column) for column in columns] for epoch in history]
    _print_table(console, "History", columns, rows, right_aligned=set(columns))


def _flat_pairs(values, prefix=""):
    if not isinstance(values, dict):
        return [] if values is None else [(prefix or "value", values)]
    pairs = []
    for key in sorted(values):
        value = values[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            pairs += _flat_pairs(value, name + ".")
        else:
            pairs.append((name, value))
    return pairs


def _plain(cell):
    if isinstance(cell, tuple):
        cell = cell[0]
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, float):
        return number(cell)
    if isinstance(cell, (list, dict)):
        return _compact(cell)
    return str(cell)


def _compact(value):
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _when(iso):
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso
