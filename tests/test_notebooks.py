"""Notebooks checked as they are: `twinrun check/lint/record/variance nb.ipynb` and the
`%%twinrun` cell magic, with real Jupyter kernels (nbclient, ipykernel), no mock kernel.

The notebooks are tiny (a linear model on a few dozen rows): kernels cost their start-up, and
the point here is the machinery, not the training.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import nbformat.v4 as v4
import pytest

from conftest import assert_one_sentence_error, run_cli

EXAMPLE = Path(__file__).parents[1] / "examples" / "seed-question.ipynb"

DATA = ("import numpy as np\n"
        "import torch\n"
        "x = torch.linspace(-1, 1, 64 * 4).reshape(64, 4)\n"
        "y = (x.sum(dim=1) > 0).long()")
TRAIN = ("model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),\n"
         "                            torch.nn.Dropout(0.25), torch.nn.Linear(8, 2))\n"
         "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
         "for start in range(0, 64, 16):\n"
         "    rows = torch.from_numpy(order[start:start + 16])\n"
         "    optimizer.zero_grad()\n"
         "    loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])\n"
         "    loss.backward()\n"
         "    optimizer.step()")


def notebook(path, *cells):
    """Write a notebook of `cells` (strings are code cells) to `path`; return the path."""
    made = [v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    nbformat.write(v4.new_notebook(cells=made), str(path))
    return path


@pytest.fixture
def private_jupyter(tmp_path):
    """Jupyter's and IPython's folders (and HOME) pointed at empty temporary folders, to show
    that a check writes nothing to the user's configuration."""
    home = tmp_path / "home"
    folders = {"HOME": home, "JUPYTER_CONFIG_DIR": home / ".jupyter",
               "JUPYTER_DATA_DIR": home / "jupyter-data",
               "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime", "IPYTHONDIR": home / ".ipython"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    yield {name: str(folder) for name, folder in folders.items()}
    for name, folder in folders.items():
        if name != "HOME":
            assert list(folder.iterdir()) == [], f"{name} was written: {list(folder.iterdir())}"


def check(*args, store, env=None):
    completed = run_cli("check", "--json", "--store", store, *args, env=env)
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    return json.loads(completed.stdout)


# -- lint: no kernel ----------------------------------------------------------------------------

def test_lint_names_the_hash_seed_cell_and_line_and_the_tf1_cells_of_the_example():
    completed = run_cli("lint", "--json", EXAMPLE)
    assert completed.returncode == 0, completed.stderr
    found = [(f["rule"], f["cell"], f["line"]) for f in json.loads(completed.stdout)["findings"]]
    assert ("hash-seed-in-python", 2, 3) in found
    assert ("misspelt-env-var", 2, 3) in found
    assert [(cell, line) for rule, cell, line in found if rule == "tf1-api"] == [
        (2, 14), (3, 3), (3, 5)]
    hash_seed = next(f for f in json.loads(completed.stdout)["findings"]
                     if f["rule"] == "hash-seed-in-python")
    assert "the kernel has already started; set it in the kernel's environment, or run the " \
           "notebook under `twinrun check`" in hash_seed["fix"].lower()


def test_lint_prints_each_finding_with_its_cell_title_and_line():
    completed = run_cli("lint", EXAMPLE)
    assert completed.returncode == 0, completed.stderr
    assert "seed-question.ipynb, cell 2 (`import os`), line 3" in completed.stdout
    assert "(cells 2, 3)" in " ".join(completed.stdout.split())


def test_lint_skips_magics_and_shell_lines_and_reads_python_cell_magics(tmp_path):
    path = notebook(tmp_path / "magics.ipynb",
                    "%pip install numpy\n!echo hello\nfiles = !ls\nimport numpy as np",
                    "%%bash\nfor f in *; do echo $f; done",
                    "%%time\nrng = np.random.default_rng()\nnp.shape?",
                    "if True:\n    !ls\n    x = 1")
    completed = run_cli("lint", "--json", path)
    assert completed.returncode == 0, completed.stderr
    found = [(f["rule"], f["cell"], f["line"]) for f in json.loads(completed.stdout)["findings"]]
    assert found == [("unseeded-generator", 3, 2)]


def test_cells_last_run_out_of_order_get_a_finding(tmp_path):
    cells = [v4.new_code_cell("import numpy as np", execution_count=1),
             v4.new_code_cell("x = np.ones(3)", execution_count=4),
             v4.new_code_cell("y = x * 2", execution_count=2)]
    completed = run_cli("lint", "--json", notebook(tmp_path / "order.ipynb", *cells))
    findings = json.loads(completed.stdout)["findings"]
    assert [(f["rule"], f["cell"]) for f in findings] == [("cells-run-out-of-order", 3)]
    assert "[1], [4], [2]" in findings[0]["title"]
    in_order = [v4.new_code_cell("a = 1", execution_count=1),
                v4.new_code_cell("b = 2", execution_count=3)]
    completed = run_cli("lint", "--json", notebook(tmp_path / "fine.ipynb", *in_order))
    assert json.loads(completed.stdout)["count"] == 0


def test_a_file_that_is_no_notebook_is_one_sentence(tmp_path, store):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert_one_sentence_error(run_cli("lint", broken), "is not a Jupyter notebook")
    assert_one_sentence_error(run_cli("check", "--store", store, broken),
                              "is not a Jupyter notebook")
    assert_one_sentence_error(run_cli("check", "--store", store, tmp_path / "missing.ipynb"),
                              "Notebook not found")


def test_a_parameter_without_a_parameters_cell_is_one_sentence(tmp_path, store):
    path = notebook(tmp_path / "plain.ipynb", "lr = 0.1")
    assert_one_sentence_error(run_cli("check", "--store", store, path, "-p", "lr", "0.5"),
                              "tagged `parameters`")


def test_the_cell_magic_refuses_a_line_it_does_not_take_in_one_sentence():
    from twinrun.errors import TwinrunError
    from twinrun.magic import parse_magic_line

    with pytest.raises(TwinrunError, match=r"options it does not take \(--bogus\)"):
        parse_magic_line("check -n 2 --bogus")
    with pytest.raises(TwinrunError, match="is not one it takes"):
        parse_magic_line("train -n 2")
    assert parse_magic_line("check --threads 1,2 -n 2").threads == [1, 2]


def test_the_cell_magic_replays_the_history_without_installs_or_itself():
    from twinrun.notebooks.history import history_notebook

    history = ["", "%pip install -q twinrun\nimport numpy as np", "%load_ext twinrun",
               "%%twinrun check\nfit()", "x = np.ones(3)"]
    made = history_notebook(history, "fit()")
    assert [(c.source, c.metadata["twinrun"]["label"]) for c in made.cells] == [
        ("import numpy as np", "In [1]"), ("x = np.ones(3)", "In [4]"), ("fit()", "this cell")]


# -- check: real kernels -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_seeded_notebook_is_identical_its_magics_and_shell_lines_run_and_it_is_not_written(
        tmp_path, store, private_jupyter):
    path = notebook(tmp_path / "seeded.ipynb",
                    v4.new_markdown_cell("# A tiny training"),
                    "%pip --version\n!echo shell-line-ran\n" + DATA,
                    "torch.manual_seed(0)\norder = np.arange(64)",
                    TRAIN)
    before = path.read_bytes()
    verdict = check(path, store=store, env=private_jupyter)
    assert verdict["verdict"] == "identical", verdict
    assert verdict["steps_compared"] == 4
    assert path.read_bytes() == before
    phase = verdict["notebook"]["phases"][0]
    assert (phase["cell"], phase["line"]) == (4, 9)
    assert phase["cell_title"].startswith("model = torch.nn.Sequential(")
    folder = Path(verdict["notes"][-2].removeprefix("traces and logs in "))
    log = (folder / "replica-0.log").read_text()
    assert "shell-line-ran" in log and "pip " in log
    controls = json.loads((folder / "replica-0.trace.hooks.json").read_text())["determinism"]
    hash_seed = next(c for c in controls if c["name"] == "PYTHONHASHSEED")
    assert hash_seed["state"] == "already set"  # in the kernel's environment before it started
    executed = nbformat.read(str(folder / "replica-1.ipynb"), as_version=4)
    outputs = "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert "shell-line-ran" in outputs


