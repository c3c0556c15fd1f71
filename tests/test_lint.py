"""`twinrun lint`: each pitfall named at its line, with why and the fix; lint informs, --strict gates."""

import json
from pathlib import Path
from textwrap import dedent

import pytest

from conftest import assert_one_sentence_error, run_cli
from twinrun.lint import lint_source
from twinrun.lint.environment import meant_variable

SCRIPTS = Path(__file__).parent / "scripts"
SEED_QUESTION = SCRIPTS / "seed_question.py"


def rules_by_line(source):
    return [(f.line, f.rule) for f in lint_source(dedent(source))]


def test_the_seed_questions_script_gets_the_hash_seed_misspelling_and_tf1_findings_at_their_lines():
    findings = lint_source(SEED_QUESTION.read_text())
    lines = SEED_QUESTION.read_text().splitlines()

    def line_of(text):
        return next(i for i, line in enumerate(lines, 1) if line.startswith(text))

    assert [(f.line, f.rule) for f in findings] == [
        (line_of("os.environ['PYTHONASHSEED']"), "hash-seed-in-python"),
        (line_of("os.environ['PYTHONASHSEED']"), "misspelt-env-var"),
        (line_of("tf.compat.v1.set_random_seed"), "tf1-api"),
        (line_of("session_conf = tf.compat.v1.ConfigProto"), "tf1-api"),
        (line_of("sess = tf.compat.v1.Session"), "tf1-api"),
        (line_of("K.set_session(sess)"), "tf1-api"),
    ]
    # The line numbers the script's docstring promises.
    assert [f.line for f in findings] == [16, 16, 26, 27, 29, 31]
    misspelt = findings[1]
    assert "PYTHONHASHSEED" in misspelt.title and misspelt.fix == "Spell it `PYTHONHASHSEED`."
    assert all(f.why and f.fix and f.code for f in findings)


@pytest.mark.parametrize("setter", [
    "os.environ['PYTHONHASHSEED'] = '0'",
    "os.environ.setdefault('PYTHONHASHSEED', '0')",
    "os.putenv('PYTHONHASHSEED', '0')",
    "os.environ.update(PYTHONHASHSEED='0')",
    "os.environ.update({'PYTHONHASHSEED': '0'})",
])
def test_setting_the_hash_seed_from_inside_python_is_named_however_it_is_set(setter):
    assert rules_by_line(f"import os\n{setter}\n") == [(2, "hash-seed-in-python")]


def test_setting_the_hash_seed_through_an_imported_environ_is_named():
    assert rules_by_line("from os import environ as env\nenv['PYTHONHASHSEED'] = '1'\n") == [
        (2, "hash-seed-in-python")]


def test_reading_the_hash_seed_is_no_finding():
    assert rules_by_line("import os\nprint(os.environ.get('PYTHONHASHSEED'))\n") == []


@pytest.mark.parametrize("written, meant", [
    ("PYTHONASHSEED", "PYTHONHASHSEED"),
    ("TF_DETERMINISTIC_OP", "TF_DETERMINISTIC_OPS"),
    ("CUBLAS_WORKSPACE_CONFG", "CUBLAS_WORKSPACE_CONFIG"),
    ("OMP_NUM_THRAEDS", "OMP_NUM_THREADS"),
    ("XLA_FLAG", "XLA_FLAGS"),
])
def test_close_misspellings_of_known_variables_are_named_with_the_right_spelling(written, meant):
    findings = lint_source(f"import os\nos.environ[{written!r}] = '1'\n")
    assert [(f.line, f.rule) for f in findings if f.rule == "misspelt-env-var"] == [
        (2, "misspelt-env-var")]
    assert meant in findings[-1].fix


@pytest.mark.parametrize("name", ["PYTHONHASHSEED", "TF_NUM_INTEROP_THREADS", "MY_DATA_DIR",
                                  "EPOCHS", "HOME"])
def test_correct_and_unrelated_names_are_not_misspellings(name):
    assert meant_variable(name) is None


def test_a_misspelt_variable_in_a_subprocess_environment_is_named():
    source = "import subprocess\nsubprocess.run(['python', 't.py'], env={'TF_DETERMINISTIC_OP': '1'})\n"
    assert rules_by_line(source) == [(2, "misspelt-env-var")]


