"""The fresh process of `twinrun.check(fn)` runs only the function its own check signed."""

import os
import pickle
import subprocess
import sys


def test_a_pickle_not_signed_by_the_check_is_refused_before_it_is_loaded(tmp_path):
    marker = tmp_path / "ran"
    planted = tmp_path / "function.pkl"

    class Run:  # unpickling it would create the marker folder
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    planted.write_bytes(b"\0" * 32 + pickle.dumps(Run()))
    # A wrong key, and a key that is not even hex: one sentence each, nothing loaded.
    for key in ("00" * 32, "not a key"):
        env = dict(os.environ, TWINRUN_FN_KEY=key)
        done = subprocess.run([sys.executable, "-m", "twinrun.programs.fnrunner", str(planted)],
                              env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, key
        assert done.stderr.startswith("Error: ") and "not run" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not marker.exists()
