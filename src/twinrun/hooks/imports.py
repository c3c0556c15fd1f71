"""Run a function when a module has been imported, without importing it first.

The hooks must patch Keras, torch and TensorFlow, but a script that only uses torch must never
pay for importing TensorFlow; so instead of importing them, a finder on `sys.meta_path` waits
for the script's own `import` and runs the patch right after the module's code has run.
"""

import importlib.abc
import sys
import threading

_callbacks = {}  # module name -> [functions to call with the module]
_lock = threading.RLock()


def when_imported(name, function):
    """Call `function(module)` once `name` is imported (at once if it already is).

    Arguments:
        name: a top-level module name, such as `"torch"`.
        function: called with the module object, after the module's own code has run.

    Example:
    >>> seen = []
    >>> when_imported("json", lambda module: seen.append(module.__name__))
    >>> import json
    >>> seen
    ['json']
    """
    module = sys.modules.get(name)
    if module is not None:
        function(module)
        return
    with _lock:
        _callbacks.setdefault(name, []).append(function)
        if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _PostImportFinder())


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it asks the other finders and wraps the loader of a watched
    module so that the callbacks run after the module has executed."""

    def __init__(self):
        self._busy = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _callbacks or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _CallbackLoader(loader, fullname)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # The module keeps the real loader, as if the finder had never been there.
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        with _lock:
            functions = _callbacks.pop(self._name, [])
        for function in functions:
            function(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)
