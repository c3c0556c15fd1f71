"""`twinrun data keras-cache`: unmodified scripts calling Keras's fashion_mnist.load_data() run offline."""

import gzip
import hashlib
import os
import subprocess
import sys

import pytest

from conftest import assert_one_sentence_error, requires_data, run_cli
from twinrun.workloads import fashion_mnist

# What an unmodified script does, printing a digest of what it got. The numpy backend keeps the
# import quick; load_data is the same on every backend.
LOAD_DATA = """
import hashlib, keras
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
digest = hashlib.sha256()
for array in (x_train, y_train, x_test, y_test):
    digest.update(array.tobytes())
print(x_train.shape, x_test.shape, digest.hexdigest())
"""


def offline_environment(keras_home):
    """KERAS_HOME set, and every download refused: both proxies point at a closed local port."""
    env = dict(os.environ, KERAS_HOME=str(keras_home), KERAS_BACKEND="numpy",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", no_proxy="",
               NO_PROXY="")
    env.pop("TWINRUN_DATA_DIR", None)
    return env


def load_data_offline(keras_home, cwd):
    return subprocess.run([sys.executable, "-c", LOAD_DATA], env=offline_environment(keras_home),
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def expected_digest():
    data = fashion_mnist.load()
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(array.tobytes())
    return digest.hexdigest()


@requires_data
def test_keras_load_data_runs_offline_from_the_filled_cache_with_twinruns_verified_data(tmp_path):
    keras_home = tmp_path / "keras-home"
    completed = run_cli("data", "keras-cache", env={"KERAS_HOME": str(keras_home)})
    assert completed.returncode == 0, completed.stderr
    cache = keras_home / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(s.filename
                                                             for s in fashion_mnist.FILES)
    assert str(cache) in " ".join(completed.stdout.split())

    loaded = load_data_offline(keras_home, tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split("\n")[-2] == f"(60000, 28, 28) (10000, 28, 28) {expected_digest()}"
    assert "Downloading" not in loaded.stdout + loaded.stderr


@requires_data
def test_without_the_cache_the_offline_environment_really_refuses_the_download(tmp_path):
    # The control for the test above: the same environment with an empty cache must fail,
    # or "offline" proved nothing.
    loaded = load_data_offline(tmp_path / "empty-home", tmp_path)
    assert loaded.returncode != 0
    assert "URL fetch failure" in loaded.stderr


@requires_data
def test_a_damaged_cache_file_is_replaced_and_good_ones_are_left_alone(tmp_path):
    keras_home = tmp_path / "keras-home"
    env = {"KERAS_HOME": str(keras_home)}
    assert run_cli("data", "keras-cache", env=env).returncode == 0
    cache = keras_home / "datasets" / "fashion-mnist"
    damaged = cache / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # Keras itself would load it unchecked

    completed = run_cli("data", "keras-cache", env=env)
    assert completed.returncode == 0, completed.stderr
    assert "train-labels-idx1-ubyte.gz: copied and verified" in completed.stdout
    assert "t10k-labels-idx1-ubyte.gz: already in the cache and verified" in completed.stdout
    labels = gzip.decompress(damaged.read_bytes())
    assert hashlib.sha256(labels).hexdigest() == fashion_mnist.FILES[1].sha256


@requires_data
def test_uncompressed_files_are_gzipped_into_the_cache(tmp_path):
    source = tmp_path / "raw"
    source.mkdir()
    found = fashion_mnist.locate()
    for spec in fashion_mnist.FILES:
        packed = found / spec.filename
        raw = gzip.decompress(packed.read_bytes()) if packed.exists() else (found / spec.name
                                                                              ).read_bytes()
        (source / spec.name).write_bytes(raw)
    keras_home = tmp_path / "keras-home"
    completed = run_cli("data", "keras-cache", "--data-dir", source,
                        env={"KERAS_HOME": str(keras_home)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("gzipped, copied and verified") == 4
    cache = keras_home / "datasets" / "fashion-mnist"
    for spec in fashion_mnist.FILES:
        content = gzip.decompress((cache / spec.filename).read_bytes())
        assert hashlib.sha256(content).hexdigest() == spec.sha256


def test_files_that_fail_verification_are_not_copied_and_the_error_is_one_sentence(tmp_path):
    source = tmp_path / "bad"
    source.mkdir()
    for spec in fashion_mnist.FILES:
        (source / spec.filename).write_bytes(gzip.compress(b"not the data set"))
    keras_home = tmp_path / "keras-home"
    completed = run_cli("data", "keras-cache", "--data-dir", source,
                        env={"KERAS_HOME": str(keras_home)})
    assert_one_sentence_error(completed, "Nothing was copied into the Keras cache")
    assert not (keras_home / "datasets" / "fashion-mnist").exists()


def test_a_missing_source_folder_is_one_sentence_and_exit_2(tmp_path):
    completed = run_cli("data", "keras-cache", "--data-dir", tmp_path / "absent",
                        env={"KERAS_HOME": str(tmp_path / "keras-home")})
    assert_one_sentence_error(completed, "does not exist")


@pytest.fixture(autouse=True)
def _no_data_dir_from_the_caller(monkeypatch):
    # TWINRUN_DATA_DIR in the caller's environment would change where the files come from.
    monkeypatch.delenv("TWINRUN_DATA_DIR", raising=False)
