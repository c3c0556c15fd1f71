"""Where the package's docstring examples run: `make doctest` (`pytest --doctest-modules src/twinrun`).

This file sits beside the package, not in it, so it is never installed. Each example runs in
an empty temporary folder without TWINRUN_* variables, so it shows twinrun's defaults (the
store `twinrun-runs`, no trace path) and leaves no trace file or store behind.
"""

import os

import pytest


@pytest.fixture(autouse=True)
def each_example_runs_in_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TWINRUN_"):
            monkeypatch.delenv(name)
