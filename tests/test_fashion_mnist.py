"""Fashion-MNIST is found, verified bit for bit, loaded, and downloaded safely, on the real files.

The real files are the ones twinrun itself finds (the Debian package dataset-fashion-mnist, the
Keras cache or TWINRUN_DATA_DIR); the download tests serve copies of them (good, altered,
damaged, truncated, cut off, missing) from a local HTTP server.
"""

import functools
import gzip
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import fashion_mnist_dir, requires_data, skip_unless_ci
from twinrun.cli import main
from twinrun.errors import DataError
from twinrun.workloads import fashion_mnist

REAL = fashion_mnist_dir()  # where twinrun finds the real files, before the fixture below
NAMES = [spec.filename for spec in fashion_mnist.FILES]
SHA256 = {spec.filename: spec.sha256 for spec in fashion_mnist.FILES}
TWINRUN = Path(sys.executable).parent / "twinrun"

pytestmark = requires_data


@pytest.fixture(autouse=True)
def no_data_dir_from_the_environment(monkeypatch):
    monkeypatch.delenv("TWINRUN_DATA_DIR", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)


def real_gz(name):
    """The real `.gz` file's bytes; gzipped here when the real folder holds plain IDX files."""
    if (REAL / name).is_file():
        return (REAL / name).read_bytes()
    return gzip.compress((REAL / name.removesuffix(".gz")).read_bytes(), compresslevel=1)


def real_bytes(name):
    return gzip.decompress(real_gz(name))


