"""Reference files: a run's trace and environment, kept to compare later runs against.

`twinrun record -o ref.twinrun` writes one; `twinrun check --against ref.twinrun` reads it
back. The file is a zip archive (docs/reference-format.md describes it member by member):

- `reference.json`: the header: `format` (`"twinrun-reference"`), `format_version`, what was
  run (`identity`), the environment fingerprint, the trace header, the data and epoch records,
  and which tensors each step holds;
- `steps/<column>.npy`: the packed step table (`twinrun.trace.steps.StepTable.columns`), one
  standard NumPy array file per column, read with `allow_pickle=False`;
- `snapshots/<file>.npz`: per-epoch weight snapshots, only when recorded with `--snapshots`.

Nothing is pickled: the JSON is data and the arrays are plain numbers, so a reference from
anyone can be read safely.
"""

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twinrun.errors import TwinrunError
from twinrun.files import atomic_file
from twinrun.trace.format import Trace
from twinrun.trace.steps import StepTable

FORMAT_NAME = "twinrun-reference"
# 2: the step words of fingerprint scheme 2 (keyed columns) and the exact state digests; a
# version-1 file's words are of scheme 1 and would differ from every step of a run today.
FORMAT_VERSION = 2
HEADER = "reference.json"
# The zip comment: `file`, `less` or a hex dump shows what the archive is at a glance.
COMMENT = b"twinrun reference (docs/reference-format.md)"
# The most a member may unpack to. A reference is read before anything runs, and a zip can
# announce gigabytes from a few bytes (a zip bomb). The header of a long training is a few MB;
# the step columns are 8 bytes a step; a snapshot is one epoch's weights.
MAX_HEADER_BYTES = 256 << 20
MAX_MEMBER_BYTES = 4 << 30


@dataclass
class Reference:
    """A reference read back.

    `trace` is a `twinrun.trace.Trace` (header, data and epoch records, and the packed steps),
    usable wherever a replica's trace is; `identity` says what was run (see
    `twinrun.checks.identity.command_identity`, `workload_identity`), `environment` the recording's
    environment as the verdict compares it, and `header` the whole `reference.json`.
    """

    path: Path
    header: dict
    trace: Trace

    @property
    def identity(self):
        return self.header.get("identity") or {}

    @property
    def environment(self):
        return self.header.get("environment") or {}

    @property
    def portable(self):
        """Whether the run was recorded with `--portable` (its settings are in the header)."""
        return bool(self.header.get("portable"))

    @property
    def fingerprint_scheme(self):
        """The scheme of the recorded step words (`twinrun.fingerprint.trace_words_for`): a
        replay writes the same scheme's words."""
        return self.trace.header.get("fingerprint_scheme", 1)

    @property
    def snapshots(self):
        """The snapshot files the reference holds, by name."""
        return [e["snapshot"] for e in self.header.get("epochs") or [] if e.get("snapshot")]

    def extract_snapshots(self, folder):
        """Write the weight snapshots into `folder` and point the trace there, so weight
        distances are measured as for a replica's (`twinrun.checks.causes.weight_distance`).

        Arguments:
            folder: an existing folder (a check's own folder).
        """
        folder = Path(folder)
        with zipfile.ZipFile(self.path) as archive:
            for record in self.trace.epochs:
                name = record.get("snapshot")
                if not name:
                    continue
                # Prefixed: the run being checked writes its own snapshots under the same
                # names (`replica-0.trace.epoch1.npz`) into this folder.
                local = f"reference.{name}"
                (folder / local).write_bytes(read_member(archive, f"snapshots/{name}"))
                record["snapshot"] = local
        self.trace.path = folder / "reference.trace"

    def summary(self):
        """What the verdict says about the reference: its file, when and where it was
        recorded, and what it ran."""
        return {"path": str(self.path), "recorded_at": self.header.get("recorded_at"),
                "hostname": (self.header.get("environment") or {}).get("hostname"),
                "identity": self.identity, "steps": len(self.trace.steps),
                "snapshots": len(self.snapshots), "portable": self.header.get("portable")}


def write_reference(path, trace, identity, *, environment, snapshots=False, portable=None):
    """Write `trace` (a finished run's, read whole) as a reference file at `path`.

    The file is written beside `path` and moved into place, so a reference that a CI job
    reads is never half written.

    Arguments:
        path: where to write (by convention `*.twinrun`).
        trace: a `twinrun.trace.Trace` read with `read_trace` (never compared).
        identity: what was run, a JSON-compatible dict (a workload or a command).
        environment: the run's environment as the verdict compares it.
        snapshots: also keep the per-epoch weight snapshots the tracer saved beside the trace.
        portable: `{"variables": {...}}`, the `--portable` settings the run had, or None;
            `check --against` applies them again.

    Example (`trace` from a finished run):

        write_reference("ref.twinrun", read_trace("run.trace"), {"kind": "command", ...},
                        environment=trace.header["environment"])
    """
    path = Path(path)
    if not trace.steps:
        raise TwinrunError("The run recorded no training step, so there is nothing to keep as "
                           "a reference; check that the script trains (and traces) at least "
                           "one step.")
    arrays, extras = trace.steps.columns()
    epochs = []
    kept = []
    for record in trace.epochs:
        record = dict(record)
        name = record.get("snapshot")
        source = Path(trace.path).parent / name if name else None
        if snapshots and source is not None and source.is_file():
            kept.append((name, source))
        else:
            record["snapshot"] = None
        epochs.append(record)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "twinrun_version": _twinrun_version(),
        "identity": identity,
        "portable": portable,
        "environment": environment,
        "trace_header": {k: v for k, v in trace.header.items() if k != "environment"},
        "data": trace.data,
        "epochs": epochs,
        "digests": trace.digests,
        "renamed": [[first, names] for first, names in trace.renamed],
        "finished": trace.finished,
        "steps": len(trace.steps),
        "extras": {str(i): e for i, e in extras.items()},
        "columns": list(arrays),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all; shared (committed) like any file the user makes.
    with atomic_file(path) as out:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.comment = COMMENT
            archive.writestr(HEADER, json.dumps(header, indent=1, allow_nan=True))
            for name, column in arrays.items():
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(column), allow_pickle=False)
                archive.writestr(f"steps/{name}.npy", buffer.getvalue())
            for name, source in kept:
                archive.write(source, f"snapshots/{name}")
    return path


