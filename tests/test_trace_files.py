"""A trace file holds one run: a path that already holds a trace is refused, never appended."""

import pytest

from twinrun.errors import TwinrunError
from twinrun.trace import TraceWriter, read_trace


def test_a_trace_path_that_already_holds_a_trace_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "run.trace"
    writer = TraceWriter(path)
    writer.header(["w"])
    writer.step(0, 0, None, 1.0, [[1, 2]])
    writer.close()
    before = path.read_bytes()

    with pytest.raises(TwinrunError, match="already holds a trace"):
        TraceWriter(path)

    assert path.read_bytes() == before
    assert [s["step"] for s in read_trace(path).steps] == [0]


def test_an_empty_file_may_become_a_trace(tmp_path):
    path = tmp_path / "run.trace"
    path.touch()
    writer = TraceWriter(path)
    writer.header(["w"])
    writer.close()
    assert read_trace(path).variables == ["w"]
