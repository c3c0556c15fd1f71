"""`python -m twinrun.programs.portable_selftest THREADS`: train the portable probe once, in a
fresh process the launcher prepared with the portable settings, and print its digests as one
line of JSON (see `twinrun.portable`)."""

import json
import sys


def main():
    from twinrun.workloads.portable_probe import run

    print(json.dumps(run(int(sys.argv[1]))), flush=True)


if __name__ == "__main__":
    main()
