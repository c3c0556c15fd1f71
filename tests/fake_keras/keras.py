"""A stand-in for Keras that misbehaves on import, to test `twinrun doctor`'s audit.

Put this folder on PYTHONPATH and set FAKE_KERAS to one of:
    hang      sleep far longer than any test's audit timeout
    garbage   print a line that looks like JSON but is not, and exit 0
    crash     raise an exception (the process exits 1 with a traceback)
With FAKE_KERAS_PIDS set to a folder, each process first leaves a file named by its id there.
"""

import os
import sys
import time

mode = os.environ.get("FAKE_KERAS", "")
if os.environ.get("FAKE_KERAS_PIDS"):
    open(os.path.join(os.environ["FAKE_KERAS_PIDS"], str(os.getpid())), "w").close()
if mode == "hang":
    time.sleep(3600)
elif mode == "garbage":
    print("{this is not json")
    sys.stdout.flush()
    os._exit(0)
elif mode == "crash":
    raise RuntimeError("fake keras crashed on import")
