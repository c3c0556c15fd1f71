"""What a check is: `twinrun check`, `twinrun record` and `twinrun.check(fn)`.

A check runs a training N times in fresh processes, compares the replicas step by step and
gives a verdict; each module does one part of that:

- `entry`: the entry points (`check_workload`, `check_command`, `check_function`) and the
  check's records in the store;
- `commands`: the user's `python ...` command, checked and run under twinrun's hooks;
- `planning`: the check's options, and how its replicas run (lockstep or a few at a time);
- `replicas`: the replicas' fresh processes, their traces compared as they grow;
- `verdict`: the verdict model and the step-by-step comparison;
- `causes`: how a divergence grew and what likely caused it;
- `localize`: which layer first turned equal inputs into different bits;
- `judging`: from outcomes to a verdict (replicas, a reference, a tolerance);
- `tolerance`, `reference`, `identity`, `record`: `--rtol`, reference files, what a reference
  was recorded from, and `twinrun record` / `check --against`;
- `findings`: what lint and the hooks noticed beside the verdict.
"""

from twinrun.checks.entry import check_command, check_function, check_workload, verdict_json
from twinrun.checks.findings import script_findings
from twinrun.checks.judging import Judging
from twinrun.checks.record import (check_command_against, check_workload_against,
                                   record_command, record_workload)

__all__ = ["Judging", "check_command", "check_command_against", "check_function", "check_workload",
           "check_workload_against", "record_command", "record_workload", "script_findings",
           "verdict_json"]
