"""`python -m twinrun.programs.audit BACKEND SEED`: one backend's determinism audit, in a fresh
process the launcher prepared (see `twinrun.audit`).

It imports Keras on that backend, calls `deterministic()` exactly as a run would, and prints
the report as one line of JSON.
"""

import json
import sys


def main():
    backend, seed = sys.argv[1], int(sys.argv[2])
    from twinrun.programs.frameworks import leave_out_unused_frameworks

    leave_out_unused_frameworks(backend)  # as a run's worker does
    import keras  # noqa: F401  (the backend comes from KERAS_BACKEND)

    from twinrun.determinism import deterministic
    from twinrun.launch import available_cpus

    report = deterministic(seed, backend=backend, threads=available_cpus())
    print(json.dumps(report.to_dict()))


if __name__ == "__main__":
    main()