@pytest.mark.parametrize("call", [
    "tf.set_random_seed(1)",
    "tf.compat.v1.set_random_seed(1)",
    "tf.ConfigProto()",
    "tf.compat.v1.Session()",
    "tf.compat.v1.keras.backend.set_session(None)",
])
def test_tf1_seeding_and_session_apis_are_named(call):
    assert rules_by_line(f"import tensorflow as tf\n\n{call}\n") == [(3, "tf1-api")]


def test_keras_3_seeding_is_no_tf1_finding():
    source = """\
        import keras
        import tensorflow as tf
        keras.utils.set_random_seed(1)
        tf.random.set_seed(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    """
    assert rules_by_line(source) == []


@pytest.mark.parametrize("call", [
    "np.random.default_rng()",
    "np.random.default_rng(None)",
    "np.random.RandomState()",
    "random.Random()",
    "random.seed()",
    "torch.Generator()",
    "torch.utils.data.DataLoader(ds, generator=torch.Generator())",
])
def test_generators_without_a_seed_are_named(call):
    source = f"import random\nimport numpy as np\nimport torch\nx = {call}\n"
    assert (4, "unseeded-generator") in rules_by_line(source)


@pytest.mark.parametrize("code", [
    "x = np.random.default_rng(0)",
    "x = np.random.default_rng(seed)",
    "x = random.Random(7)",
    "x = torch.Generator().manual_seed(0)",
    "g = torch.Generator()\ng.manual_seed(seed)",
])
def test_seeded_generators_are_no_finding(code):
    source = f"import random\nimport numpy as np\nimport torch\nseed = 3\n{code}\n"
    assert rules_by_line(source) == []


def test_iterating_over_a_set_of_strings_is_named_at_the_loop():
    source = """\
        names = {"cat", "dog"}
        classes = list(names)
        for i, name in enumerate(set(labels)):
            pass
        index = {name: i for i, name in enumerate({"a", "b"})}
        ordered = sorted(set(labels))
        count = len(set(labels))
        also_ordered = sorted(list(set(labels)))
        for number in {1, 2, 3}:
            pass
    """
    assert rules_by_line(source) == [(2, "set-order"), (3, "set-order"), (5, "set-order")]


def test_the_set_labels_script_is_named_where_it_turns_the_set_into_a_list():
    source = (SCRIPTS / "set_labels.py").read_text()
    line = next(i for i, text in enumerate(source.splitlines(), 1)
                if text.startswith("classes = list(names)"))
    assert [(f.line, f.rule) for f in lint_source(source)] == [(line, "set-order")]


def test_dataloader_workers_without_a_seeded_generator_are_named():
    source = """\
        from torch.utils.data import DataLoader
        a = DataLoader(ds, batch_size=64, shuffle=True, num_workers=2)
        b = DataLoader(ds, batch_size=64, num_workers=0)
        c = DataLoader(ds, num_workers=2, generator=g, worker_init_fn=seed_worker)
        d = DataLoader(ds, num_workers=2, generator=g)
    """
    findings = lint_source(dedent(source))
    assert [(f.line, f.rule) for f in findings] == [(2, "dataloader-workers"),
                                                   (5, "dataloader-workers")]
    assert "generator or worker_init_fn" in findings[0].title
    assert "worker_init_fn" in findings[1].title and "generator " not in findings[1].title


def test_tf_data_with_deterministic_false_is_named():
    source = """\
        import tensorflow as tf
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        options = tf.data.Options()
        options.deterministic = False
        ds = ds.map(parse, deterministic=True)
    """
    assert rules_by_line(source) == [(2, "tf-data-nondeterministic"),
                                     (4, "tf-data-nondeterministic")]


def test_cudnn_benchmark_on_is_named_however_cudnn_was_imported():
    source = """\
        import torch
        from torch.backends import cudnn
        torch.backends.cudnn.benchmark = True
        cudnn.benchmark = True
        cudnn.benchmark = False
    """
    assert rules_by_line(source) == [(3, "cudnn-benchmark"), (4, "cudnn-benchmark")]


def test_a_clean_script_has_no_findings():
    source = (SCRIPTS / "torch_matmul.py").read_text()
    assert lint_source(source) == []


