"""Cells and lines: where in a notebook a traced phase began, or a finding is.

Inside a replica's kernel each cell's code is compiled under the name `<notebook>#cell<K>`
(`twinrun.notebooks.inkernel`), so the hooks note places as `(file name, line)` as they do in
a script. The replica's cell map (`replica-N.trace.cells.json`, written by
`twinrun.notebooks.execute`) turns those names into the cell's number in the user's notebook
and its title; lines are already counted within the cell.
"""

import json
from pathlib import Path

from twinrun.notebooks.reading import describe_cell


def read_places(trace):
    """`{file name: {"number", "title"}}` of the replica that wrote `trace` (empty if none)."""
    try:
        content = json.loads(Path(f"{trace}.cells.json").read_text())
    except (OSError, ValueError):
        return {}
    places = content.get("places") if isinstance(content, dict) else None
    return places if isinstance(places, dict) else {}


def place_of(file, places):
    """The cell `file` names, as `{"cell", "title"}`, or None (the code is no cell's).

    Example:
    >>> place_of("train.ipynb#cell3", {"train.ipynb#cell3": {"number": 3, "title": "x = 1"}})
    {'cell': 3, 'title': 'x = 1', 'label': None}
    """
    name = Path(str(file)).name if file else None
    entry = places.get(name) if name else None
    if entry is None:
        return None
    return {"cell": entry.get("number"), "title": entry.get("title") or "",
            "label": entry.get("label")}


def describe_place(place, line):
    """A cell and a line within it, in words.

    Example:
    >>> describe_place({"cell": 3, "title": "for x in data:"}, 4)
    'cell 3 (`for x in data:`), line 4'
    """
    return f"{describe_cell(place['cell'], place['title'], place.get('label'))}, line {line}"


def locate_verdict(verdict, trace, notebook):
    """Say where in the notebook the verdict's phases and findings are.

    Each finding the hooks made in a cell gets `cell` and `cell_title` (its `line` is counted
    within the cell, and `file` becomes the notebook); each phase is named with the cell and
    line that started it, and the divergence with the phase it is in.

    Arguments:
        verdict: a `Verdict`, changed in place.
        trace: replica 0's trace (its side files hold the phases and the cell map).
        notebook: the notebook's path, as the user named it.
    """
    from twinrun.hooks import trace_phases

    places = read_places(trace)
    for finding in verdict.findings:
        place = place_of(finding.get("file"), places) if finding.get("source") != "lint" \
            else None
        if place is not None:
            finding.update(file=str(notebook), cell=place["cell"], cell_title=place["title"])
            # The hooks word their findings for a script.
            for key in ("title", "why"):
                if isinstance(finding.get(key), str):
                    finding[key] = finding[key].replace("the script", "the notebook") \
                        .replace("Run as plain `python`", "Run in a kernel of its own")
            if place["label"]:
                finding["cell_label"] = place["label"]
    located = []
    for phase in trace_phases(trace):
        place = place_of(phase.get("file"), places)
        entry = {"name": phase["name"], "first_step": phase["first_step"]}
        if place is not None:
            entry.update(cell=place["cell"], cell_title=place["title"], line=phase.get("line"),
                         cell_label=place["label"])
        located.append(entry)
    divergence = verdict.first_divergence
    current = None
    if divergence is not None and divergence.step is not None and divergence.step >= 0:
        for entry in located:
            if entry["first_step"] <= divergence.step:
                current = entry
    verdict.notebook = {"path": str(notebook), "phases": located,
                        "divergence_phase": current["name"] if current else None}
    notes = []
    for entry in located:
        if "cell" in entry:
            place = {"cell": entry["cell"], "title": entry["cell_title"],
                     "label": entry["cell_label"]}
            notes.append(f"{entry['name']} was trained by {describe_place(place, entry['line'])}"
                         f" of {notebook}.")
    if current is not None and "cell" in current:
        where = describe_cell(current["cell"], current["cell_title"], current["cell_label"])
        notes.append(f"The divergence at step {divergence.step} is in {where}, which trained "
                     f"{current['name']}.")
    verdict.notes[:0] = notes
    return verdict
