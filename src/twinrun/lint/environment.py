"""Environment variables: `PYTHONHASHSEED` set too late, and misspelt variable names.

Python reads `PYTHONHASHSEED` once, when the interpreter starts; setting it from inside the
script (`os.environ[...] =`, `os.environ.setdefault`, `os.environ.update`, `os.putenv`) changes
only what child processes inherit. A misspelt name (`PYTHONASHSEED`, `TF_DETERMINISTIC_OP`) is
read by nothing at all. Both fail silently, so both are named here.
"""

import ast
import re

from twinrun.lint.script import constant

HASH_SEED = "PYTHONHASHSEED"

# Strings that look like an environment variable's name; only these are compared.
_VARIABLE_SHAPE = re.compile(r"[A-Z][A-Z0-9_]{4,}")
# The ways a script sets a variable in its own process's environment.
_SETTERS = {"os.environ.setdefault", "os.putenv", "os.environ.__setitem__"}
_UPDATERS = {"os.environ.update"}


def known_variables():
    """The environment variables twinrun knows change results or determinism.

    They are the ones its environment fingerprint records and its determinism modules set;
    a name one or two edits away from one of them is reported as a misspelling.

    Example:
    >>> "CUBLAS_WORKSPACE_CONFIG" in known_variables()
    True
    """
    from twinrun.determinism.common import THREAD_VARIABLES
    from twinrun.determinism.jax import POOL_VARIABLE
    from twinrun.environment import NUMERICS_ENV_VARS, SPEED_ENV_VARS

    return frozenset((*NUMERICS_ENV_VARS, *SPEED_ENV_VARS, *THREAD_VARIABLES, POOL_VARIABLE,
                      "TF_CPP_MIN_LOG_LEVEL"))


def edit_distance(a, b):
    """The number of single-character insertions, deletions, substitutions and swaps of two
    neighbours that turn `a` into `b` (optimal string alignment distance).

    Example:
    >>> edit_distance("PYTHONASHSEED", "PYTHONHASHSEED"), edit_distance("ab", "ba")
    (1, 1)
    """
    previous2, previous = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def meant_variable(name, known=None):
    """The known variable `name` is a misspelling of, or None (also for a correct name).

    Names of up to 10 characters may be one edit away, longer ones two.

    Arguments:
        name: a string from the script.
        known: the correctly spelt names (default: `known_variables()`).

    Example:
    >>> meant_variable("TF_DETERMINISTIC_OP"), meant_variable("PYTHONHASHSEED")
    ('TF_DETERMINISTIC_OPS', None)
    """
    known = known_variables() if known is None else known
    if name in known or not _VARIABLE_SHAPE.fullmatch(name):
        return None
    best = None
    for candidate in sorted(known):
        allowed = 1 if len(candidate) <= 10 else 2
        if abs(len(candidate) - len(name)) > allowed:
            continue
        distance = edit_distance(name, candidate)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def misspelt_variables(script):
    """A finding for every string that is a near miss of a known variable's name."""
    known = known_variables()
    for node, name in _variable_names(script):
        meant = meant_variable(name, known)
        if meant is None:
            continue
        yield script.finding(
            node, "misspelt-env-var",
            f"`{name}` looks like a misspelling of `{meant}`",
            f"Nothing reads `{name}`, so the setting you meant for `{meant}` is silently not "
            "applied and nothing tells you.",
            f"Spell it `{meant}`.")


def hash_seed_in_python(script):
    """A finding for every place the script sets `PYTHONHASHSEED` (or a misspelling of it)."""
    known = known_variables()
    for node, name in _variables_set(script):
        if name != HASH_SEED and meant_variable(name, known) != HASH_SEED:
            continue
        spelt = "" if name == HASH_SEED else f" (spelt `{name}`)"
        yield script.finding(
            node, "hash-seed-in-python",
            f"`PYTHONHASHSEED`{spelt} is set from inside Python",
            "Python reads PYTHONHASHSEED once, when the interpreter starts, to seed the hashing "
            "of str and bytes; set here it only reaches child processes, so the order of sets "
            "of strings in this process (and whatever follows from it: label indices, file "
            "order) still changes from run to run.",
            "Set it before Python starts: `PYTHONHASHSEED=0 python train.py`, or in the "
            "notebook kernel's environment; `twinrun check` starts every replica with it "
            "fixed. Better still, make the order independent of it with `sorted(...)`.")


def _variable_names(script):
    """(node, name) for every string constant, and keyword of `os.environ.update(...)`."""
    for node in script.nodes(ast.Constant):
        if isinstance(node.value, str):
            yield node, node.value
    for call in script.calls():
        if script.name(call.func) in _UPDATERS:
            for item in call.keywords:
                if item.arg:
                    yield item.value, item.arg


def _variables_set(script):
    """(node, name) for every variable the script puts into its own environment."""
    for node in script.nodes(ast.Assign, ast.AugAssign, ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if (isinstance(target, ast.Subscript) and script.name(target.value) == "os.environ"
                    and isinstance(constant(target.slice), str)):
                yield node, constant(target.slice)
    for call in script.calls():
        name = script.name(call.func)
        if name in _SETTERS and call.args and isinstance(constant(call.args[0]), str):
            yield call, constant(call.args[0])
        elif name in _UPDATERS:
            for item in call.keywords:
                if item.arg:
                    yield call, item.arg
            for argument in call.args:
                if isinstance(argument, ast.Dict):
                    for key in argument.keys:
                        if isinstance(constant(key), str):
                            yield call, constant(key)
