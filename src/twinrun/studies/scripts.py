"""Studies of the user's own training script: `twinrun variance --runs 8 -- python train.py`.

The plan is the same as for a built-in workload (`twinrun.studies.plan`); what differs is
each run's config and what it gives back:

    PlannedRun -> ScriptConfig (command, seeds, determinism) -> a fresh process of the command
        (`twinrun.executors.script.ScriptProcess`, through the one launcher)
        -> the metrics and seed reads it wrote (`twinrun.handoff`) and, when it
           traces, its final weights fingerprint -> recorded by the driver like any study run

A script gets its seeds by name (`twinrun.seeds()`), so a source it never reads cannot vary:
`unread_seeds` finds those and the study names them instead of reporting "no effect here" as
a finding about the training.
"""

import os
from dataclasses import dataclass

from twinrun.errors import TwinrunError
from twinrun.executors.script import ScriptConfig
from twinrun.handoff import STUDY_SEEDS

# What each seed a script reads is for (in the "never read" sentence).
SEED_PURPOSE = {"init": "weight initialisers", "order": "order of training batches",
                "dropout": "dropout masks", "split": "train/validation split"}
# Sources a script study cannot run: they change the built-in workload from outside.
BUILT_IN_ONLY = ("perturb",)


def validate_script_study(sources, settings):
    """Refuse, in one sentence, what a study of the user's script cannot do.

    Arguments:
        sources: the parsed `--vary` sources.
        settings: the parsed `--set` values.
    """
    if settings:
        raise TwinrunError("--set changes the built-in workload's training; your script sets "
                           "its own, so pass them as its arguments after `--` instead.")
    for source in BUILT_IN_ONLY:
        if source in sources:
            raise TwinrunError("--vary perturb nudges a weight of the built-in workload's first "
                               "layer, which twinrun cannot reach inside your script; leave it "
                               "out, or study the built-in workload.")


@dataclass(frozen=True)
class ScriptBase:
    """What every run of a script study shares: the command, where it runs, backend, threads.

    Arguments:
        command: the checked argument list (see `twinrun.checks.commands.resolve_command`).
        cwd: the folder the command runs in (a relative script path is read from there).
        backend: the Keras backend to prepare; None prepares every backend (as `twinrun check
            -- ...` does) and leaves `KERAS_BACKEND` as the caller has it.
        threads: thread-pool size passed to the script's `twinrun.deterministic()`.
        label: the script or module it runs (the store's `workload` column).
        portable: the `--portable` settings in every run's environment (docs/portable.md).
    """

    command: tuple
    cwd: str
    backend: str | None = None
    threads: int | None = None
    label: str = ""
    digest: str | None = None
    portable: bool = False
    data_dir = None  # no Fashion-MNIST to find (`run_study` keeps it with the study)

    @classmethod
    def from_command(cls, command, backend=None, threads=None, portable=False):
        """Check the command (script or module present) and return the study's base."""
        from twinrun.backends import resolve_backend
        from twinrun.checks.commands import resolve_command

        command, label = resolve_command(list(command))
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise TwinrunError(f"Expected --threads to be a positive integer. Received: "
                               f"threads={threads!r}.")
        return cls(command=tuple(command), cwd=os.getcwd(),
                   backend=resolve_backend(backend) if backend else None, threads=threads,
                   label=label, digest=script_digest(label, os.getcwd()),
                   portable=bool(portable))

    @classmethod
    def from_notebook(cls, path, parameters=(), backend=None, threads=None, portable=False):
        """The study's base for a notebook: each run is the notebook top to bottom in a fresh
        kernel (`twinrun.programs.notebook`, without the check's hooks, as a script study's
        runs are not hooked), which inherits the run's environment and so its hand-over."""
        from twinrun.checks.notebook import notebook_command, validate_notebook

        validate_notebook(path, parameters)
        command = notebook_command(path, parameters) + ["--no-hooks"]
        base = cls.from_command(command, backend=backend, threads=threads)
        return cls(command=base.command, cwd=base.cwd, backend=base.backend,
                   threads=base.threads, label=str(path),
                   digest=script_digest(str(path), base.cwd), portable=bool(portable))

    def definition(self):
        """The plan's `base`: part of the study id, so another command is another study.

        The interpreter is kept by name (`python`), so the same study resumes from another
        virtual environment.
        """
        command = list(self.command)
        if os.path.basename(command[0]).startswith("python"):
            command[0] = "python"
        definition = {"command": command, "cwd": self.cwd, "backend": self.backend,
                      "threads": self.threads, "label": self.label,
                      "script_sha256": self.digest}
        if self.portable:  # only when asked: the ids of studies without it stay as they were
            definition["portable"] = True
        return definition

    @classmethod
    def from_definition(cls, base):
        """The base of a stored script study (`twinrun resume`)."""
        import sys

        command = list(base["command"])
        if command and command[0] == "python":
            command[0] = sys.executable
        if not os.path.isdir(base.get("cwd") or ""):
            raise TwinrunError(f"The study's script ran in {base.get('cwd')}, which is not a "
                               f"folder here; resume it on the machine that has it.")
        label = base.get("label") or command[-1]
        digest = script_digest(label, base["cwd"])
        if digest != base.get("script_sha256"):
            raise TwinrunError(f"The script {label} has changed since this study ran, so its "
                               f"runs would not be comparable; run the command again to start "
                               f"a new study of the script as it is now.")
        return cls(command=tuple(command), cwd=base["cwd"], backend=base.get("backend"),
                   threads=base.get("threads"), label=label, digest=digest,
                   portable=bool(base.get("portable")))

    def config_for(self, planned, study_id):
        """The `ScriptConfig` of one `PlannedRun`."""
        return ScriptConfig(command=list(self.command), cwd=self.cwd, backend=self.backend,
                            threads=self.threads, label=self.label, seed=planned.seed,
                            seed_overrides=dict(planned.seed_overrides),
                            split_seed=planned.split_seed, determinism=planned.determinism,
                            study_id=study_id, replica=planned.position,
                            portable=self.portable)


