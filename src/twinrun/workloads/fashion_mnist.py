"""Fashion-MNIST: find it, prove it is the real thing bit for bit, load it, or download it.

The four IDX files are identified by the SHA-256 of their *decompressed* bytes, not of the
`.gz` files: the Debian package `dataset-fashion-mnist` re-compressed them, so its `.gz` files
differ from the ones on the Keras mirror while holding the same images. A directory may also
hold the uncompressed IDX files (same names without `.gz`).

Where the data is looked for, first hit wins:

1. the `data_dir` argument (the CLI's `--data-dir`), else the `TWINRUN_DATA_DIR` variable;
2. the Debian package's directory, `/usr/share/datasets/fashion-mnist`;
3. the Keras cache, `$KERAS_HOME/datasets/fashion-mnist` (`~/.keras/...` without `KERAS_HOME`),
   which is where `keras.datasets.fashion_mnist.load_data()` and `download()` put it.

Example:

    from twinrun.workloads import fashion_mnist
    data = fashion_mnist.load()
    data.x_train.shape  # (60000, 28, 28)
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from twinrun.errors import DataError
from twinrun.files import atomic_file

DEFAULT_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "TWINRUN_DATA_DIR"

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

NOT_FOUND = (
    "Fashion-MNIST not found. Install the Debian package dataset-fashion-mnist, "
    "pass --data-dir, or run `twinrun data download`."
)

_IMAGES_MAGIC = 0x00000803  # IDX: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # IDX: unsigned bytes, 1 dimension
_SIDE = 28


@dataclasses.dataclass(frozen=True)
class _IdxSpec:
    """What one of the four files must contain."""

    name: str
    magic: int
    count: int
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.name + ".gz"

    @property
    def is_images(self) -> bool:
        return self.magic == _IMAGES_MAGIC

    @property
    def header_size(self) -> int:
        return 16 if self.is_images else 8


FILES = (
    _IdxSpec(
        "train-images-idx3-ubyte", _IMAGES_MAGIC, 60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016,
    ),
    _IdxSpec(
        "train-labels-idx1-ubyte", _LABELS_MAGIC, 60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008,
    ),
    _IdxSpec(
        "t10k-images-idx3-ubyte", _IMAGES_MAGIC, 10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016,
    ),
    _IdxSpec(
        "t10k-labels-idx1-ubyte", _LABELS_MAGIC, 10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008,
    ),
)


@dataclasses.dataclass(frozen=True)
class FashionMNIST:
    """The verified Fashion-MNIST arrays and the directory they came from.

    `x_*` are uint8 images of shape (n, 28, 28), `y_*` uint8 labels in 0..9 (see
    `CLASS_NAMES`); n is 60000 for train and 10000 for test.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path


