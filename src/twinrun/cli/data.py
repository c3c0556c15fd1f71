"""`twinrun data ...`: obtain and verify Fashion-MNIST."""

from pathlib import Path

import click

from twinrun.cli.app import main
from twinrun.errors import DataError

# The library module is imported inside each command: it imports NumPy, which
# `twinrun --help` should not pay for.

_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory holding the four Fashion-MNIST files (default: $TWINRUN_DATA_DIR, "
    "then /usr/share/datasets/fashion-mnist, then the Keras cache).",
)


@main.group()
def data():
    """Obtain and verify the Fashion-MNIST data set."""


@data.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to download into (default: the Keras cache, ~/.keras/datasets/fashion-mnist).",
)
@click.option("--url", default=None, help="Mirror to download from (default: the one Keras uses).")
def download(data_dir, url):
    """Download Fashion-MNIST, keeping each file only once its SHA-256 matches."""
    from twinrun.workloads import fashion_mnist

    def progress(name, state):
        done = "already present and verified" if state == "present" else "downloaded and verified"
        click.echo(f"{name}: {done}")

    directory = fashion_mnist.download(
        data_dir, base_url=url or fashion_mnist.DEFAULT_URL, progress=progress
    )
    click.echo(f"Fashion-MNIST is in {directory}")


@data.command()
@_data_dir_option
def verify(data_dir):
    """Check each file's structure and the SHA-256 of its decompressed content."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from twinrun.report.text import data_text
    from twinrun.workloads import fashion_mnist

    results = fashion_mnist.verify(data_dir)
    directory = next(iter(results.values()))["path"].parent
    table = Table(title=Text.assemble("Fashion-MNIST in ", data_text(directory)))
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256 ok")
    for entry in results.values():
        size = "?" if entry["bytes"] is None else f"{entry['bytes']:,}"
        table.add_row(data_text(entry["path"].name), size,
                      Text("yes", "green") if entry["ok"] else Text("no", "red"))
    console = Console()
    console.print(table)
    failed = [entry for entry in results.values() if not entry["ok"]]
    for entry in failed:
        console.print(data_text(entry["problem"]))
    if failed:
        raise DataError(
            f"{len(failed)} of {len(results)} Fashion-MNIST files in {directory} failed "
            "verification; replace them as described above."
        )


@data.command()
@_data_dir_option
def where(data_dir):
    """Print the directory Fashion-MNIST would be loaded from."""
    from twinrun.workloads import fashion_mnist

    click.echo(str(fashion_mnist.locate(data_dir)))


@data.command("keras-cache")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to copy the four Fashion-MNIST files from (default: $TWINRUN_DATA_DIR, "
    "then /usr/share/datasets/fashion-mnist).",
)
def keras_cache(data_dir):
    """Copy the verified Fashion-MNIST into Keras's cache ($KERAS_HOME/datasets/fashion-mnist,
    by default ~/.keras/...), so unmodified scripts calling
    `keras.datasets.fashion_mnist.load_data()` run without the network."""
    from twinrun.workloads import keras_cache as cache

    states = {"present": "already in the cache and verified",
              "copied": "copied and verified", "compressed": "gzipped, copied and verified"}

    def progress(name, state):
        click.echo(f"{name}: {states[state]}")

    directory = cache.fill(data_dir, progress=progress)
    click.echo(f"Fashion-MNIST is in Keras's cache, {directory}: "
               "keras.datasets.fashion_mnist.load_data() now loads it without the network.")
