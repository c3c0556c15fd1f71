"""A replica that starts a child process of its own and then sleeps: for the launcher's
lifecycle tests (signals, a killed launcher, exit codes).

    --pid-dir DIR        write `replica-N.pid` there: this process's pid, then its child's
    --exit-replica R     replica R exits with --exit-code instead of sleeping, once every other
                         replica has written its pid file (so their output is complete first)
    --exit-code C        (default 75, the code the launcher once read as "stopped")
    --lines N            print N numbered lines first (default 50)
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--pid-dir", required=True)
parser.add_argument("--exit-replica")
parser.add_argument("--exit-code", type=int, default=75)
parser.add_argument("--lines", type=int, default=50)
args = parser.parse_args()
replica = os.environ.get("TWINRUN_REPLICA")

for line in range(args.lines):
    print(f"sleepy replica {replica} line {line}")
if replica == args.exit_replica:
    # Wait for the other replica: on a busy machine it may not have started yet, and the
    # launcher stops it as soon as this one fails.
    others = [p for p in (Path(args.pid_dir) / f"replica-{r}.pid" for r in ("0", "1"))
              if p.name != f"replica-{replica}.pid"]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in others) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"replica {replica} exits with code {args.exit_code} on its own", file=sys.stderr)
    sys.exit(args.exit_code)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pid_file = Path(args.pid_dir) / f"replica-{replica}.pid"
pid_file.with_suffix(".tmp").write_text(f"{os.getpid()}\n{child.pid}\n")
pid_file.with_suffix(".tmp").rename(pid_file)  # whole, or not there
sys.stdout.flush()
time.sleep(600)
