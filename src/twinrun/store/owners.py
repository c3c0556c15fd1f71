"""Who owns a row of the store: the process that writes it, and whether it is still alive.

A run or study left `running` by a process that has ended (killed, crashed, its machine
rebooted) is marked as such by the next writer; `owner_alive` tells the two apart.
"""

import os
import secrets
import socket
from datetime import datetime, timezone

# Set by `twinrun.launch` in every child: the launcher's `this_process()`.
LAUNCHER_ENV_VAR = "TWINRUN_LAUNCHER"


def utc_now():
    """The time a row records, in UTC."""
    return datetime.now(timezone.utc)


def new_run_id(now):
    """A run id that sorts by creation time: `20260102-030405-a1b2c3`."""
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def process_start(pid):
    """The start time of `pid` in clock ticks since boot (Linux), or "" where unknown.

    Together with the pid it names one process: a pid reused later has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return fields[19].decode() if len(fields) > 19 else ""


def this_process():
    """The `owner` of rows this process writes: host, pid and the pid's start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid())}"


def owner_alive(owner):
    """False when `owner` is a process on this host that has ended; True when alive or unknown."""
    try:
        host, pid, started = owner.rsplit(":", 2)
        pid = int(pid)
    except (AttributeError, ValueError):
        return True
    if host != socket.gethostname():
        return True  # a store shared between machines: only that host can tell
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            return False
        zombie = fields[0] == b"Z"
        return not zombie and (not started or fields[19].decode() == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