@pytest.mark.slow
def test_an_unseeded_shuffle_in_cell_3_diverges_at_step_0_at_the_batch_naming_cell_3(tmp_path,
                                                                                      store):
    path = notebook(tmp_path / "shuffle.ipynb", DATA, "torch.manual_seed(0)",
                    "import os\n"
                    "order = np.random.default_rng(int.from_bytes(os.urandom(4), 'little'))"
                    ".permutation(64)\n" + TRAIN)
    # A TMPDIR too long for a Unix socket's path (107 bytes) under the kernel's folder, as
    # pytest-xdist's and some CI runners' are: the sockets go to a short folder of their own.
    temporary = tmp_path / ("tmp-" + "long" * 20)
    temporary.mkdir()
    socket_folders = set(Path("/tmp").glob("twinrun-k-*"))
    verdict = check(path, store=store, env={"TMPDIR": str(temporary)})
    assert verdict["verdict"] == "diverged"
    assert verdict["first_divergence"]["step"] == 0
    assert "batch" in verdict["first_divergence"]["records"]
    # Lockstep stopped both replicas; their kernels' private folders went with them.
    assert list(temporary.glob("twinrun-kernel-*")) == []
    assert set(Path("/tmp").glob("twinrun-k-*")) <= socket_folders
    assert verdict["notebook"]["phases"][0]["cell"] == 3
    assert any(note.startswith("The divergence at step 0 is in cell 3 (`import os`)")
               for note in verdict["notes"]), verdict["notes"]