def keras_cache_dir() -> Path:
    """Return the directory where Keras caches Fashion-MNIST.

    Keras puts it under `$KERAS_HOME/datasets/fashion-mnist`, with `KERAS_HOME` defaulting
    to `~/.keras`.

    Example:

        keras_cache_dir()  # PosixPath('/home/me/.keras/datasets/fashion-mnist')
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home).expanduser() / "datasets" / "fashion-mnist"


def default_locations() -> tuple[Path, ...]:
    """Return the directories searched when no directory is given: Debian's, then Keras's.

    Example:

        default_locations()  # (PosixPath('/usr/share/datasets/fashion-mnist'), ...)
    """
    return (DEBIAN_DIR, keras_cache_dir())


def locate(data_dir=None, *, locations=None) -> Path:
    """Return the directory holding the four Fashion-MNIST files (not yet verified).

    Arguments:
        data_dir: a directory to use and nothing else; `None` falls back to the
            `TWINRUN_DATA_DIR` variable, then to `locations`.
        locations: the directories searched when no directory is given, in order;
            `None` means `default_locations()`.

    Raises `DataError` when the given directory lacks files, or when none is found.

    Example:

        locate()  # PosixPath('/usr/share/datasets/fashion-mnist')
    """
    explicit, origin = _explicit_dir(data_dir)
    if explicit is not None:
        if not os.path.isdir(explicit):
            raise DataError(
                f"The Fashion-MNIST directory {explicit} (from {origin}) does not exist; "
                f"pass an existing directory, or run `twinrun data download --data-dir {explicit}`."
            )
        missing = [spec.filename for spec in FILES if _file_in(explicit, spec) is None]
        if missing:
            raise DataError(
                f"The Fashion-MNIST directory {explicit} (from {origin}) lacks "
                f"{', '.join(missing)}; copy the four files there, or run "
                f"`twinrun data download --data-dir {explicit}`."
            )
        return explicit
    for candidate in default_locations() if locations is None else locations:
        candidate = Path(candidate)
        if os.path.isdir(candidate) and all(_file_in(candidate, spec) for spec in FILES):
            return candidate
    raise DataError(NOT_FOUND)


def load(data_dir=None, *, locations=None) -> FashionMNIST:
    """Find, verify and return Fashion-MNIST as NumPy arrays.

    Every call checks each file's structure and the SHA-256 of its decompressed bytes, so
    a corrupt or truncated file is never used (this costs about half a second).

    Arguments:
        data_dir: a directory to use and nothing else; `None` searches as `locate` does.
        locations: the directories searched when no directory is given; `None` means
            `default_locations()`.

    Raises `DataError` naming the file when one is missing, corrupt or truncated.

    Example:

        data = load()
        data.x_train.shape, data.y_test.shape  # ((60000, 28, 28), (10000,))
    """
    directory = locate(data_dir, locations=locations)
    arrays = []
    for spec in FILES:
        path = _file_in(directory, spec) or directory / spec.filename
        data = _decompressed(path, spec, _local_remedy(directory))
        problem = _problem(spec, data, _sha256(data))
        if problem:
            raise DataError(f"{path} {problem}; {_local_remedy(directory)}")
        shape = (spec.count, _SIDE, _SIDE) if spec.is_images else (spec.count,)
        # A copy, because arrays over the immutable `bytes` are read-only and frameworks
        # (torch.from_numpy among them) warn about or refuse read-only arrays.
        arrays.append(np.frombuffer(data, np.uint8, offset=spec.header_size).reshape(shape).copy())
    x_train, y_train, x_test, y_test = arrays
    # Each file's count is already checked against 60000 or 10000; this guards a future
    # edit of FILES that would pair images and labels of different lengths.
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        if len(images) != len(labels):
            raise DataError(
                f"Fashion-MNIST in {directory} has {len(images)} images but {len(labels)} "
                f"labels; {_local_remedy(directory)}"
            )
    return FashionMNIST(x_train, y_train, x_test, y_test, source=directory)


def verify(data_dir=None, *, locations=None) -> dict:
    """Check the four files and report on each, without raising for a bad file.

    Arguments:
        data_dir: a directory to check and nothing else; `None` searches as `locate` does.
        locations: the directories searched when no directory is given; `None` means
            `default_locations()`.

    Returns a dict keyed by IDX file name (`"train-images-idx3-ubyte"`, ...) whose values are
    dicts with `path` (the file read), `bytes` (decompressed size, `None` if unreadable),
    `sha256` (of the decompressed bytes, `None` if unreadable), `expected_sha256`, `ok`, and
    `problem` (a sentence, `None` when ok). Raises `DataError` only when no directory is found.

    Example:

        all(entry["ok"] for entry in verify().values())  # True
    """
    directory = locate(data_dir, locations=locations)
    results = {}
    for spec in FILES:
        path = _file_in(directory, spec) or directory / spec.filename
        entry = {
            "path": path, "bytes": None, "sha256": None,
            "expected_sha256": spec.sha256, "ok": False, "problem": None,
        }
        try:
            data = _decompressed(path, spec, _local_remedy(directory))
        except DataError as error:
            entry["problem"] = str(error)
        else:
            entry["bytes"], entry["sha256"] = len(data), _sha256(data)
            problem = _problem(spec, data, entry["sha256"])
            entry["ok"] = problem is None
            if problem:
                entry["problem"] = f"{path} {problem}; {_local_remedy(directory)}"
        results[spec.name] = entry
    return results


def download(dest=None, base_url=DEFAULT_URL, timeout=60, *, progress=None) -> Path:
    """Download the four `.gz` files, keeping each only once its content is verified.

    Each file goes to a hidden temporary file in `dest` and is renamed to its final name only
    after its decompressed SHA-256 matched, so a failed or killed download never leaves a bad
    file under the final name. Files already present and correct are not downloaded again;
    present but bad ones are replaced.

    Arguments:
        dest: the directory to download into (created if needed); `None` means the Keras
            cache, `keras_cache_dir()`, where `locate()` looks.
        base_url: the mirror holding `train-images-idx3-ubyte.gz` and the others; the
            default is the one Keras downloads from.
        timeout: seconds to wait on the network before giving up.
        progress: optional callable `progress(file_name, state)` with `state` either
            `"present"` or `"downloaded"`, called once per file.

    Raises `DataError` naming the URL or the file on a network error, an HTTP error or
    bad content.

    Example:

        download()  # PosixPath('/home/me/.keras/datasets/fashion-mnist')
    """
    directory = Path(dest).expanduser() if dest is not None else keras_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"Cannot create the download directory {directory} ({error.strerror or error}); "
            "pass a writable --data-dir."
        ) from None
    for spec in FILES:
        if _is_good(directory, spec):
            state = "present"
        else:
            url = base_url.rstrip("/") + "/" + spec.filename
            _fetch_verified(url, directory / spec.filename, spec, timeout)
            state = "downloaded"
        if progress is not None:
            progress(spec.filename, state)
    return directory


def _explicit_dir(data_dir):
    """Return (directory, where it came from) for a given directory, or (None, None)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "--data-dir"
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser(), DATA_DIR_ENV
    return None, None


def _file_in(directory: Path, spec: _IdxSpec) -> Path | None:
    """Return the file for `spec` in `directory`, preferring `.gz`, or None."""
    # os.path.isfile, not Path.is_file: it treats an unreadable path as absent instead of
    # raising PermissionError.
    for candidate in (directory / spec.filename, directory / spec.name):
        if os.path.isfile(candidate):
            return candidate
    return None


