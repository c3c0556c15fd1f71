"""Pieces more than one HTML page uses: the run status badge, times, flattened settings and the
environment's headline facts (the same rows as `twinrun show`)."""

from datetime import datetime

from twinrun.report.html.page import tag
# The terminal's `twinrun show` already chooses which environment facts matter and flattens
# nested settings; the page shows the same rows rather than a second opinion.
from twinrun.report.runs import _environment_pairs, _flat_pairs

GOOD = {"finished", "identical"}


def status_badge(status):
    """A coloured badge: green for finished / identical, red otherwise."""
    return tag("span", status or "unknown", class_="verdict " + ("good" if status in GOOD else "bad"))


def when(iso):
    """An ISO timestamp as local `YYYY-MM-DD HH:MM:SS`, or as given when it is not one."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(iso)


def flat_pairs(values):
    """Nested settings as (dotted.name, value) rows."""
    return _flat_pairs(values)


def environment_pairs(environment):
    """The environment fingerprint's headline facts as (name, value) rows."""
    return _environment_pairs(environment)
