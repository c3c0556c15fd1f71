"""A parsed script as the rules see it: its tree, its lines, its imports, each node's parent."""

import ast

from twinrun.lint.findings import Finding
from twinrun.lint.names import dotted, import_aliases


class Script:
    """One parsed Python file, with what every rule needs to look things up.

    Arguments:
        source: the file's text (or bytes, decoded as Python does: PEP 263 cookie, else UTF-8).
        filename: shown in messages and in `SyntaxError`s.

    Raises `SyntaxError` (or `ValueError` for null bytes) when `source` is not Python.

    Example:
    >>> script = Script("import tensorflow as tf\\ntf.compat.v1.Session()\\n")
    >>> [script.name(call.func) for call in script.calls()]
    ['tensorflow.compat.v1.Session']
    """

    def __init__(self, source, filename="<script>"):
        self.filename = filename
        self.tree = ast.parse(source, filename=filename)
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        self.lines = text.splitlines()
        self.aliases = import_aliases(self.tree)
        self.parents = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def name(self, node):
        """The qualified dotted name of `node` (see `twinrun.lint.names.dotted`), or None."""
        return dotted(node, self.aliases)

    def calls(self):
        """Every call in the script, in source order."""
        found = [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)]
        return sorted(found, key=lambda node: (node.lineno, node.col_offset))

    def nodes(self, *types):
        """Every node of the given AST types, in source order."""
        found = [node for node in ast.walk(self.tree) if isinstance(node, types)]
        return sorted(found, key=_position)

    def finding(self, node, rule, title, why, fix):
        """A `Finding` at `node`'s line, with that line's code."""
        line = node.lineno
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return Finding(rule=rule, line=line, column=node.col_offset, code=code, title=title,
                       why=why, fix=fix)


def _position(node):
    # `ast.comprehension` has no position of its own; its iterable has.
    located = node.iter if isinstance(node, ast.comprehension) else node
    return located.lineno, located.col_offset


def keyword(call, name):
    """The value of keyword argument `name` of `call`, or None when it is not given."""
    for item in call.keywords:
        if item.arg == name:
            return item.value
    return None


def constant(node, default=None):
    """The value of a literal (`0`, `'x'`, `True`, `-1`), else `default`."""
    if isinstance(node, ast.Constant):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))):
        return -node.operand.value
    return default