def _is_good(directory: Path, spec: _IdxSpec) -> bool:
    path = _file_in(directory, spec)
    if path is None:
        return False
    try:
        data = _decompressed(path, spec, "")
    except DataError:
        return False
    return _problem(spec, data, _sha256(data)) is None


def _local_remedy(directory: Path) -> str:
    """The next step for a bad file in `directory`, as the end of a sentence."""
    if os.path.realpath(directory) == os.path.realpath(DEBIAN_DIR):
        return (
            "reinstall the Debian package (`sudo apt-get install --reinstall "
            "dataset-fashion-mnist`), or run `twinrun data download --data-dir DIR` and "
            "pass --data-dir DIR."
        )
    return f"run `twinrun data download --data-dir {directory}` to replace it."


def _decompressed(path: Path, spec: _IdxSpec, remedy: str, shown_as=None, gzipped=None) -> bytes:
    """Return the IDX bytes of `path`, gunzipped if `gzipped` (default: if it ends in `.gz`)."""
    shown_as = shown_as or str(path)
    gzipped = str(path).endswith(".gz") if gzipped is None else gzipped
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise DataError(
            f"Cannot read {shown_as} ({error.strerror or error}); check that it exists and is "
            "readable, or pass another --data-dir."
        ) from None
    if not gzipped:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{shown_as} is a damaged or incomplete gzip file ({error}), so its content "
            f"cannot have the expected SHA-256 {spec.sha256}; {remedy}"
        ) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _problem(spec: _IdxSpec, data: bytes, digest: str) -> str | None:
    """Describe what is wrong with `data` as the end of a sentence, or return None."""
    kind = "images" if spec.is_images else "labels"
    # The header is checked before the hash because it says *what* is wrong (a swapped
    # or foreign file); anything the header does not catch, the hash does.
    if len(data) >= spec.header_size:
        magic, count = struct.unpack(">II", data[:8])
        if magic != spec.magic:
            return (
                f"is not an IDX {kind} file: its magic number is 0x{magic:08x}, expected "
                f"0x{spec.magic:08x}"
            )
        if spec.is_images:
            rows, cols = struct.unpack(">II", data[8:16])
            if (rows, cols) != (_SIDE, _SIDE):
                return f"holds images of {rows}x{cols} pixels, expected {_SIDE}x{_SIDE}"
        if count != spec.count:
            return f"says it holds {count} {kind}, expected {spec.count}"
    if digest != spec.sha256:
        return (
            f"is corrupt or truncated: its content has SHA-256 {digest} ({len(data)} bytes), "
            f"expected {spec.sha256} ({spec.size} bytes)"
        )
    return None


def _fetch_verified(url: str, final: Path, spec: _IdxSpec, timeout: float) -> None:
    """Download `url` to `final` through a temporary file, renaming only verified content."""
    nothing_saved = (
        f"nothing was saved as {final}; retry, check --url, or install the Debian package "
        "dataset-fashion-mnist."
    )
    try:
        # Also on KeyboardInterrupt a half-written file does not linger.
        with atomic_file(final) as out:
            _copy_url(url, out, timeout, nothing_saved)
            out.flush()
            shown_as = f"{spec.filename} downloaded from {url}"
            data = _decompressed(Path(out.name), spec, nothing_saved, shown_as=shown_as,
                                 gzipped=True)
            problem = _problem(spec, data, _sha256(data))
            if problem:
                raise DataError(f"{shown_as} {problem}; {nothing_saved}")
    except OSError as error:
        raise DataError(
            f"Cannot write {final} ({error.strerror or error}); pass a writable --data-dir."
        ) from None


def _copy_url(url: str, out, timeout: float, nothing_saved: str) -> None:
    """Write the body of `url` to the open file `out`, or raise `DataError` naming `url`.

    Only network failures become a download error here; an OSError from writing `out`
    (a full disk) propagates for the caller to report as a write error.
    """
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise _download_error(url, error, nothing_saved) from None
    received = 0
    with response:
        while True:
            try:
                chunk = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as error:
                raise _download_error(url, error, nothing_saved) from None
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
        # http.client's read(n) returns b"" instead of raising when the server closes the
        # connection early, leaving `length` (the bytes still announced) above zero.
        if response.length:
            raise DataError(
                f"Cannot download {url} (the connection closed after {received} of "
                f"{received + response.length} bytes); {nothing_saved}"
            )


def _download_error(url: str, error: Exception, nothing_saved: str) -> DataError:
    if isinstance(error, urllib.error.HTTPError):
        return DataError(
            f"Downloading {url} failed with HTTP {error.code} {error.reason}; {nothing_saved}"
        )
    # URLError wraps refused connections and unknown hosts; other OSErrors are timeouts and
    # resets; HTTPException is a connection closed before the announced length
    # (IncompleteRead); ValueError is a malformed URL.
    reason = getattr(error, "reason", None) or str(error) or type(error).__name__
    return DataError(f"Cannot download {url} ({reason}); {nothing_saved}")
