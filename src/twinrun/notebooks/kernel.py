"""A fresh Jupyter kernel of this very interpreter, registered for one run only.

The kernel is `sys.executable -m ipykernel_launcher`: the Python twinrun runs in, with the same
packages, whatever kernels the user has installed. Its kernel spec, connection file, IPython
profile and Jupyter folders all live in a temporary folder that is removed afterwards, so
nothing is written to the user's Jupyter or IPython configuration, and none of theirs (a
startup file, a kernel option) changes what the notebook computes.

The kernel inherits this process's environment, which the launcher built before it started
(`PYTHONHASHSEED`, thread counts, determinism): so it is set before the kernel's interpreter
starts, which a notebook cannot do for itself.
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "twinrun-python"
# Where Jupyter and IPython would otherwise read and write configuration.
_PRIVATE_FOLDERS = {"IPYTHONDIR": "ipython", "JUPYTER_CONFIG_DIR": "config",
                    "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime"}


def private_jupyter_environment(folder):
    """The variables that point Jupyter and IPython at folders under `folder` (created).

    Example:
    >>> sorted(private_jupyter_environment(tempfile.mkdtemp()))
    ['IPYTHONDIR', 'JUPYTER_CONFIG_DIR', 'JUPYTER_DATA_DIR', 'JUPYTER_RUNTIME_DIR']
    """
    variables = {}
    for name, sub in _PRIVATE_FOLDERS.items():
        path = Path(folder) / sub
        path.mkdir(parents=True, exist_ok=True)
        variables[name] = str(path)
    return variables


def write_kernel_spec(folder):
    """Write the spec of a kernel of this interpreter under `folder`; return its kernels folder.
    """
    kernels = Path(folder) / "kernels"
    spec = kernels / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (twinrun)",
        "language": "python", "metadata": {"debugger": False}}))
    return kernels


@contextlib.contextmanager
def kernel_manager(cwd=None):
    """A `KernelManager` for a fresh kernel of this interpreter, with its start arguments.

    Yields `(manager, start_arguments)`: pass the arguments to `start_kernel` (nbclient's
    `setup_kernel` does). The kernel's folders are removed on leaving.

    Arguments:
        cwd: the folder the kernel starts in (the notebook's, as Jupyter does).
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    folder = tempfile.mkdtemp(prefix="twinrun-kernel-")
    _folders.append(folder)
    try:
        private = private_jupyter_environment(folder)
        specs = KernelSpecManager(kernel_dirs=[str(write_kernel_spec(folder))],
                                  ensure_native_kernel=False)
        # IPC sockets in the private folder, not TCP ports: nothing else on the machine can
        # reach the kernel (and it says nothing about running unencrypted).
        manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs,
                                     connection_file=str(Path(folder) / "connection.json"),
                                     transport="ipc", ip=socket_base(folder))
        env = dict(os.environ)
        env.update(private)
        env.pop("JPY_PARENT_PID", None)
        start = {"env": env, "cwd": str(cwd) if cwd else None}
        lockstep = os.environ.get("TWINRUN_LOCKSTEP_FD")
        if lockstep:
            # The kernel writes the trace, so it is the one that waits for the launcher's
            # go after each step (`twinrun.trace.lockstep`): it needs the pipe's read end.
            start["pass_fds"] = (int(lockstep),)
        yield manager, start
    finally:
        remove_private_folders()


_folders = []  # this process's kernel folders not yet removed

# A Unix socket's path holds at most 107 bytes (Linux's sun_path, less its NUL); the kernel
# adds "-" and a port number of up to 5 digits to the base.
SOCKET_PATH_MAX = 107


def socket_base(folder):
    """Where the kernel's IPC sockets go: `FOLDER/kernel`, or, when a long TMPDIR makes that
    path too long for a Unix socket, a private folder of its own under /tmp (removed with the
    others).

    >>> import tempfile
    >>> socket_base(tempfile.mkdtemp(prefix="twinrun-kernel-")).endswith("/kernel")
    True
    >>> long = tempfile.mkdtemp(prefix="twinrun-kernel-" + "x" * 100)
    >>> len(socket_base(long)) + 6 <= SOCKET_PATH_MAX
    True
    >>> remove_private_folders(); shutil.rmtree(long)
    """
    base = str(Path(folder) / "kernel")
    if len(os.fsencode(base)) + 6 <= SOCKET_PATH_MAX:
        return base
    short = tempfile.mkdtemp(prefix="twinrun-k-", dir="/tmp")  # mode 0700, as the other
    _folders.append(short)
    return str(Path(short) / "kernel")


def remove_private_folders():
    """Remove the kernel folders this process made (also from a signal handler that ends the
    process at once, where no `finally` runs)."""
    while _folders:
        shutil.rmtree(_folders.pop(), ignore_errors=True)


def kernel_pid(manager):
    """The process id of the manager's kernel, or None."""
    provisioner = getattr(manager, "provisioner", None)
    process = getattr(provisioner, "process", None)
    return getattr(process, "pid", None)
