"""Data loading: torch `DataLoader` workers and `tf.data` pipelines under `twinrun.deterministic()`.

torch seeds `random`, NumPy and torch in every worker by itself, from a base seed drawn from the
loader's generator (else torch's global one); twinrun gives loaders their own generator, from the
`shuffle` seed, and keeps torch's worker seeding after a `worker_init_fn` that reseeds from the
OS. TensorFlow's op determinism already keeps every `tf.data` pipeline in order.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires, run_cli
from twinrun.backends import is_installed

SCRIPTS = Path(__file__).parent / "scripts"
AUGMENT = SCRIPTS / "loader_augment.py"

requires_torch = requires("torch")
requires_tensorflow = requires("tensorflow")


def run_python(code, backend):
    """The last line `code` prints, as JSON, from a fresh interpreter on `backend`."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def check(*args, store):
    completed = run_cli("check", "--json", "--store", store, "-n", "2", *args)
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    return json.loads(completed.stdout)


# What `twinrun check` shows

@requires_torch
@pytest.mark.slow
def test_shuffling_workers_that_augment_with_numpy_are_identical_under_check(store):
    verdict = check("--", "python", AUGMENT, store=store)
    assert verdict["verdict"] == "identical", verdict
    assert [r["steps"] for r in verdict["replicas"]] == [8, 8]


@requires_torch
@pytest.mark.slow
def test_workers_reseeded_from_the_os_are_identical_under_check_and_diverge_without_determinism(
        store):
    # The worker_init_fn calls np.random.seed(): under determinism twinrun seeds the workers
    # again after it; without, each run's augmentation noise comes from the OS.
    verdict = check("--", "python", AUGMENT, "--reseed-workers", store=store)
    assert verdict["verdict"] == "identical", verdict
    verdict = check("--no-determinism", "--no-localize", "--", "python", AUGMENT,
                    "--reseed-workers", store=store)
    assert verdict["verdict"] == "diverged"
    divergence = verdict["first_divergence"]
    assert (divergence["step"], divergence["records"][0]) == (0, "batch")


@requires_torch
@pytest.mark.slow
def test_an_unmodified_loader_script_is_identical_under_check_and_diverges_as_written(store):
    # zero_loader.py seeds nothing and never imports twinrun: the hooks seed it before its
    # first line; --no-determinism runs it as written, so its shuffle differs run to run.
    script = str(Path(AUGMENT).with_name("zero_loader.py"))
    verdict = check("--", "python", script, store=store)
    assert verdict["verdict"] == "identical", verdict
    assert [r["steps"] for r in verdict["replicas"]] == [8, 8]
    verdict = check("--no-determinism", "--no-localize", "--", "python", script, store=store)
    assert verdict["verdict"] == "diverged"
    divergence = verdict["first_divergence"]
    assert divergence["step"] == 0 and "batch" in divergence["records"], divergence


@requires_torch
@pytest.mark.slow
def test_a_study_varying_order_varies_a_loader_the_script_never_seeded(store):
    # The script reads no seed: its DataLoader takes the study's order seed through
    # deterministic(), and the study counts that as the script reading it.
    completed = run_cli("variance", "--runs", 2, "--vary", "order", "--metric", "test_loss",
                        "--store", store, "--json", "--", "python", AUGMENT, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout)
    assert results["finished"] == 2 and results["unread_seeds"] == []
    assert results["sources"]["order"]["sd"] > 0


# The mechanism, measured in fresh processes

def probe(settings):
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "loader_probe.py"), json.dumps(settings)],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


SETTINGS = {
    "on": {},
    "on, model drew 5 numbers first": {"draws": 5},
    "on, another shuffle seed": {"shuffle": 9},
    "off": {"determinism": False},
    "off, model drew 5 numbers first": {"determinism": False, "draws": 5},
    "on, workers reseeded from the OS": {"reseed": True},
    "off, workers reseeded from the OS": {"determinism": False, "reseed": True},
    "on, user's generator": {"generator": 1},
    "off, user's generator": {"determinism": False, "generator": 1},
    "on, in_order=False": {"in_order": False},
}


@pytest.fixture(scope="module")
def probes():
    """Each setting's loader, in two fresh processes: {name: (first run, second run)}."""
    names = list(SETTINGS)
    first, second = (probe([SETTINGS[name] for name in names]) for _ in range(2))
    return {name: (a, b) for name, a, b in zip(names, first, second)}


def digests(probes, name):
    return [run["digest"] for run in probes[name]]


@requires_torch
@pytest.mark.slow
def test_torch_alone_seeds_numpy_in_workers_from_its_global_seed_so_seeding_by_hand_repeats(
        probes):
    # determinism off still seeds torch, as a user would by hand: torch passes that on.
    first, second = digests(probes, "off")
    assert first == second
    assert not any(run["has_generator"] for run in probes["off"])


