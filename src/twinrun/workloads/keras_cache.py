"""Fill Keras's dataset cache with the verified Fashion-MNIST, so scripts load it offline.

`keras.datasets.fashion_mnist.load_data()` (Keras 3) looks for the four `.gz` files in
`$KERAS_HOME/datasets/fashion-mnist/` (`~/.keras/...` without `KERAS_HOME`) and downloads only
the ones that are missing. It checks no hash: whatever file has the right name is loaded. So
twinrun puts there only files whose decompressed content has the known SHA-256, and replaces a
damaged one, and an unmodified script then runs without the network.

Example:

    from twinrun.workloads import keras_cache
    keras_cache.fill()  # PosixPath('/home/me/.keras/datasets/fashion-mnist')
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import zlib
from pathlib import Path

from twinrun.errors import DataError
from twinrun.files import atomic_file
from twinrun.workloads import fashion_mnist


def fill(data_dir=None, *, cache=None, progress=None) -> Path:
    """Copy the verified Fashion-MNIST files into Keras's cache; return the cache folder.

    Each file is first verified where it is found, then written to a hidden temporary file in
    the cache, verified again and renamed, so the cache never holds a partial file under the
    name Keras loads. Files already in the cache with the right content are left alone;
    damaged ones are replaced. Uncompressed IDX files are gzipped, as Keras reads only `.gz`.

    Arguments:
        data_dir: where to take the files from; `None` searches as
            `twinrun.workloads.fashion_mnist.locate` does (the Debian package's folder, ...).
        cache: the folder to fill; `None` is the one Keras reads,
            `fashion_mnist.keras_cache_dir()` (it follows `KERAS_HOME`).
        progress: optional callable `progress(file_name, state)`, `state` being `"present"`,
            `"copied"` or `"compressed"`, called once per file.

    Raises `DataError` (one sentence) when the files are not found or fail verification, or
    when the cache cannot be written.

    Example:

        fill(cache="/tmp/keras/datasets/fashion-mnist")  # PosixPath('/tmp/keras/...')
    """
    target = Path(cache).expanduser() if cache is not None else fashion_mnist.keras_cache_dir()
    results = fashion_mnist.verify(data_dir)
    bad = [entry["problem"] for entry in results.values() if not entry["ok"]]
    if bad:
        raise DataError(f"Nothing was copied into the Keras cache: {bad[0]}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"Cannot create the Keras cache folder {target} "
                        f"({error.strerror or error}); set KERAS_HOME to a writable folder.") \
            from None
    for spec in fashion_mnist.FILES:
        source = results[spec.name]["path"]
        destination = target / spec.filename
        if _holds(destination, spec.sha256):
            state = "present"
        else:
            state = _write(source, destination, spec)
        if progress is not None:
            progress(spec.filename, state)
    return target


def _holds(path: Path, sha256: str) -> bool:
    """True when `path` is a gzip file whose content has the SHA-256 `sha256`."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error):
        return False
    return hashlib.sha256(data).hexdigest() == sha256


def _write(source: Path, destination: Path, spec) -> str:
    """Put `source` at `destination` as gzip through a verified temporary file."""
    compress = not str(source).endswith(".gz")
    try:
        with atomic_file(destination) as out:
            if compress:
                out.write(gzip.compress(source.read_bytes(), compresslevel=6))
            else:
                with open(source, "rb") as data:
                    shutil.copyfileobj(data, out)
            out.flush()
            if not _holds(Path(out.name), spec.sha256):
                raise DataError(f"The copy of {source} in {destination.parent} did not verify "
                                "(the disk may be full or failing); nothing was saved as "
                                f"{destination.name}. Free some space and run "
                                "`twinrun data keras-cache` again.")
    except OSError as error:
        raise DataError(f"Cannot write {destination} ({error.strerror or error}); set "
                        "KERAS_HOME to a writable folder.") from None
    return "compressed" if compress else "copied"

