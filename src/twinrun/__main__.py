"""`python -m twinrun ...` is the `twinrun` command."""

from twinrun.cli import main

main()