@requires_torch
@pytest.mark.slow
def test_without_twinrun_the_order_moves_when_the_model_draws_more_random_numbers(probes):
    assert digests(probes, "off")[0] != digests(probes, "off, model drew 5 numbers first")[0]


@requires_torch
@pytest.mark.slow
def test_with_twinrun_the_order_follows_the_shuffle_seed_and_not_the_models_draws(probes):
    on = digests(probes, "on")
    assert on[0] == on[1]
    assert digests(probes, "on, model drew 5 numbers first") == on
    other = digests(probes, "on, another shuffle seed")
    assert other[0] == other[1] != on[0]
    assert all(run["has_generator"] for run in probes["on"])


@requires_torch
@pytest.mark.slow
def test_a_worker_init_fn_that_reseeds_from_the_os_is_undone_only_with_determinism_on(probes):
    # twinrun seeds again exactly as torch had: the same batches as with no worker_init_fn.
    assert digests(probes, "on, workers reseeded from the OS") == digests(probes, "on")
    first, second = digests(probes, "off, workers reseeded from the OS")
    assert first != second


@requires_torch
@pytest.mark.slow
def test_a_generator_the_user_passes_is_used_as_is(probes):
    assert digests(probes, "on, user's generator") == digests(probes, "off, user's generator")
    assert digests(probes, "on, user's generator")[0] != digests(probes, "on")[0]


@requires_torch
@pytest.mark.slow
def test_in_order_false_is_set_back_to_true_under_determinism(probes):
    assert [run["in_order"] for run in probes["on, in_order=False"]] == [True, True]
    assert digests(probes, "on, in_order=False") == digests(probes, "on")


# The report

def data_controls(report):
    return {c["name"]: c for c in report["controls"]
            if "DataLoader" in c["name"] or "tf.data" in c["name"]}


@requires_torch
def test_the_report_lists_the_torch_dataloader_controls_and_turns_them_off_with_determinism():
    code = ("import json, torch, twinrun\n"
            "init = torch.utils.data.DataLoader.__init__\n"
            "on = twinrun.deterministic(7, backend='torch').to_dict()\n"
            "patched = torch.utils.data.DataLoader.__init__ is not init\n"
            "off = twinrun.deterministic(7, backend='torch', determinism=False).to_dict()\n"
            "restored = torch.utils.data.DataLoader.__init__ is init\n"
            "print(json.dumps([on, off, patched, restored]))")
    on, off, patched, restored = run_python(code, "torch")
    controls = data_controls(on)
    assert {name: c["state"] for name, c in controls.items()} == {
        "torch DataLoader order": "applied", "torch DataLoader workers": "applied"}
    seed = on["seeds"]["shuffle"]
    assert f"shuffle seed {seed}" in controls["torch DataLoader order"]["detail"]
    assert "worker_init_fn" in controls["torch DataLoader workers"]["detail"]
    assert {c["state"] for c in data_controls(off).values()} == {"off"}
    assert patched and restored


@requires_tensorflow
@pytest.mark.slow
def test_the_report_says_op_determinism_keeps_tf_data_in_order_and_off_honours_the_script():
    code = ("import json, twinrun\n"
            "on = twinrun.deterministic(7, backend='tensorflow').to_dict()\n"
            "print(json.dumps(on))")
    control = data_controls(run_python(code, "tensorflow"))["tf.data deterministic order"]
    assert control["state"] == "applied"
    assert "deterministic=False is overridden" in control["detail"]
    code = ("import json, twinrun\n"
            "print(json.dumps(twinrun.deterministic(7, backend='tensorflow', "
            "determinism=False).to_dict()))")
    control = data_controls(run_python(code, "tensorflow"))["tf.data deterministic order"]
    assert control["state"] == "off"


# The project's own pytest marker, on a training fed by a DataLoader with workers

@requires_torch
@pytest.mark.slow
@pytest.mark.reproducible(n=2, seed=11)
def test_a_training_fed_by_augmenting_workers_repeats_bit_for_bit_in_fresh_processes():
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import twinrun
    import twinrun.torch

    twinrun.deterministic(backend="torch")  # the marker's seed, in each process

    class Jittered(TensorDataset):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x + torch.from_numpy(np.random.normal(0, 0.05, x.shape)).float(), y

    def reseed_from_os(worker_id):
        np.random.seed()

    dataset = Jittered(torch.linspace(0, 1, 96).reshape(48, 2), torch.arange(48) % 2)
    loader = DataLoader(dataset, batch_size=16, num_workers=2, shuffle=True,
                        worker_init_fn=reseed_from_os)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with twinrun.torch.Tracer(model, optimizer) as tracer:
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            tracer.step(loss, (xb, yb))
