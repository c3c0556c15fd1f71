"""`python -m twinrun.programs.notebook NOTEBOOK [-p NAME VALUE]...`: one replica of a notebook.

`twinrun check nb.ipynb` starts each replica this way, in the environment the launcher built:
the notebook runs top to bottom in a fresh Jupyter kernel of this interpreter, which inherits
that environment, with twinrun's hooks installed before the first cell
(`twinrun.notebooks.execute`). The executed notebook is saved beside the trace
(`TWINRUN_TRACE`), or where `--output` says.

Exit status: 0 every cell ran, 1 a cell raised (its cell and exception are said), 2 bad input.
"""

import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m twinrun.programs.notebook")
    parser.add_argument("notebook")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"))
    parser.add_argument("--output", default=None)
    parser.add_argument("--no-hooks", action="store_true")
    parser.add_argument("--cwd", default=None)
    args = parser.parse_args(argv)

    from twinrun.errors import TwinrunError
    from twinrun.notebooks.execute import CellFailed, run_notebook

    try:
        return run_notebook(args.notebook, parameters=[tuple(p) for p in args.parameter],
                            trace=os.environ.get("TWINRUN_TRACE") or None, output=args.output,
                            hooks=not args.no_hooks, cwd=args.cwd)
    except CellFailed as error:
        print(f"twinrun: {error}", file=sys.stderr)
        return 1
    except TwinrunError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