def test_lint_prints_each_finding_with_its_line_why_and_fix_and_exits_0():
    completed = run_cli("lint", SEED_QUESTION)
    assert completed.returncode == 0, completed.stderr
    out = " ".join(completed.stdout.split())
    assert f"{SEED_QUESTION}:16" in out and f"{SEED_QUESTION}:31" in out
    assert out.count("why:") == 6 and out.count("fix:") == 6
    assert "6 reproducibility pitfalls" in out


def test_lint_strict_exits_1_with_findings_and_0_without(tmp_path):
    clean = tmp_path / "clean.py"
    clean.write_text("import random\nrandom.seed(0)\n")
    assert run_cli("lint", "--strict", SEED_QUESTION).returncode == 1
    completed = run_cli("lint", "--strict", clean)
    assert completed.returncode == 0, completed.stderr
    assert "No known reproducibility pitfall" in completed.stdout


def test_lint_json_lists_the_findings():
    completed = run_cli("lint", "--json", SEED_QUESTION)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["count"] == 6 == len(result["findings"])
    assert result["findings"][0] == {**result["findings"][0], "line": 16,
                                     "rule": "hash-seed-in-python"}
    assert set(result["findings"][0]) == {"rule", "line", "column", "code", "title", "why", "fix"}


def test_lint_prints_code_from_the_script_as_text_not_markup(tmp_path):
    script = tmp_path / "marked.py"
    script.write_text("import os\nos.environ['PYTHONHASHSEED'] = '[bold]x[/bold]'\n")
    completed = run_cli("lint", script)
    assert completed.returncode == 0, completed.stderr
    assert "'[bold]x[/bold]'" in completed.stdout


def test_lint_of_a_file_that_is_not_python_is_one_sentence_and_exit_2(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("This is not Python: it has words.\n")
    assert_one_sentence_error(run_cli("lint", notes), "is not Python", "line 1")


def test_lint_of_a_binary_file_is_one_sentence_and_exit_2(tmp_path):
    blob = tmp_path / "weights.py"
    blob.write_bytes(b"\x00\x01\x02binary")
    assert_one_sentence_error(run_cli("lint", blob), "is not Python")


def test_lint_of_a_missing_file_is_one_sentence_and_exit_2(tmp_path):
    assert_one_sentence_error(run_cli("lint", tmp_path / "absent.py"), "Cannot read",
                              "absent.py")


def test_lint_of_a_folder_is_one_sentence_and_exit_2(tmp_path):
    assert_one_sentence_error(run_cli("lint", tmp_path), "Cannot read", "directory")


def test_lint_of_text_in_another_encoding_says_to_save_it_as_utf8_and_exits_2(tmp_path):
    script = tmp_path / "latin.py"
    script.write_bytes('label = "café"\n'.encode("latin-1"))
    assert_one_sentence_error(run_cli("lint", script), "is not UTF-8 text", "coding: latin-1")


def test_lint_of_a_script_with_an_unknown_encoding_is_one_sentence_and_exit_2(tmp_path):
    script = tmp_path / "klingon.py"
    script.write_text("# -*- coding: klingon -*-\nx = 1\n")
    assert_one_sentence_error(run_cli("lint", script), "is not Python", "klingon")


@pytest.mark.parametrize("expression", ["+".join(["1"] * 100_000), "not " * 100_000 + "x"])
def test_lint_of_an_expression_too_deep_for_python_is_one_sentence_and_exit_2(tmp_path,
                                                                              expression):
    script = tmp_path / "deep.py"
    script.write_text(f"x = {expression}\n")
    assert_one_sentence_error(run_cli("lint", script), "nested too deeply")


def test_lint_json_of_a_missing_file_is_the_same_error_not_json(tmp_path):
    completed = run_cli("lint", "--json", tmp_path / "absent.py")
    assert_one_sentence_error(completed, "Cannot read")
    assert completed.stdout == ""


def test_lint_reads_a_script_that_names_its_own_encoding(tmp_path):
    script = tmp_path / "latin.py"
    script.write_bytes("# -*- coding: latin-1 -*-\nimport os\n"
                       "os.environ['PYTHONHASHSEED'] = 'café'\n".encode("latin-1"))
    completed = run_cli("lint", "--json", script)
    assert completed.returncode == 0, completed.stderr
    assert [f["line"] for f in json.loads(completed.stdout)["findings"]] == [3]