def read_reference(path):
    """Read a reference file; refuse, in one sentence, anything that is not one this version
    of twinrun understands.

    Arguments:
        path: the `.twinrun` file.

    Returns a `Reference`. Raises `TwinrunError` (exit status 2) for a missing file, a file
    that is not a twinrun reference (or is damaged), and a reference of another format
    version.

    Example:

        reference = read_reference("ref.twinrun")
        len(reference.trace.steps), reference.identity["kind"]
    """
    path = Path(path)
    if not path.is_file():
        raise TwinrunError(f"Reference not found: {path}; record one with `twinrun record -o "
                           f"{path} -- python train.py` (or `--workload NAME`).")
    not_one = (f"{path} is not a twinrun reference; pass a file written by `twinrun record "
               f"-o FILE`.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise TwinrunError(not_one) from None
    with archive:
        try:
            header = json.loads(read_member(archive, HEADER, MAX_HEADER_BYTES))
        except (KeyError, ValueError, zipfile.BadZipFile, OSError):
            raise TwinrunError(not_one) from None
        except MemberTooLarge as error:
            raise TwinrunError(f"{path} is not a twinrun reference: {error}; pass a file "
                               f"written by `twinrun record -o FILE`.") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise TwinrunError(not_one)
        version = header.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise TwinrunError(
                f"{path} is a twinrun reference of format version {version!r}, which this "
                f"twinrun ({_twinrun_version()}) does not read (it reads version "
                f"{FORMAT_VERSION}); "
                + ("upgrade twinrun, or record the reference again with this version."
                   if newer else "record the reference again with this version."))
        _refuse_path_names(path, header)
        try:
            trace = _trace(path, header, archive)
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile, OSError,
                MemberTooLarge) as error:
            raise TwinrunError(f"{path} is a damaged twinrun reference ({error}); record it "
                               f"again with `twinrun record`.") from None
    return Reference(path=path, header=header, trace=trace)


class MemberTooLarge(Exception):
    """A zip member announces more bytes than a reference may hold."""


def read_member(archive, name, limit=MAX_MEMBER_BYTES):
    """The bytes of one member of `archive`, refused (`MemberTooLarge`) beyond `limit`.

    Arguments:
        archive: an open `zipfile.ZipFile`.
        name: the member's name; `KeyError` when there is none.
        limit: the most bytes it may unpack to.
    """
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise MemberTooLarge(f"its member {name} unpacks to {info.file_size} bytes, more "
                             f"than the {limit} a reference may hold")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise MemberTooLarge(f"its member {name} unpacks to more than the {limit} bytes a "
                             f"reference may hold")
    return data


def _refuse_path_names(path, header):
    """Refuse snapshot names that would lead out of the folder they are unpacked into."""
    for record in header.get("epochs") or []:
        name = record.get("snapshot") if isinstance(record, dict) else None
        if name and (not isinstance(name, str) or "/" in name or "\\" in name
                     or ".." in name):
            raise TwinrunError(f"{path} names a snapshot {name!r} that is not a plain file "
                               f"name (a path separator or `..`), which `twinrun record` never "
                               f"writes; it is refused. Record the reference again.")


def _trace(path, header, archive):
    arrays = {}
    for name in StepTable.COLUMNS:
        arrays[name] = np.load(io.BytesIO(read_member(archive, f"steps/{name}.npy")),
                               allow_pickle=False)
    extras = {int(i): e for i, e in (header.get("extras") or {}).items()}
    steps = StepTable.from_columns(arrays, extras)
    if len(steps) != header.get("steps"):
        raise ValueError(f"{len(steps)} steps stored, {header.get('steps')} announced")
    trace_header = dict(header.get("trace_header") or {})
    trace_header["environment"] = header.get("environment")
    epochs = [dict(e) for e in header.get("epochs") or []]
    names = set(archive.namelist())
    for record in epochs:
        if record.get("snapshot") and f"snapshots/{record['snapshot']}" not in names:
            raise ValueError(f"snapshot {record['snapshot']} announced but missing")
        if record.get("snapshot"):
            member = f"snapshots/{record['snapshot']}"
            # Checked now, before the run, though only unpacked after it (extract_snapshots).
            if archive.getinfo(member).file_size > MAX_MEMBER_BYTES:
                raise MemberTooLarge(f"its member {member} unpacks to more than the "
                                     f"{MAX_MEMBER_BYTES} bytes a reference may hold")
    digests = [dict(d) for d in header.get("digests") or []]
    for record in digests:
        if not (isinstance(record.get("after"), int) and isinstance(record.get("at"), str)
                and isinstance(record.get("digest"), str)
                and isinstance(record.get("tensors"), list)
                and isinstance(record.get("names"), list)):
            raise ValueError("a state digest record without its position, names or digests")
    return Trace(path=path, header=trace_header, data=header.get("data"), steps=steps,
                 epochs=epochs, digests=digests, finished=bool(header.get("finished")),
                 renamed=[(int(first), list(n)) for first, n in header.get("renamed") or []])


def _twinrun_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("twinrun")
    except PackageNotFoundError:
        return "unknown"