@pytest.mark.slow
def test_a_noisy_layer_defined_in_one_cell_and_trained_in_another_is_localised(tmp_path, store):
    noise = ("import os\n"
             "class Noise(torch.nn.Module):\n"
             "    def __init__(self):\n"
             "        super().__init__()\n"
             "        seed = int.from_bytes(os.urandom(4), 'little')\n"
             "        self.generator = torch.Generator().manual_seed(seed)\n"
             "    def forward(self, inputs):\n"
             "        return inputs + 1e-3 * torch.randn(inputs.shape, generator=self.generator)")
    train = TRAIN.replace("torch.nn.ReLU(),", "Noise(), torch.nn.ReLU(),")
    path = notebook(tmp_path / "noise.ipynb", DATA, noise, "order = np.arange(64)\n" + train)
    verdict = check(path, store=store)
    assert verdict["verdict"] == "diverged"
    assert "batch" not in verdict["first_divergence"]["records"]
    assert verdict["first_divergence"]["layer"]["class"] == "Noise"
    assert verdict["notebook"]["phases"][0]["cell"] == 3


@pytest.mark.slow
def test_a_cell_that_raises_exits_2_naming_the_cell_with_its_whole_output_kept(tmp_path,
                                                                               store):
    parameters = v4.new_code_cell("name = 'default'", metadata={"tags": ["parameters"]})
    path = notebook(tmp_path / "raises.ipynb", "print('before the error')", parameters,
                    "values = {}\nvalues[name]")
    completed = run_cli("check", "--store", store, path, "-p", "name", "chosen")
    assert_one_sentence_error(completed, "Replica ", "cell 3 (`values = {}`) raised KeyError: "
                              "'chosen'", "replica-")
    log = Path(completed.stderr.split("its whole output is in ")[1].strip().rstrip(".")).read_text()
    assert "before the error" in log and "Traceback" in log
    executed = nbformat.read(log.split("The executed notebook is ")[1].strip().rstrip("."),
                             as_version=4)
    assert executed.cells[2].metadata["tags"] == ["injected-parameters"]
    assert executed.cells[2].source == "# Parameters\nname = 'chosen'\n"


@pytest.mark.slow
def test_a_notebook_is_recorded_and_checked_against_its_reference(tmp_path):
    # The kernel starts in the notebook's folder, so relative paths (the store, the notebook)
    # must still mean the folder the command ran in.
    (tmp_path / "notebooks").mkdir()
    notebook(tmp_path / "notebooks" / "ref.ipynb", DATA,
             "torch.manual_seed(0)\norder = np.arange(64)", TRAIN)
    completed = run_cli("record", "--json", "-o", "nb.twinrun", "--store", "runs",
                        "notebooks/ref.ipynb", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["reference"]["steps"] == 4
    completed = run_cli("check", "--json", "--against", "nb.twinrun", "--store", "runs",
                        "notebooks/ref.ipynb", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "identical"
    assert verdict["replicas"][0]["label"] == "reference"
    assert not (tmp_path / "notebooks" / "runs").exists()


@pytest.mark.slow
def test_a_variance_study_of_a_notebook_hands_it_seeds_and_takes_its_metrics(tmp_path, store):
    parameters = v4.new_code_cell("scale = 1.0", metadata={"tags": ["parameters"]})
    path = notebook(tmp_path / "study.ipynb", "import numpy as np\nimport twinrun", parameters,
                    "rng = np.random.default_rng(twinrun.seeds()['init'])\n"
                    "twinrun.log_metrics(test_accuracy=scale * float(rng.uniform()))")
    completed = run_cli("variance", "--json", "--runs", "2", "--vary", "init", "--store", store,
                        path, "-p", "scale", "1000")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    init = result["sources"]["init"]
    assert init["n"] == 2
    assert 1 < init["mean"] < 1000 and init["sd"] > 0  # scaled, and the two seeds differ
    assert result["unread_seeds"] == []


# -- the %%twinrun cell magic, inside a real kernel ---------------------------------------------

@pytest.mark.slow
def test_the_cell_magic_checks_a_seeded_training_cell_inside_a_real_kernel(tmp_path, store):
    path = notebook(tmp_path / "magic.ipynb",
                    DATA + "\ntorch.manual_seed(0)\norder = np.arange(64)",
                    "%load_ext twinrun",
                    "%%twinrun check -n 2\n" + TRAIN,
                    "print('model' in dir())")
    env = {k: v for k, v in os.environ.items() if k != "TWINRUN_TRACE"}
    env["TWINRUN_STORE"] = str(store)
    executed_path = tmp_path / "executed.ipynb"
    completed = subprocess.run([sys.executable, "-m", "twinrun.programs.notebook", path,
                                "--no-hooks", "--output", executed_path], env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    executed = nbformat.read(str(executed_path), as_version=4)
    shown = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                    for o in executed.cells[2].outputs)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", shown)  # Rich's colours, in the text/plain copy
    assert "IDENTICAL: every step, every tensor, same bits (4 steps compared)." in \
        " ".join(shown.split())
    assert "this cell (`model = torch.nn.Sequential(" in " ".join(shown.split())
    # The kernel in use ran nothing of the checked cell: `model` was never defined in it.
    last = "".join(o.get("text", "") for o in executed.cells[3].outputs)
    assert last.strip() == "False"
