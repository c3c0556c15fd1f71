"""`python -m twinrun.programs.fnrunner FILE`: run the function `twinrun.check(fn)` sent, in a
fresh process.

The file holds an HMAC-SHA256 of the pickled function, then the pickle. The key comes only
through this process's environment (`TWINRUN_FN_KEY`) from the `twinrun.check` that wrote the
file; anything else is refused before it is unpickled, because unpickling runs code.
"""

import hashlib
import hmac
import os
import sys


def main():
    key = os.environ.get("TWINRUN_FN_KEY")
    try:
        with open(sys.argv[1], "rb") as handle:
            blob = handle.read()
    except (IndexError, OSError) as error:
        print(f"Error: cannot read the function to run ({error}); use twinrun.check(fn).",
              file=sys.stderr)
        return 2
    signature, payload = blob[:32], blob[32:]
    try:
        secret = bytes.fromhex(key or "")
    except ValueError:  # not the key twinrun.check passes: refused below as any other
        secret = b""
    if not secret or not hmac.compare_digest(
            signature, hmac.new(secret, payload, hashlib.sha256).digest()):
        print(f"Error: {sys.argv[1]} was not written by this twinrun.check, so it is not run; "
              "call twinrun.check(fn) instead of starting twinrun.programs.fnrunner by hand.",
              file=sys.stderr)
        return 2
    import cloudpickle

    cloudpickle.loads(payload)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
