"""`python -m twinrun.programs.hooked TARGET ARGS`: run a training script with twinrun's hooks.

TARGET is what would follow `python`: `script.py`, `-m package.module` or `-c code`.
`twinrun check -- python train.py` starts its replicas this way, so the script needs no change:
the hooks (`twinrun.hooks`) seed, make deterministic and trace before its first line.

The script then runs as plain Python would run it: `sys.argv`, `sys.path[0]`, `__file__`,
`__name__ == "__main__"`, a fresh `__main__` module (so pickles and `multiprocessing` see the
script's names), and an uncaught exception prints a traceback that starts at the script's own
frame, with exit status 1.
"""

import builtins
import os
import sys
import types


def main():
    args = sys.argv[1:]
    if not args:
        print("Error: no script to run; use `python -m twinrun.programs.hooked train.py ARGS` "
              "(or `twinrun check -- python train.py`).", file=sys.stderr)
        return 2
    if args[0] == "-m" and len(args) > 1:
        _install(None)
        return _run_module(args[1], args[2:])
    if args[0] == "-c" and len(args) > 1:
        _install(args[1])
        return _run_code(args[1], args[2:])
    return _run_script(args[0], args[1:])


def _install(source):
    import twinrun.hooks

    twinrun.hooks.install(traces_itself=twinrun.hooks.traces_itself(source))


def _fresh_main(**attributes):
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    for name, value in attributes.items():
        setattr(module, name, value)
    sys.modules["__main__"] = module
    return module


def _run_script(path, argv):
    import runpy
    from importlib.machinery import SourceFileLoader

    sys.argv = [path, *argv]
    if os.path.isdir(path) or not path.endswith((".py", ".pyw")) and _is_zip(path):
        if not sys.flags.safe_path:
            sys.path[0] = path
        _install(None)
        runpy.run_path(path, run_name="__main__")
        return 0
    if not sys.flags.safe_path:
        sys.path[0] = os.path.dirname(os.path.realpath(path))
    filename = os.path.abspath(path)
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as error:
        print(f"{sys.executable}: can't open file {path!r}: [Errno {error.errno}] "
              f"{error.strerror}", file=sys.stderr)
        return 2
    code = compile(source, filename, "exec", dont_inherit=True)
    _install(source)
    module = _fresh_main(__file__=filename, __cached__=None, __spec__=None,
                         __loader__=SourceFileLoader("__main__", filename))
    return _execute(code, module)


def _run_code(text, argv):
    sys.argv = ["-c", *argv]
    if not sys.flags.safe_path:
        sys.path[0] = ""
    code = compile(text, "<string>", "exec", dont_inherit=True)
    return _execute(code, _fresh_main(__spec__=None, __loader__=None))


def _run_module(name, argv):
    import runpy

    sys.argv = ["-m", *argv]
    _fresh_main()
    try:
        # What `python -m name` itself calls: it sets sys.argv[0], __spec__ and __file__.
        runpy._run_module_as_main(name, alter_argv=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        _report(error, lambda frame: frame.f_globals is sys.modules["__main__"].__dict__)
        return 1
    return 0


def _execute(code, module):
    try:
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        _report(error, lambda frame: frame.f_code is code)
        return 1
    return 0


def _report(error, is_script_frame):
    """Print the traceback as plain Python would: from the script's first frame, not ours."""
    tb = error.__traceback__
    while tb is not None and not is_script_frame(tb.tb_frame):
        tb = tb.tb_next
    if tb is not None:
        error.__traceback__ = tb
    sys.excepthook(type(error), error, error.__traceback__)


def _is_zip(path):
    import zipfile

    return os.path.isfile(path) and zipfile.is_zipfile(path)


if __name__ == "__main__":
    sys.exit(main())