def script_digest(label, cwd):
    """SHA-256 of the script a study runs (part of its id: an edited script is a new study),
    or None for `-m module`, `-c` code and other programs."""
    import hashlib

    path = os.path.join(cwd, label)
    if label.startswith("-") or not os.path.isfile(path):
        return None
    with open(path, "rb") as script:
        return hashlib.sha256(script.read()).hexdigest()


def unread_seeds(store, plan):
    """The seeds a script study varied that its script never read, with one sentence each.

    Arguments:
        store: an open `Store`.
        plan: the study's `StudyPlan`.

    Returns `{source: sentence}` for each varied source among `init`, `order`, `dropout`,
    `split` that no finished run read with `twinrun.seeds()`.
    """
    varied = [source for source in plan.sources if source in STUDY_SEEDS]
    if not varied:
        return {}
    read, runs = set(), 0
    for run in store.study_runs(plan.study_id):
        if run["status"] != "finished":
            continue
        extra = store.get_run(run["run_id"]).get("extra") or {}
        runs += 1
        read.update(extra.get("seeds_read") or ())
    if not runs:
        return {}
    return {source: (f"your script never read the `{source}` seed, so these runs could not "
                     f"vary its {SEED_PURPOSE[source]}: seed them from "
                     f"twinrun.seeds()[\"{source}\"] (README, \"Studies of your own script\").")
            for source in varied if source not in read}


def name_unread_seeds(store, plan, results):
    """Add to a study's `results` the sources whose seed its script never read: the list under
    `unread_seeds`, and each sentence in front of that source's `note`. Built-in workloads read
    every seed, so their results are left as they are.

    Arguments:
        store: an open `Store`.
        plan: the study's `StudyPlan`.
        results: the dict `variance_results` returned (changed in place).
    """
    if "command" not in plan.definition.get("base", {}):
        return
    unread = unread_seeds(store, plan)
    results["unread_seeds"] = sorted(unread)
    for source, sentence in unread.items():
        line = results["sources"].get(source)
        if line is not None:
            line["note"] = " ".join(filter(None, [sentence[0].upper() + sentence[1:],
                                                  line.get("note")]))
