"""`twinrun lint`: reproducibility pitfalls in a training script, found on its syntax tree.

Nothing is run or imported: the script is parsed with `ast`, and each rule looks for one kind of
pitfall, naming its line, why it matters, and the fix. The rules, one concern per module:

- `environment`: `PYTHONHASHSEED` set from inside Python; misspelt environment variables;
- `tf1`: TensorFlow 1 seeding and session calls that Keras 3 does not use;
- `generators`: random generators created without a seed;
- `order`: iteration over sets of strings, DataLoader workers without a seeded generator,
  tf.data with `deterministic=False`;
- `kernels`: `torch.backends.cudnn.benchmark = True`.

Example:
>>> from twinrun.lint import lint_source
>>> [(f.line, f.rule) for f in lint_source("import os\\nos.environ['PYTHONHASHSEED'] = '0'\\n")]
[(2, 'hash-seed-in-python')]
"""

import codecs
import io
import tokenize
from pathlib import Path

from twinrun.errors import TwinrunError
from twinrun.lint.environment import hash_seed_in_python, misspelt_variables
from twinrun.lint.findings import Finding
from twinrun.lint.generators import unseeded_generators
from twinrun.lint.kernels import cudnn_benchmark
from twinrun.lint.order import dataloader_workers, set_iteration, tf_data_nondeterministic
from twinrun.lint.script import Script
from twinrun.lint.tf1 import tf1_calls

__all__ = ["Finding", "RULES", "lint_file", "lint_source"]

RULES = (hash_seed_in_python, misspelt_variables, tf1_calls, unseeded_generators,
         set_iteration, dataloader_workers, tf_data_nondeterministic, cudnn_benchmark)


def lint_source(source, filename="<script>"):
    """The findings in Python source text, sorted by line.

    Arguments:
        source: the script's text (str, or bytes decoded as Python would).
        filename: the name used in a `SyntaxError`.

    Raises `SyntaxError` (or `ValueError` for a null byte) when `source` is not Python.

    Example:
    >>> [f.rule for f in lint_source("import numpy as np\\nrng = np.random.default_rng()\\n")]
    ['unseeded-generator']
    """
    script = Script(source, filename)
    findings = {finding for rule in RULES for finding in rule(script)}
    return sorted(findings, key=lambda f: (f.line, f.column, f.rule))


def lint_file(path):
    """The findings in the Python file at `path`, sorted by line.

    Arguments:
        path: the script to check.

    Raises `TwinrunError` (one sentence, exit status 2) when the file cannot be read or is not
    Python.

    Example:

        for finding in lint_file("train.py"):
            print(finding.line, finding.title)
    """
    path = Path(path)
    try:
        source = path.read_bytes()
    except OSError as error:
        raise TwinrunError(f"Cannot read {path} ({error.strerror or error}); pass the path of "
                           "a Python training script.") from None
    _refuse_undecodable(path, source)
    try:
        return lint_source(source, str(path))
    except SyntaxError as error:
        where = f" at line {error.lineno}" if error.lineno else ""
        raise TwinrunError(f"{path} is not Python ({error.msg}{where}); `twinrun lint` reads "
                           "Python scripts (.py).") from None
    except ValueError as error:  # a null byte: a binary file
        raise TwinrunError(f"{path} is not Python ({error}); `twinrun lint` reads Python "
                           "scripts (.py).") from None
    except (RecursionError, MemoryError):
        # Python's parser gives up on expressions nested thousands deep (`1+1+...`,
        # `not not ...`), and so does `python` itself, with the same errors.
        raise TwinrunError(f"{path} is nested too deeply for Python to parse (python itself "
                           "cannot run it); `twinrun lint` reads Python scripts (.py).") from None


def _refuse_undecodable(path, source):
    """Refuse bytes Python cannot decode, naming the line of the first bad byte.

    The parser's own error gives the line where the token holding the byte ends (a docstring's
    last line), or nothing for a byte in a comment, which `ast.parse` accepts although `python`
    refuses the file.
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError:  # the first lines are not UTF-8 and carry no encoding comment
        encoding = "utf-8"
    try:
        codecs.lookup(encoding)
        source.decode(encoding)
    except LookupError:
        return  # an unknown encoding name: the parser's own sentence says so
    except UnicodeDecodeError as error:
        line = source[:error.start].count(b"\n") + 1
        if codecs.lookup(encoding).name == "utf-8":
            raise TwinrunError(
                f"{path} is not UTF-8 text and declares no other encoding (line {line} holds "
                f"byte {source[error.start]:#04x}), so Python cannot read it; save it as "
                "UTF-8, or name its encoding in a first-line comment such as "
                "`# -*- coding: latin-1 -*-`.") from None
        raise TwinrunError(
            f"{path} declares the encoding {encoding}, but line {line} holds byte "
            f"{source[error.start]:#04x}, which is not {encoding}; save it in the encoding it "
            "declares, or correct its first-line comment.") from None
