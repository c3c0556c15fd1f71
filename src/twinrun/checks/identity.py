"""What a reference was recorded from (a command, or a built-in workload's settings), and
whether a run now is the same thing: a reference of another workload is refused.
"""

import hashlib
import os
from pathlib import Path

from twinrun.checks.commands import PYTHON_PROGRAM, python_target
from twinrun.errors import TwinrunError


def command_identity(command, *, seed=0, backend=None):
    """What a command reference was recorded from: the command (with `python` for whichever
    interpreter ran it), the seed and backend, and the script's SHA-256 (to say when it
    changed; a changed script is still the same workload).

    Example:
    >>> command_identity(["python3", "train.py", "--epochs", "2"], seed=0)["command"]
    ['python', 'train.py', '--epochs', '2']
    """
    args = [str(a) for a in command]
    if args and PYTHON_PROGRAM.match(os.path.basename(args[0])):
        args[0] = "python"
    script = None
    if args and args[0] == "python":
        kind, value = python_target(args[1:])
        if kind == "script":
            script = value
    return {"kind": "command", "command": args, "seed": seed, "backend": backend,
            "script": script, "script_sha256": _script_sha256(script)}


def workload_identity(config):
    """What a workload reference was recorded from: the fields of a (prepared) `RunConfig`
    that decide what trains; thread counts and determinism are the environment's."""
    values = config.to_dict()
    keys = ("workload", "preset", "backend", "seed", "epochs", "patience", "seed_overrides",
            "split_seed", "perturb_seed", "fold", "settings")
    return {"kind": "workload", **{k: values.get(k) for k in keys}}


def validate_same_workload(reference, identity):
    """Raise `TwinrunError` (one sentence) when `reference` was recorded from something else
    than `identity` describes."""
    recorded = reference.identity
    if _comparable_identity(recorded) == _comparable_identity(identity):
        return
    how = (f"`twinrun record -o {reference.path} -- {' '.join(identity['command'])}`"
           if identity["kind"] == "command" else f"`twinrun record -o {reference.path} "
           f"--workload {identity['workload']}`")
    raise TwinrunError(
        f"{reference.path} was recorded from {describe_identity(recorded)}, not from "
        f"{describe_identity(identity)}; check what it recorded, or record a new reference "
        f"with {how}.")


def _comparable_identity(identity):
    """An identity as references are matched: a script by its file name (the checkout's
    folder differs between machines), its contents not at all (a changed script is a note)."""
    values = {k: v for k, v in identity.items() if k not in ("script", "script_sha256")}
    script = identity.get("script")
    if script and values.get("command"):
        values["command"] = [Path(a).name if a == script else a for a in values["command"]]
    return values


def describe_identity(identity):
    """What a reference was recorded from, in words.

    Example:
    >>> describe_identity({"kind": "workload", "workload": "answer-demo", "preset": "quick",
    ...                    "backend": "torch", "seed": 0})
    'the answer-demo workload (quick preset, torch backend, seed 0)'
    """
    if identity.get("kind") == "command":
        backend = f", {identity['backend']} backend" if identity.get("backend") else ""
        return (f"`{' '.join(map(str, identity.get('command') or []))}` (seed "
                f"{identity.get('seed')}{backend})")
    if identity.get("kind") == "workload":
        extra = [f"{k} {identity[k]}" for k in ("epochs", "patience", "split_seed",
                                                 "perturb_seed") if identity.get(k) is not None]
        return (f"the {identity.get('workload')} workload ({identity.get('preset')} preset, "
                f"{identity.get('backend')} backend, seed {identity.get('seed')}"
                + "".join(f", {e}" for e in extra) + ")")
    return "something this twinrun does not know"


def _script_sha256(script):
    if not script:
        return None
    try:
        return hashlib.sha256(Path(script).read_bytes()).hexdigest()
    except OSError:
        return None
