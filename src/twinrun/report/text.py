"""Untrusted text made safe to print: data is never Rich markup, control characters are shown.

Script arguments, layer and variable names, notes, paths, error messages and environment
values come from the user or their code. A layer called `[/x]` is a name, not a Rich tag (as
markup it raises `MarkupError`), and a name holding `ESC [2J` must not clear the terminal. So
every such string goes through `printable` and into a `rich.text.Text`, never into a markup
string.
"""

from rich.text import Text

from twinrun.errors import printable  # noqa: F401 (re-exported: the report's callers use both)


def data_text(value, style=""):
    """A Rich `Text` holding `value` literally (never parsed as markup), controls escaped.

    Arguments:
        value: the untrusted value (a name, a path, a message); None gives an empty text.
        style: a Rich style for the whole text, e.g. "bold".

    Example:
    >>> data_text("[red]x", style="bold").plain
    '[red]x'
    """
    return Text(printable(value), style=style)
