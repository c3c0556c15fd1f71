"""The user's command: checked before any replica starts, and run under twinrun's hooks.

`python [options] script.py ...`, `python -m module ...` and `python -c code` are read the
way the interpreter reads them (its own options skipped), so a script that never imports
twinrun is still seeded, made deterministic and traced (`hooked_command`).
"""

import os
import re
import shutil
import sys
from pathlib import Path

from twinrun.errors import TwinrunError


PYTHON_PROGRAM = re.compile(r"python(\d+(\.\d+)?)?$")


def resolve_command(command):
    """Check the command before any replica starts; return it and what it runs.

    For `python [options] script.py ...` and `python [options] -m package.module ...` the
    script or module must exist (options such as `-W ignore` and `-X dev` take a value, which
    is no script). `python` and `python3` become this interpreter, so the script sees the same
    packages.

    Returns `(command, target)`: the argument list, and the script path, `-m module`,
    `-c` or the program that the replicas run.
    """
    if not command:
        raise TwinrunError("No command to check: put it after `--`, for example "
                           "`twinrun check -n 2 -- python train.py`.")
    command = [str(a) for a in command]
    program = os.path.basename(command[0])
    if not PYTHON_PROGRAM.match(program):
        if shutil.which(command[0]) is None and not Path(command[0]).is_file():
            raise TwinrunError(f"Command not found: {command[0]}.")
        return command, command[0]
    if program in ("python", "python3"):
        command[0] = sys.executable
    kind, value = python_target(command[1:])
    if kind == "script":
        if not Path(value).is_file():
            raise TwinrunError(f"Script not found: {value} (from {Path.cwd()}).")
        return command, value
    if kind == "module":
        if not value:
            raise TwinrunError("`python -m` needs a module name, for example "
                               "`twinrun check -- python -m mypackage.train`.")
        if not _module_exists(value):
            raise TwinrunError(f"Module not found: {value} (from {Path.cwd()}); run the check "
                               f"from the folder that holds it, or install it.")
        return command, f"-m {value}"
    if kind == "code":
        return command, "-c"
    raise TwinrunError("Python would read the program from stdin, which replicas do not get; "
                       "name a script, `-m module` or `-c code` after `python`.")


HOOKED = "twinrun.programs.hooked"


def hooked_command(command):
    """The command with twinrun's hooks before the script (`twinrun.programs.hooked`), so a
    script that never imports twinrun is seeded, made deterministic and traced.

    `python [options] script.py ARGS` becomes `python [options] -m twinrun.programs.hooked
    script.py ARGS`, and likewise for `-m module` and `-c code`: the interpreter's options stay
    where they were, and the script sees the `sys.argv`, `sys.path[0]` and `__file__` plain
    Python gives it. Other programs are left as they are: the hooks need a `python` command
    (the explicit API, `twinrun.keras.Trace` or `twinrun.torch.Tracer`, works in any).

    Example:
    >>> hooked_command(["python", "-u", "train.py", "--epochs", "2"])[1:]
    ['-u', '-m', 'twinrun.programs.hooked', 'train.py', '--epochs', '2']
    >>> hooked_command(["python", "-m", "pkg.train"])[1:]
    ['-m', 'twinrun.programs.hooked', '-m', 'pkg.train']
    """
    command = [str(a) for a in command]
    if not command or not PYTHON_PROGRAM.match(os.path.basename(command[0])):
        return command
    args = command[1:]
    kind, target = python_target(args)
    if kind not in ("script", "module", "code") or (
            kind == "module" and (target or "").startswith("twinrun.programs.")):
        return command  # twinrun's own programs (`twinrun.check(fn)`) trace themselves
    i, j = _program_start(args)
    if j is None:  # a script: the hooks go right before it
        return [command[0], *args[:i], "-m", HOOKED, *args[i:]]
    letters = args[i][1:]
    rest = letters[j + 1:]
    bundled = [f"-{letters[:j]}"] if j else []  # -uc CODE: the bundled options stay first
    return [command[0], *args[:i], *bundled, "-m", HOOKED, f"-{letters[j]}",
            *([rest] if rest else []), *args[i + 1:]]


def python_target(args):
    """What `python ARGS` runs: `("script", path)`, `("module", name)`, `("code", text)`, or
    `("stdin", None)`; the interpreter's own options (`-W ignore`, `-Xdev`, `-u`) are skipped.

    Example:
    >>> python_target(["-W", "ignore", "-X", "dev", "train.py", "--epochs", "2"])
    ('script', 'train.py')
    >>> python_target(["-u", "-m", "package.train"])
    ('module', 'package.train')
    """
    i, j = _program_start(args)
    if i >= len(args) or args[i] == "-":
        return "stdin", None
    if j is None:
        return "script", args[i]
    letters = args[i][1:]
    value = letters[j + 1:] or (args[i + 1] if i + 1 < len(args) else None)
    return ("code" if letters[j] == "c" else "module"), value


def _program_start(args):
    """Where the program begins in `python ARGS`, past the interpreter's own options:
    `(i, None)` when `args[i]` is the script (or `-`, stdin), `(i, j)` when letter `j` of the
    bundled option `args[i]` is its `-c` or `-m`, and `(len(args), None)` when nothing follows.

    Example:
    >>> _program_start(["-W", "ignore", "-uc", "print(1)"])
    (2, 1)
    """
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-":
            return i, None
        if arg.startswith("--"):
            # Long options: only --check-hash-based-pycs takes a value (the next argument).
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        if arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            for j, letter in enumerate(letters):
                if letter in "cm":  # the rest of the arguments belong to the program
                    return i, j
                if letter in "WX":  # takes a value: attached (-Xdev) or the next argument
                    if not letters[j + 1:]:
                        i += 1
                    break
            i += 1
            continue
        return i, None
    return len(args), None


def _module_exists(name):
    """Whether `python -m name` finds `name`, looked up without importing (running) any of it."""
    from importlib.machinery import BuiltinImporter, FrozenImporter, PathFinder

    search = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep), *sys.path[1:]]
    search = [p for p in search if p]
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        full = ".".join(parts[:depth])
        spec = PathFinder.find_spec(full, search)
        if spec is None and depth == 1:
            spec = BuiltinImporter.find_spec(full) or FrozenImporter.find_spec(full)
        if spec is None:
            return False
        if depth < len(parts):
            search = list(spec.submodule_search_locations or [])
            if not search:
                return False
    return True
