"""Which module a name in a script stands for: `tf.compat.v1.Session` -> `tensorflow.compat.v1.Session`.

The rules match fully qualified names, so `import tensorflow as tf`, `from tensorflow import
compat` and `from keras import backend as K` all lead to the same names. A name the script
never imported is kept as written, so a snippet without its imports is still checked.
"""

import ast


def import_aliases(tree):
    """Map each name bound by an import anywhere in `tree` to the dotted name it stands for.

    Arguments:
        tree: a parsed module (`ast.parse(...)`).

    Example:
    >>> import ast
    >>> import_aliases(ast.parse("import numpy as np\\nfrom keras import backend as K"))
    {'np': 'numpy', 'K': 'keras.backend'}
    """
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    # `import a.b` binds `a`, which stands for the package `a`.
                    root = alias.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted(node, aliases):
    """The qualified dotted name of a `Name`/`Attribute` chain, or None for other expressions.

    Arguments:
        node: an expression node, e.g. the `func` of a call.
        aliases: `import_aliases(tree)` of the module.

    Example:
    >>> import ast
    >>> dotted(ast.parse("tf.compat.v1.Session", mode="eval").body, {"tf": "tensorflow"})
    'tensorflow.compat.v1.Session'
    """
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))
