"""A finding: one reproducibility pitfall in a script, with its line, why it matters and the fix."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    """One pitfall `twinrun lint` found.

    `rule` is a short stable name (`hash-seed-in-python`, `misspelt-env-var`, ...), `line` and
    `column` where it is (1-based line, 0-based column, as Python's `ast` counts), `code` the
    source line as written, `title` what was found, `why` what it does to reproducibility, and
    `fix` what to write instead.
    """

    rule: str
    line: int
    column: int
    code: str
    title: str
    why: str
    fix: str

    def to_dict(self):
        return asdict(self)
