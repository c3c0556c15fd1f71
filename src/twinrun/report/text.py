"""Untrusted text made safe to print: data is never Rich markup, control characters are shown.

Script arguments, layer and variable names, notes, paths, error messages and environment
values come from the user or their code. A layer called `[/x]` is a name, not a Rich tag (as
markup it raises `MarkupError`), and a name holding `ESC [2J` must not clear the terminal. So
every such string goes through `printable` and into a `rich.text.Text`, never into a markup
string.
"""

from rich.text import Text

# C0 controls, DEL and the C1 controls (some terminals read U+009B as the escape sequence
# introducer CSI, just like ESC [).
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
_ESCAPED = {code: f"\\x{code:02x}" for code in _CONTROLS}
_KEEP_LINES = {code: text for code, text in _ESCAPED.items() if code not in (0x09, 0x0A)}


def printable(value, lines=False):
    """`str(value)` with every terminal control character written as `\\xNN`.

    Arguments:
        value: any object; None becomes "".
        lines: keep newlines and tabs (for a message with an output tail); every other
            control character, CR included, is still escaped.

    Example:
    >>> printable("\\x1b[2J[/x]")
    '\\\\x1b[2J[/x]'
    >>> printable("a\\nb", lines=True)
    'a\\nb'
    """
    if value is None:
        return ""
    return str(value).translate(_KEEP_LINES if lines else _ESCAPED)


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
