"""`twinrun check` on real sources of nondeterminism, each observable on this CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_sentence_error, requires_data, run_cli
from twinrun.store import Store
from twinrun.trace import read_trace

SCRIPTS = Path(__file__).parent / "scripts"
pytestmark = pytest.mark.slow


def check(*args, store, env=None):
    completed = run_cli("check", "--json", "--store", store, *args, env=env)
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert completed.returncode == (0 if verdict["verdict"] == "identical" else 1)
    return verdict


def script(name, *args):
    return ["--", "python", str(SCRIPTS / name), *args]


# (a) the hash seed

def test_labels_from_a_set_of_strings_differ_between_plain_python_runs():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    outputs = {subprocess.run([sys.executable, str(SCRIPTS / "set_labels.py")], env=env,
                              capture_output=True, text=True, check=True).stdout
               for _ in range(3)}
    assert len(outputs) > 1


def test_labels_from_a_set_of_strings_are_identical_under_check(store):
    verdict = check(*script("set_labels.py"), store=store)
    assert verdict["verdict"] == "identical"
    assert verdict["first_divergence"] is None
    assert len({r["fingerprint"] for r in verdict["replicas"]}) == 1
    # Lockstep (the default) still compares every step of an identical pair.
    steps = {r["steps"] for r in verdict["replicas"]}
    assert steps == {verdict["steps_compared"]} and verdict["steps_compared"] > 1
    assert not any(r["stopped_early"] for r in verdict["replicas"])


def test_a_random_hash_seed_diverges_at_the_data_and_names_the_hash_seed(store):
    verdict = check("--hash-seed", "random", *script("set_labels.py"), store=store)
    assert verdict["verdict"] == "diverged"
    assert verdict["first_divergence"]["records"] == ["data"]
    assert any("hash seed" in cause for cause in verdict["likely_causes"])
    assert "process.hash_probe" in {d["key"] for d in verdict["environment_diff"]}


# (b) an unseeded shuffle

def test_an_unseeded_numpy_shuffle_diverges_at_step_0_at_the_batch(store):
    verdict = check(*script("unseeded_shuffle.py"), store=store)
    divergence = verdict["first_divergence"]
    assert (divergence["step"], divergence["records"][0]) == (0, "batch")


# (c) thread counts

def test_torch_replicas_with_1_and_2_threads_diverge_and_show_the_thread_counts(store):
    verdict = check("--threads", "1,2", *script("torch_matmul.py"), store=store)
    assert verdict["verdict"] == "diverged"
    diff = {d["key"]: d["values"] for d in verdict["environment_diff"]}
    assert diff["threads.intra_op"] == [1, 2]
    assert diff["env.OMP_NUM_THREADS"] == ["1", "2"]
    assert any("Thread counts" in cause for cause in verdict["likely_causes"])


def test_by_default_a_check_stops_every_replica_within_one_step_of_the_divergence(store):
    # 2,000 steps to train, but the replicas run side by side in lockstep by default: both
    # stop a step after they part, whatever the cores.
    verdict = check("--threads", "1,2", "--no-localize",
                    *script("torch_matmul.py", "--steps", "2000"), store=store)
    step = verdict["first_divergence"]["step"]
    assert step < 10
    assert [r["steps"] for r in verdict["replicas"]] == [step + 1, step + 1]
    assert all(r["stopped_early"] for r in verdict["replicas"])
    assert any("compared in lockstep" in note for note in verdict["notes"])
    runs = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    assert [r["status"] for r in runs] == ["stopped", "stopped"]


def test_no_lockstep_trains_every_replica_to_its_end_and_shows_how_the_loss_parted(store):
    verdict = check("--threads", "1,2", "--no-lockstep", "--no-localize",
                    *script("torch_matmul.py", "--steps", "12"), store=store)
    assert verdict["verdict"] == "diverged"
    assert [(r["steps"], r["stopped_early"]) for r in verdict["replicas"]] == [(12, False)] * 2
    start = verdict["first_divergence"]["step"]
    assert [g["step"] for g in verdict["loss_growth"]] == list(range(start, 12))
    assert any("each to its end" in note for note in verdict["notes"])


def test_lockstep_with_fewer_slots_than_replicas_is_refused_before_any_replica_starts(store):
    completed = run_cli("check", "--store", store, "--lockstep", "--jobs", "1",
                        *script("torch_matmul.py"))
    assert_one_sentence_error(completed, "Lockstep runs every replica at once",
                              "--no-lockstep")
    assert not (Path(store) / "checks").exists()


# (d) a custom layer that adds noise from a known step on

@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_noise_from_a_custom_keras_layer_is_localised_to_its_step_and_layer(backend, store):
    verdict = check(*script("keras_jitter.py", "--start", "3"), store=store,
                    env={"KERAS_BACKEND": backend})
    divergence = verdict["first_divergence"]
    assert divergence["step"] == 3
    assert divergence["layer"]["name"] == "jitter"
    assert divergence["layer"]["class"] == "Jitter"
    assert verdict["localization"]["where"] == "forward"
    assert verdict["localization"]["race"] is False


# (e) TensorFlow's default CPU kernels against its deterministic ones

@requires_data
def test_tensorflow_with_and_without_determinism_differ_in_bits_but_stay_within_5_percent(store):
    # One pair, two readings: the bits part (the exact first difference, and the settings
    # that differ, named), yet ten steps keep every loss within 5 %.
    completed = run_cli("check", "--json", "--store", store, "--backend", "tensorflow",
                        "--preset", "tiny", "--determinism", "on,off", "--rtol", "0.05")
    assert completed.returncode == 0, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "within_tolerance"
    assert verdict["first_divergence"] is not None
    keys = {d["key"] for d in verdict["environment_diff"]}
    assert {"env.TF_DETERMINISTIC_OPS", "process.determinism"} <= keys
    assert verdict["tolerance"] == {"rtol": 0.05, "atol": 0.0}
    assert 0 < verdict["max_loss_difference"] <= 0.05
    # No lockstep stop at the first difference: the tolerance needs every step.
    assert [(r["steps"], r["stopped_early"]) for r in verdict["replicas"]] == [(10, False)] * 2


# identical where it should be

@requires_data
@pytest.mark.parametrize(("backend", "size", "steps"), [
    ("tensorflow", ["--preset", "quick", "--epochs", "1"], 75),
    ("jax", ["--preset", "tiny"], 10),
    ("torch", ["--preset", "tiny"], 10)])
def test_the_fashion_cnn_is_identical_on_each_backend(backend, size, steps, store):
    # The real quick preset (its data, model and 75-step epoch, then the whole test set) on
    # `make run`'s backend, one epoch: `make run` checks all ten. Later epochs' order is
    # tests/test_batch_order.py's; two epochs on TensorFlow took 219 s of a 28-minute suite on
    # the slow Zen 3 box (docs/performance.md). JAX and torch on the tiny preset: their quick
    # checks took 144 and 84 s of a 29-minute suite there, most of it start-up and the test
    # set; their two fresh processes are compared step by step all the same.
    verdict = check("--backend", backend, *size, "--seed", "7", store=store)
    assert verdict["verdict"] == "identical"
    assert verdict["steps_compared"] == steps
    fingerprints = {r["fingerprint"] for r in verdict["replicas"]}
    assert len(fingerprints) == 1 and None not in fingerprints
    # After the compared steps, the test set too: the same loss and accuracy, exactly.
    first, second = (r["metrics"] for r in verdict["replicas"])
    assert first["test_loss"] == second["test_loss"] and first["test_accuracy"] == second[
        "test_accuracy"]
    if backend != "tensorflow":
        # And another seed trains another model (test_train.py does this on TensorFlow).
        other = run_cli("train", "--backend", backend, *size, "--seed", "8", "--store", store,
                        "--json")
        assert other.returncode == 0, other.stderr[-3000:]
        trained = json.loads(other.stdout)
        assert trained["backend"] == backend and trained["seed"] == 8
        assert trained["fingerprint"] not in fingerprints


@requires_data
def test_check_report_writes_the_page_of_the_verdict_it_printed(tmp_path, store):
    page = tmp_path / "pages" / "check.json"
    page.parent.mkdir()
    completed = run_cli("check", "--json", "--store", store, "--backend", "torch", "--preset",
                        "tiny", "--report", page)
    assert completed.returncode == 0, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "identical" and verdict["steps_compared"] == 10
    report = json.loads(page.read_text())
    assert report["kind"] == "check"
    assert report["verdict"] == verdict
    assert [(losses["replica"], losses["steps"]) for losses in report["replica_losses"]] == [
        (0, list(range(10))), (1, list(range(10)))]
    assert report["replica_losses"][0]["loss"] == report["replica_losses"][1]["loss"]
    [listed] = json.loads(run_cli("checks", "--store", store, "--json").stdout)
    assert report["check"]["check_id"] == listed["check_id"]


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """`twinrun record --workload`: the tiny preset on torch, recorded once."""
    folder = tmp_path_factory.mktemp("tiny-reference")
    path = folder / "tiny.twinrun"
    completed = run_cli("record", "-o", path, "--workload", "fashion-cnn", "--preset", "tiny",
                        "--backend", "torch", "--seed", "4", "--store", folder / "store")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return path


@requires_data
def test_record_workload_writes_a_reference_of_every_step(tiny_reference):
    from twinrun.checks.reference import read_reference

    reference = read_reference(tiny_reference)
    assert len(reference.trace.steps) == 10
    identity = reference.identity
    assert (identity["kind"], identity["workload"], identity["preset"]) == (
        "workload", "fashion-cnn", "tiny")


@requires_data
def test_check_against_alone_reruns_the_recorded_workload_and_is_identical(tiny_reference,
                                                                           store):
    # No COMMAND and no --workload: the reference names what to run.
    completed = run_cli("check", "--against", tiny_reference, "--json", "--store", store)
    assert completed.returncode == 0, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "identical" and verdict["steps_compared"] == 10
    assert verdict["replicas"][0]["label"] == "reference"
    assert verdict["reference"]["path"] == str(tiny_reference)
    runs = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    assert [(run["preset"], run["backend"], run["seed"]) for run in runs] == [
        ("tiny", "torch", 4)]


def test_the_answers_experiment_with_three_replicas_is_identical(store):
    # The answer ran five; three replicas test the same thing (more than a pair, taking turns
    # on two cores) at 60 % of the time.
    verdict = check("-n", "3", "--workload", "answer-demo", store=store)
    assert verdict["verdict"] == "identical"
    rows = [r["metrics"] for r in verdict["replicas"]]
    assert len(rows) == 3
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert len({row[key] for row in rows}) == 1
    checks = json.loads(run_cli("checks", "--store", store, "--json").stdout)
    assert [(c["kind"], c["replicas"], c["verdict"]) for c in checks] == [
        ("workload", 3, "identical")]
    runs = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    assert {r["run_id"] for r in runs} == {r["run_id"] for r in verdict["replicas"]}
    assert {(r["status"], r["check_id"]) for r in runs} == {("finished", checks[0]["check_id"])}


# a replica that misbehaves

def replica_records(store):
    """{replica: (status, error, steps in its trace)} of the one check in `store`, which
    ended without a verdict (so only its runs are recorded)."""
    with Store(store, create=False) as opened:
        runs = [opened.get_run(run["run_id"]) for run in opened.list_runs()]
    [check_id] = {run["check_id"] for run in runs}
    folder = Path(store) / "checks" / check_id
    return {run["replica"]: (run["status"], run["error"],
                             len(read_trace(folder / f"replica-{run['replica']}.trace").steps))
            for run in runs}


def ended(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_a_failing_replica_stops_the_others_and_shows_its_stderr(tmp_path, store):
    # 400 steps to train, but replica 1 exits after its second: in lockstep, replica 0 is
    # stopped at most one step later, and neither process outlives the check.
    completed = run_cli("check", "--store", store, "--jobs", "2",
                        *script("torch_matmul.py", "--fail-replica", "1", "--steps", "400",
                                "--pid-dir", tmp_path))
    assert_one_sentence_error(completed, "Replica 1 exited with code 3",
                              "the other replicas were stopped",
                              "boom: replica failed on purpose")
    records = replica_records(store)
    assert records[1] == ("failed", "replica 1 exited with code 3", 2)
    status, error, steps = records[0]
    assert (status, error) == ("stopped", "stopped by twinrun check: replica 1 exited with code 3")
    assert steps <= 3
    assert all(ended(int((tmp_path / f"replica-{r}.pid").read_text())) for r in (0, 1))


def test_a_hung_replica_is_failed_at_the_timeout_and_the_others_are_stopped(tmp_path, store):
    completed = run_cli("check", "--store", store, "--jobs", "2", "--timeout", "20",
                        *script("torch_matmul.py", "--hang-replica", "1", "--pid-dir", tmp_path))
    assert_one_sentence_error(completed, "Replica 1 did not finish within 20 s",
                              "raise --timeout")
    records = replica_records(store)
    assert records[1] == ("failed", "replica 1 did not finish within 20 s (hung?)", 2)
    status, error, steps = records[0]
    assert (status, error) == ("stopped",
                               "stopped by twinrun check: replica 1 did not finish within 20 s")
    assert steps <= 3  # of 6: held back in lockstep by the hung replica, then stopped
    hung = int((tmp_path / "replica-1.pid").read_text())
    assert ended(hung)  # the sleeping process was ended, not left behind


def test_traces_of_different_lengths_are_an_error(store):
    completed = run_cli("check", "--store", store, *script("torch_matmul.py", "--short-replica", "1"))
    assert completed.returncode == 2
    assert_one_sentence_error(completed, "different lengths")


def test_a_script_that_writes_no_trace_is_told_how_to_add_one(tmp_path, store):
    plain = tmp_path / "plain.py"
    plain.write_text("print('training without a trace')\n")
    completed = run_cli("check", "--store", store, "--", "python", plain)
    assert completed.returncode == 2
    assert_one_sentence_error(completed, "wrote no trace", "twinrun.keras.Trace()")


def train_a_tiny_torch_model():
    import torch

    import twinrun
    import twinrun.torch

    twinrun.deterministic(backend="torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 8)  # drawn from the seeded global generator
    with twinrun.torch.Tracer(model, optimizer) as tracer:
        for _ in range(5):
            optimizer.zero_grad()
            loss = ((model(x) - 1.0) ** 2).mean()
            loss.backward()
            optimizer.step()
            tracer.step(loss, x)


def test_check_of_a_python_function_runs_it_in_fresh_processes(store):
    import twinrun

    verdict = twinrun.check(train_a_tiny_torch_model, n=2, seed=3, store=str(store))
    assert verdict.verdict == "identical"
    assert [r["steps"] for r in verdict.replicas] == [5, 5]

    from twinrun.store import Store

    with Store(store) as records:
        [check] = records.list_checks()
        runs = records.list_runs(check_id=check["check_id"])
    assert (check["kind"], check["label"]) == ("function",
                                               "twinrun.check(train_a_tiny_torch_model)")
    assert [r["status"] for r in runs] == ["finished", "finished"]


# records: every check keeps its runs and its verdict

def test_a_script_check_records_its_replicas_and_show_prints_the_same_verdict_again(store):
    # -W and -X take a value: the script is set_labels.py, not "ignore" or "dev".
    completed = run_cli("check", "--json", "--store", store, "--", "python", "-W", "ignore",
                        "-X", "dev", SCRIPTS / "set_labels.py")
    assert completed.returncode == 0, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)

    checks = json.loads(run_cli("checks", "--store", store, "--json").stdout)
    assert [c["verdict"] for c in checks] == ["identical"]
    check_id = checks[0]["check_id"]
    shown = run_cli("show", check_id, "--store", store, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == verdict
    assert any(check_id in note for note in verdict["notes"])

    runs = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    assert sorted(r["replica"] for r in runs) == [0, 1]
    assert {r["check_id"] for r in runs} == {check_id}
    assert {r["status"] for r in runs} == {"finished"}
    assert {r["workload"] for r in runs} == {str(SCRIPTS / "set_labels.py")}
    assert {r["fingerprint"] for r in runs} == {verdict["replicas"][0]["fingerprint"]}
    assert {r["run_id"] for r in runs} == {r["run_id"] for r in verdict["replicas"]}
    run = json.loads(run_cli("show", runs[0]["run_id"], "--store", store, "--json").stdout)
    assert run["environment"]["framework"]["name"] == "torch"
    assert run["config"]["command"][-1] == str(SCRIPTS / "set_labels.py")
    folder = Path(store) / "checks" / check_id
    assert run["artifacts"] == str(folder)
    assert {"replica-0.log", "replica-1.log", "replica-0.trace"} <= {p.name for p in
                                                                     folder.iterdir()}


def test_a_module_run_with_python_m_is_checked(tmp_path, store):
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text((SCRIPTS / "set_labels.py").read_text())
    completed = run_cli("check", "--json", "--store", store, "--", "python", "-u", "-m",
                        "mypackage.train", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout)["verdict"] == "identical"


# replicas whose threads do not fit the CPUs at once take turns

def test_replicas_whose_threads_exceed_the_cpus_take_turns_step_by_step(store, tmp_path):
    cpus = len(os.sched_getaffinity(0))
    prefix = tmp_path / "clock"
    verdict = check("--threads", f"{cpus},{cpus}", "--no-localize",
                    *script("step_clock.py", prefix, "--steps", "8"), store=store)
    assert verdict["verdict"] == "identical"
    assert any("taking turns step by step" in note for note in verdict["notes"])
    first, second = (json.loads(Path(f"{prefix}-{i}.json").read_text()) for i in (0, 1))
    assert len(first) == len(second) == 8
    # Step 0 follows start-up in both at once; from step 1 on no two steps overlap in time.
    steps = sorted(first[1:] + second[1:])
    assert all(end <= next_begin for (_, end), (next_begin, _) in zip(steps, steps[1:]))
