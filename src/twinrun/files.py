"""Files twinrun writes and reads, each done one way everywhere.

- `atomic_file`: a file that appears whole or not at all (a reference, a downloaded data file,
  a hook's side file): a reader never sees half of it, and a failed write leaves nothing.
- `read_json`: a JSON file another process wrote, or None when it is missing or unfinished.
- `finite`: a value made fit for JSON, whose standard has no NaN or infinity: those become
  null (`json.dumps` would write the bare word `NaN`, which no JSON parser accepts).
"""

import contextlib
import json
import math
import numbers
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path, mode="wb"):
    """Write `path` whole or not at all: yields a file opened in `mode` under a temporary name in
    the same folder, renamed over `path` when the block ends (an atomic rename on POSIX), and
    removed instead when the block raises. The file gets the permissions a plain `open` gives.

    Arguments:
        path: the file to write.
        mode: `"wb"` or `"w"` (text, UTF-8).

    Example:
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "result.json"
    >>> with atomic_file(target, "w") as out:
    ...     _ = out.write('{"ok": true}')
    >>> read_json(target)
    {'ok': True}
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".part")
    os.close(handle)
    try:
        encoding = None if "b" in mode else "utf-8"
        with open(temporary, mode, encoding=encoding) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file readable by its owner only; the result is as readable as any
        # other file the user creates.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path):
    """The JSON value in the file at `path`, or None when there is no such file or it does not
    hold JSON yet (a process that writes it may have been stopped half-way).

    Example:
    >>> read_json("/nonexistent/result.json") is None
    True
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finite(value):
    """`value` with every NaN and infinity (in dicts and lists, at any depth) replaced by None,
    and NumPy numbers made plain Python ones, so `json.dumps(..., allow_nan=False)` accepts it.

    Example:
    >>> finite({"loss": float("nan"), "steps": [1, float("inf"), 2.5]})
    {'loss': None, 'steps': [1, None, 2.5]}
    """
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
