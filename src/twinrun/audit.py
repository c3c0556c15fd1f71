"""The determinism audit of each installed backend, each in a fresh process.

`python -m twinrun.audit BACKEND` imports Keras on that backend, calls `deterministic()`
exactly as a run would, and prints the report as JSON. Fresh processes, because a framework
once imported cannot be un-configured, and the launcher's environment must be in place first.
"""

import json
import subprocess
import sys

from twinrun.backends import KERAS_BACKENDS, is_installed


def audit_backend(backend, seed=0, threads=None, timeout=180):
    """Run the audit of one backend in a fresh, launcher-prepared process; return its dict."""
    import os

    from twinrun.determinism import environment_for
    from twinrun.seeds import derive_seeds

    env = dict(os.environ)
    env.update(environment_for(backend, threads=threads, hash_seed=derive_seeds(seed)["hash"]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run([sys.executable, "-m", "twinrun.audit", backend, str(seed)],
                               env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"backend": backend, "error": f"the audit process failed: {tail[0]}"}
    return json.loads(lines[-1])


def audit_installed(seed=0, threads=None):
    """Audits of every installed Keras backend, and `not installed` for the others."""
    from concurrent.futures import ThreadPoolExecutor

    def one(backend):
        if not is_installed(backend):
            return {"backend": backend, "error": "not installed"}
        return audit_backend(backend, seed=seed, threads=threads)

    # Each audit is a separate process that mostly waits on imports: run them side by side.
    with ThreadPoolExecutor(max_workers=len(KERAS_BACKENDS)) as pool:
        return list(pool.map(one, KERAS_BACKENDS))


def main():
    backend, seed = sys.argv[1], int(sys.argv[2])
    import keras  # noqa: F401  (the backend comes from KERAS_BACKEND)

    from twinrun.determinism import deterministic
    from twinrun.launch import available_cpus

    report = deterministic(seed, backend=backend, threads=available_cpus())
    print(json.dumps(report.to_dict()))


if __name__ == "__main__":
    main()