def data_dir(directory, replaced=None):
    """A directory holding the four real `.gz` files, some replaced by the given bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    replaced = replaced or {}
    for name in NAMES:
        if name in replaced:
            continue
        if (REAL / name).is_file():
            (directory / name).symlink_to(REAL / name)
        else:
            (directory / name).write_bytes(real_gz(name))
    for name, content in replaced.items():
        (directory / name).write_bytes(content)
    return directory


def leftovers(directory):
    return sorted(path.name for path in directory.iterdir())


# Corrupt copies of train-labels, the second file downloaded: the tests also see that the
# good file before it is kept.
LABELS = "train-labels-idx1-ubyte.gz"


def altered_labels():
    """Valid gzip, valid IDX header, one label changed: only the hash can tell."""
    content = bytearray(real_bytes(LABELS))
    content[8 + 100] = (content[8 + 100] + 1) % 10
    return gzip.compress(bytes(content), compresslevel=1)


def damaged_labels():
    """The real .gz with one byte flipped in the middle of its deflate stream."""
    content = bytearray(real_gz(LABELS))
    content[len(content) // 2] ^= 0xFF
    return bytes(content)


def truncated_labels():
    """The real .gz cut in half, as an interrupted copy leaves it."""
    content = real_gz(LABELS)
    return content[: len(content) // 2]


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files; /cut/ serves the real ones, but closes halfway through train-labels."""

    def do_GET(self):
        if not self.path.startswith("/cut/"):
            return super().do_GET()
        name = self.path.rsplit("/", 1)[-1]
        if name != LABELS:
            self.path = f"/good/{name}"
            return super().do_GET()
        content = real_gz(name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[: len(content) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Base URL of a local mirror with good/, altered/, damaged/ and truncated/ copies."""
    root = tmp_path_factory.mktemp("mirror")
    data_dir(root / "good")
    data_dir(root / "altered", {LABELS: altered_labels()})
    data_dir(root / "damaged", {LABELS: damaged_labels()})
    data_dir(root / "truncated", {LABELS: truncated_labels()})
    handler = functools.partial(_MirrorHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_twinrun(*args, env=None):
    if not TWINRUN.exists():
        skip_unless_ci(f"the twinrun script is not installed beside {sys.executable}")
    environment = {
        key: value for key, value in os.environ.items()
        if key not in ("TWINRUN_DATA_DIR", "KERAS_HOME")
    }
    environment.update(env or {})
    return subprocess.run(
        [str(TWINRUN), *args], capture_output=True, text=True, env=environment, timeout=60
    )


def assert_one_error_line(stderr):
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


# Loading


def test_load_returns_the_verified_arrays():
    data = fashion_mnist.load(REAL)

    assert data.source == REAL
    assert data.x_train.shape == (60000, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (60000,) and data.y_train.dtype == np.uint8
    assert data.x_test.shape == (10000, 28, 28) and data.x_test.dtype == np.uint8
    assert data.y_test.shape == (10000,) and data.y_test.dtype == np.uint8
    # Fashion-MNIST is balanced: 6000 train and 1000 test images of each of the 10 classes.
    assert np.bincount(data.y_train).tolist() == [6000] * len(fashion_mnist.CLASS_NAMES)
    assert np.bincount(data.y_test).tolist() == [1000] * len(fashion_mnist.CLASS_NAMES)
    assert data.x_train.max() == 255 and data.x_train.min() == 0


def test_uncompressed_idx_files_are_accepted_beside_gzipped_ones(tmp_path):
    directory = data_dir(tmp_path / "data")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    (directory / "t10k-labels-idx1-ubyte").write_bytes(real_bytes("t10k-labels-idx1-ubyte.gz"))

    data = fashion_mnist.load(directory)
    report = fashion_mnist.verify(directory)

    assert np.array_equal(data.y_test, fashion_mnist.load(REAL).y_test)
    assert report["t10k-labels-idx1-ubyte"]["path"] == directory / "t10k-labels-idx1-ubyte"
    assert all(entry["ok"] for entry in report.values())


# Finding the data


def test_an_explicit_directory_comes_first_then_the_environment_variable(tmp_path, monkeypatch):
    given, from_env = data_dir(tmp_path / "given"), data_dir(tmp_path / "env")
    monkeypatch.setenv("TWINRUN_DATA_DIR", str(from_env))

    assert fashion_mnist.locate(given) == given
    assert fashion_mnist.locate() == from_env


def test_the_keras_cache_under_keras_home_is_searched_after_the_debian_directory(
    tmp_path, monkeypatch
):
    keras_home = tmp_path / "keras"
    cache = data_dir(keras_home / "datasets" / "fashion-mnist")
    debian = data_dir(tmp_path / "debian")
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", debian)

    assert fashion_mnist.keras_cache_dir() == cache
    assert fashion_mnist.default_locations() == (debian, cache)
    assert fashion_mnist.locate() == debian
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-package")
    assert fashion_mnist.locate() == cache


def test_missing_data_names_the_three_ways_to_get_it(tmp_path):
    with pytest.raises(DataError) as error:
        fashion_mnist.load(locations=(tmp_path, tmp_path / "absent"))

    assert str(error.value) == (
        "Fashion-MNIST not found. Install the Debian package dataset-fashion-mnist, "
        "pass --data-dir, or run `twinrun data download`."
    )


def test_a_given_directory_lacking_files_is_named_with_the_missing_files(tmp_path):
    directory = data_dir(tmp_path / "partial")
    (directory / "t10k-images-idx3-ubyte.gz").unlink()
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()

    with pytest.raises(DataError) as error:
        fashion_mnist.load(directory)

    message = str(error.value)
    assert str(directory) in message
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert "train-" not in message.split(";")[0]


# Rejecting bad files


@pytest.mark.parametrize(
    "header, expected",
    [
        (b"\x00\x00\x08\x03\x00\x00\x27\x10", "magic number is 0x00000803, expected 0x00000801"),
        (b"\x00\x00\x08\x01\x00\x00\x27\x0f", "says it holds 9999 labels, expected 10000"),
    ],
    ids=["wrong-magic-number", "wrong-count"],
)
def test_a_wrong_idx_header_is_rejected_naming_the_file(tmp_path, header, expected):
    content = header + real_bytes("t10k-labels-idx1-ubyte.gz")[8:]
    directory = data_dir(tmp_path / "data", {"t10k-labels-idx1-ubyte.gz": gzip.compress(content)})

    with pytest.raises(DataError) as error:
        fashion_mnist.load(directory)

    assert str(directory / "t10k-labels-idx1-ubyte.gz") in str(error.value)
    assert expected in str(error.value)


def test_an_images_file_of_other_dimensions_is_rejected(tmp_path):
    real = real_bytes("t10k-images-idx3-ubyte.gz")
    content = real[:8] + (32).to_bytes(4, "big") + (32).to_bytes(4, "big") + real[16:]
    directory = data_dir(
        tmp_path / "data", {"t10k-images-idx3-ubyte.gz": gzip.compress(content, compresslevel=1)}
    )

    with pytest.raises(DataError, match="holds images of 32x32 pixels, expected 28x28"):
        fashion_mnist.load(directory)


def test_altered_content_reports_expected_and_actual_sha256(tmp_path):
    directory = data_dir(tmp_path / "data", {LABELS: altered_labels()})

    with pytest.raises(DataError) as error:
        fashion_mnist.load(directory)

    message = str(error.value)
    actual = fashion_mnist._sha256(gzip.decompress(altered_labels()))
    assert str(directory / LABELS) in message
    assert f"SHA-256 {actual}" in message and f"expected {SHA256[LABELS]}" in message


@pytest.mark.parametrize(
    "make_copy", [damaged_labels, truncated_labels], ids=["damaged", "truncated"]
)
def test_a_damaged_or_truncated_gzip_is_rejected_naming_the_file_and_expected_sha256(
    tmp_path, make_copy
):
    directory = data_dir(tmp_path / "data", {LABELS: make_copy()})

    with pytest.raises(DataError) as error:
        fashion_mnist.load(directory)
    report = fashion_mnist.verify(directory)

    assert str(directory / LABELS) in str(error.value)
    assert SHA256[LABELS] in str(error.value)
    failed = [name for name, entry in report.items() if not entry["ok"]]
    assert failed == ["train-labels-idx1-ubyte"]
    assert report["train-labels-idx1-ubyte"]["problem"] == str(error.value)


# Downloading


def test_download_from_a_good_mirror_verifies_and_loads(tmp_path, mirror):
    states = []

    directory = fashion_mnist.download(
        tmp_path / "dest", base_url=f"{mirror}/good/", progress=lambda *args: states.append(args)
    )

    assert directory == tmp_path / "dest"
    assert leftovers(directory) == sorted(NAMES)
    assert states == [(name, "downloaded") for name in NAMES]
    assert all(entry["ok"] for entry in fashion_mnist.verify(directory).values())
    assert np.array_equal(fashion_mnist.load(directory).y_train, fashion_mnist.load(REAL).y_train)


def test_download_defaults_to_the_keras_cache_and_skips_files_already_verified(
    tmp_path, monkeypatch, mirror
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache = data_dir(tmp_path / "keras" / "datasets" / "fashion-mnist")
    states = []

    # A mirror that would answer 404 to everything proves nothing is fetched.
    directory = fashion_mnist.download(
        base_url=f"{mirror}/nowhere", progress=lambda *args: states.append(args)
    )

    assert directory == cache
    assert states == [(name, "present") for name in NAMES]


def test_download_replaces_a_corrupt_file_already_in_place(tmp_path, mirror):
    directory = data_dir(tmp_path / "dest", {LABELS: truncated_labels()})

    fashion_mnist.download(directory, base_url=f"{mirror}/good")

    assert all(entry["ok"] for entry in fashion_mnist.verify(directory).values())


def test_altered_download_is_rejected_with_both_hashes_and_leaves_no_file(tmp_path, mirror):
    dest = tmp_path / "dest"

    with pytest.raises(DataError) as error:
        fashion_mnist.download(dest, base_url=f"{mirror}/altered")

    message = str(error.value)
    actual = fashion_mnist._sha256(gzip.decompress(altered_labels()))
    assert f"{mirror}/altered/{LABELS}" in message
    assert f"SHA-256 {actual}" in message and f"expected {SHA256[LABELS]}" in message
    # The good file downloaded before it is kept; the bad one and its temporary file are not.
    assert leftovers(dest) == ["train-images-idx3-ubyte.gz"]


@pytest.mark.parametrize("copy", ["damaged", "truncated", "cut"])
def test_damaged_truncated_or_cut_off_download_is_rejected_and_leaves_no_file(
    tmp_path, mirror, copy
):
    dest = tmp_path / "dest"

    with pytest.raises(DataError) as error:
        fashion_mnist.download(dest, base_url=f"{mirror}/{copy}")

    assert f"{mirror}/{copy}/{LABELS}" in str(error.value)
    assert f"nothing was saved as {dest / LABELS}" in str(error.value)
    if copy == "cut":
        size = len(real_gz(LABELS))
        assert f"the connection closed after {size // 2} of {size} bytes" in str(error.value)
    assert leftovers(dest) == ["train-images-idx3-ubyte.gz"]


def test_http_404_names_the_url_and_leaves_no_file(tmp_path, mirror):
    dest = tmp_path / "dest"

    with pytest.raises(DataError) as error:
        fashion_mnist.download(dest, base_url=f"{mirror}/nowhere")

    assert f"{mirror}/nowhere/train-images-idx3-ubyte.gz failed with HTTP 404" in str(error.value)
    assert leftovers(dest) == []


def test_an_unreachable_mirror_is_named_in_one_sentence(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(DataError, match=rf"^Cannot download http://127\.0\.0\.1:{port}/"):
        fashion_mnist.download(tmp_path, base_url=f"http://127.0.0.1:{port}", timeout=5)

    assert leftovers(tmp_path) == []


# The command line


def test_cli_verify_prints_a_table_of_the_four_files_each_verified():
    result = run_twinrun("data", "verify", "--data-dir", str(REAL))

    assert result.returncode == 0, result.stderr
    for spec in fashion_mnist.FILES:
        row = [line for line in result.stdout.splitlines() if spec.name in line]
        assert len(row) == 1 and f"{spec.size:,}" in row[0] and "yes" in row[0], result.stdout


def test_cli_where_prints_the_directory_found(tmp_path):
    directory = data_dir(tmp_path / "data")

    result = run_twinrun("data", "where", env={"TWINRUN_DATA_DIR": str(directory)})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(directory)


def test_cli_verify_of_a_corrupt_copy_fails_with_one_error_line(tmp_path):
    directory = data_dir(tmp_path / "data", {LABELS: truncated_labels()})

    result = run_twinrun("data", "verify", "--data-dir", str(directory))

    assert result.returncode == 2
    line = assert_one_error_line(result.stderr)
    assert "1 of 4 Fashion-MNIST files" in line
    assert SHA256[LABELS] in result.stdout


def test_cli_download_from_a_missing_mirror_fails_with_one_error_line(tmp_path, mirror):
    result = run_twinrun(
        "data", "download", "--data-dir", str(tmp_path), "--url", f"{mirror}/nowhere"
    )

    assert result.returncode == 2
    assert "HTTP 404" in assert_one_error_line(result.stderr)
    assert leftovers(tmp_path) == []


def test_cli_download_from_a_good_mirror_reports_each_file(tmp_path, mirror):
    result = CliRunner().invoke(
        main, ["data", "download", "--data-dir", str(tmp_path), "--url", f"{mirror}/good"]
    )

    assert result.exit_code == 0, result.output
    assert result.output.count("downloaded and verified") == 4
    assert leftovers(tmp_path) == sorted(NAMES)


def test_cli_without_data_names_the_three_ways_in_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-package")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))

    for command in (["data", "where"], ["data", "verify"]):
        result = CliRunner().invoke(main, command)

        assert result.exit_code == 2
        assert result.stdout == ""
        assert assert_one_error_line(result.stderr) == f"Error: {fashion_mnist.NOT_FOUND}"
