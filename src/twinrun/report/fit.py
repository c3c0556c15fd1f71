"""Fitting a table to a terminal without cutting what a person copies.

Ids and numbers keep their full width: a cut id cannot be pasted into `twinrun show`, and a cut
number is a different number. When the row is wider than the terminal, the other columns give
way first: a text column wraps (down to a few characters), and when that is not enough, whole
columns are left out, in the order the table names, and the table says which (`--wide` shows
every column).
"""

import re
from dataclasses import dataclass

# Space between two columns: a cell's padding on both sides and the blank rule between.
GAP = 3
# A wrapping column narrower than this reads as a column of single letters; one wider than
# its longest word (up to LONGEST_WORD) never splits a date or a word.
MIN_WRAPPED = 8
LONGEST_WORD = 12
# Characters a shortened id keeps after its kind word (`cv-`, `check-`, `variance-`).
KIND_TAIL = 4


@dataclass(frozen=True)
class Fit:
    """Which columns a table shows at a width.

    Arguments:
        shown: the indices of the columns kept, in order.
        hidden: the names of the columns left out, in the order they were dropped.
        widths: each kept column's width: in full for a `keep` column, else the narrowest it
            may wrap to.
    """

    shown: list
    hidden: list
    widths: list


def fit_columns(columns, cells, width, *, keep=(), drop_order=()):
    """The columns of a table that fit `width` with every `keep` column at full width.

    Arguments:
        columns: the header names.
        cells: the rows, as lists of plain strings.
        width: the terminal's width.
        keep: names never cut (ids, numbers); they wrap never and are dropped last.
        drop_order: names to leave out first, in order; the rest are left out from the right,
            the first column (a row's id) never.

    Example:
    >>> fit = fit_columns(["id", "when", "note", "n"],
    ...                   [["20261202-003251-8", "2026-12-02 00:32:51", "a long note", "7"]],
    ...                   32, keep={"id", "n"}, drop_order=["when"])
    >>> [["id", "when", "note", "n"][i] for i in fit.shown], fit.hidden
    (['id', 'note', 'n'], ['when'])
    """
    natural = [max([len(column)] + [len(row[i]) for row in cells])
               for i, column in enumerate(columns)]
    narrowest = [min(natural[i], max([MIN_WRAPPED] + [min(len(word), LONGEST_WORD)
                                                      for row in cells
                                                      for word in row[i].split()]))
                 for i in range(len(columns))]
    least = [natural[i] if column in keep else narrowest[i] for i, column in enumerate(columns)]
    shown = list(range(len(columns)))
    order = [columns.index(name) for name in drop_order if name in columns]
    order += [i for i in reversed(range(1, len(columns))) if i not in order
              and columns[i] not in keep]
    order += [i for i in reversed(range(1, len(columns))) if i not in order]
    hidden = []

    def needed():
        return GAP * (len(shown) - 1) + sum(least[i] for i in shown)

    for i in order:
        if needed() <= width:
            break
        shown.remove(i)
        hidden.append(columns[i])
    return Fit(shown=shown, hidden=hidden, widths=[least[i] for i in shown])


def shortest_unique(record_id, among, minimum=8):
    """The shortest prefix of `record_id`, at least `minimum` characters, that no other id in
    `among` starts with: what `show`, `report` and `diff` resolve back to `record_id`.

    A prefix never ends on a separator (`-`), which would read as a cut, and keeps at least
    `KIND_TAIL` characters after a kind word (`variance-`, `check-`), so it reads as an id and
    names which kind of record it is.

    Example:
    >>> ids = ["20261202-003251-82dfce", "20261202-003251-996bd4", "cv-cdc139fd75",
    ...        "variance-0ed6b6a1c9"]
    >>> [shortest_unique(i, ids) for i in ids]
    ['20261202-003251-8', '20261202-003251-9', 'cv-cdc13', 'variance-0ed6']
    """
    others = [other for other in among if other != record_id]
    kind = re.match(r"[a-z]+-", record_id)
    least = max(minimum, len(kind.group(0)) + KIND_TAIL if kind else 0)
    length = min(least, len(record_id))
    while length < len(record_id):
        prefix = record_id[:length]
        if not prefix.endswith("-") and not any(other.startswith(prefix) for other in others):
            return prefix
        length += 1
    return record_id


def short_ids(ids, among, minimum=8):
    """`{id: shortest_unique(id)}` for each of `ids`, made unique among `among`.

    Sorting once makes this fast for a store of thousands: only an id's neighbours in sorted
    order can share its longest prefix.

    Example:
    >>> short_ids(["check-20261202-003243-7bc40a"], ["check-20261202-003243-7bc40a",
    ...                                             "check-20261202-003251-9f1481"])
    {'check-20261202-003243-7bc40a': 'check-20261202-00324'}
    """
    ordered = sorted(set(among) | set(ids))
    position = {record_id: i for i, record_id in enumerate(ordered)}
    shown = {}
    for record_id in ids:
        i = position[record_id]
        neighbours = ordered[max(i - 1, 0):i] + ordered[i + 1:i + 2]
        shown[record_id] = shortest_unique(record_id, neighbours, minimum)
    return shown
