"""How a check's replicas share the CPUs, and what its progress display says (no training)."""

import io

import pytest
from rich.console import Console

from twinrun.checks.planning import plan_note, plan_replicas
from twinrun.report.terminal import ReplicaSteps, replica_progress


@pytest.fixture
def cpus(monkeypatch):
    def on(count):
        monkeypatch.setattr("twinrun.launch.available_cpus", lambda: count)
    return on


def test_two_replicas_whose_threads_fill_the_cpus_each_take_turns_step_by_step(cpus):
    cpus(2)
    plan = plan_replicas(2, [None, None])  # unpinned: each uses all 2 CPUs
    assert (plan.lockstep, plan.parallel, plan.concurrent_steps) == (True, 2, 1)
    note = plan_note(plan, stopped=False)
    assert "taking turns step by step: 2 x 2 threads (the framework's default) would not " \
           "fit 2 CPUs at once" in note


def test_as_many_replicas_compute_at_once_as_fit_the_cpus(cpus):
    cpus(2)
    plan = plan_replicas(4, [1, 1, 1, 1])
    assert plan.concurrent_steps == 2
    assert "2 computing a step at a time: 1 + 1 + 1 + 1 threads" in plan_note(plan, False)


def test_replicas_that_fit_the_cpus_all_run_side_by_side(cpus):
    cpus(16)
    plan = plan_replicas(2, [8, 8])
    assert plan.concurrent_steps is None
    assert plan_note(plan, False) == "The 2 replicas ran side by side, compared in lockstep."


def test_without_lockstep_the_plan_is_as_before(cpus):
    cpus(2)
    plan = plan_replicas(2, [2, 2], lockstep=False)
    assert (plan.lockstep, plan.parallel, plan.concurrent_steps) == (False, 1, None)


def test_the_eta_counts_the_steps_every_unfinished_replica_has_left():
    seen = ReplicaSteps(750)
    assert "ETA" not in seen.line({"replica 0": ("running", 0), "replica 1": ("running", 0)},
                                  now=0.0)  # start-up is no step rate
    seen.line({"replica 0": ("running", 1), "replica 1": ("running", 1)}, now=20.0)
    line = seen.line({"replica 0": ("running", 101), "replica 1": ("running", 101)}, now=40.0)
    # 200 steps in 20 s; 649 + 649 left: 130 s.
    assert line == ("replica 0: running, 101/750 steps  replica 1: running, 101/750 steps  "
                    "ETA 2m 10s")  # written as every duration is (`report.formatting.duration`)


def test_piped_a_check_prints_plain_progress_lines_on_stdout_and_nothing_on_stderr():
    stderr, stdout = io.StringIO(), io.StringIO()
    with replica_progress(out=Console(file=stderr), plain=Console(file=stdout, width=200),
                          every=0.0) as update:
        update({"replica 0": ("running", 0)}, expected_steps=10)
        update({"replica 0": ("running", 5)}, expected_steps=10)
    assert stderr.getvalue() == ""
    assert stdout.getvalue().splitlines() == ["replica 0: running, 0/10 steps",
                                              "replica 0: running, 5/10 steps"]


def test_with_json_there_is_no_progress_at_all():
    with replica_progress(enabled=False) as update:
        assert update is None
