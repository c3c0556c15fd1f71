"""The programs twinrun starts in fresh processes (`python -m twinrun.programs.<name>`), kept
apart from the library they call:

- `worker`: one run of a built-in workload (`twinrun train`, a workload check's replicas);
- `fnrunner`: the function `twinrun.check(fn)` sent, verified before it is unpickled;
- `audit`: one backend's determinism audit for `twinrun doctor`;
- `frameworks` (no program): what `worker` and `audit` keep out of their process.

`python -m twinrun` (the command line) is `twinrun/__main__.py`.
"""
