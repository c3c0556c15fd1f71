"""`twinrun export mlflow`: stored runs, checks and studies land in a real MLflow tracking store
(SQLite), found again with `mlflow.search_runs`, nested under their check or study, once.

The records come from real producers: a two-replica `twinrun check` and a two-run
`twinrun variance` of a tiny PyTorch script (a second of training each). Bad inputs, and names
MLflow would refuse, use runs written through the store API.
"""

import json
import re
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import assert_one_sentence_error, require, run_cli
from twinrun.cli.export import mlflow_option
from twinrun.export.fields import mlflow_name
from twinrun.store import Store

# Two epochs of a linear model; the init seed from the check or the study, the loss of each
# epoch in the trace, the test metrics to the study.
TINY_TORCH = """
import torch
import twinrun

twinrun.deterministic(backend="torch")
seeds = twinrun.seeds()
data = torch.Generator().manual_seed(0)
x = torch.randn(64, 4, generator=data)
y = x.sum(dim=1, keepdim=True)
torch.manual_seed(seeds["init"])
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
tracer = twinrun.torch.Tracer(model, optimizer)
for epoch in range(2):
    for i in range(0, 48, 16):
        optimizer.zero_grad()
        loss = ((model(x[i:i + 16]) - y[i:i + 16]) ** 2).mean()
        loss.backward()
        optimizer.step()
        tracer.step(loss, (x[i:i + 16], y[i:i + 16]))
    with torch.no_grad():
        val_loss = ((model(x[48:]) - y[48:]) ** 2).mean().item()
    tracer.epoch_end({"loss": loss.item(), "val_loss": val_loss})
tracer.close()
twinrun.log_metrics(test_loss=val_loss, test_accuracy=1.0 / (1.0 + val_loss))
"""


def needs_mlflow():
    """MLflow, which `make setup` installs (the `test` extra); under CI a skip would hide it."""
    require("mlflow")
    require("sqlalchemy")


def search(uri, **filters):
    """The MLflow runs of experiment "twinrun" whose twinrun tags equal `filters`."""
    import mlflow

    clauses = " and ".join(f"tags.`twinrun.{key}` = '{value}'" for key, value in filters.items())
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["twinrun"], filter_string=clauses,
                              output_format="list")


def artifact(uri, mlflow_run_id, name, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    local = client.download_artifacts(mlflow_run_id, name, str(tmp_path))
    return json.loads(open(local).read())


# -- real records, exported once and again ------------------------------------------------------

@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A store holding a real check (2 replicas) and a real study (2 runs) of TINY_TORCH."""
    folder = tmp_path_factory.mktemp("mlflow-records")
    script, store = folder / "tiny_torch.py", folder / "store"
    script.write_text(TINY_TORCH)
    # The check exports itself as it ends (`--mlflow`), into a tracking store of its own.
    checked = run_cli("check", "-n", 2, "--store", store, "--json", "--mlflow",
                      f"sqlite:///{folder / 'direct.db'}", "--", sys.executable, script,
                      timeout=600)
    assert checked.returncode == 0, checked.stderr
    studied = run_cli("variance", "--runs", 2, "--vary", "init", "--store", store, "--json",
                      "--mlflow", f"sqlite:///{folder / 'direct.db'}", "--", sys.executable,
                      script, timeout=600)
    assert studied.returncode == 0, studied.stderr
    with Store(store, create=False) as opened:
        [check] = opened.list_checks()
        replicas = [run["run_id"] for run in sorted(
            opened.list_runs(check_id=check["check_id"]), key=lambda run: run["replica"])]
        study_id = json.loads(studied.stdout)["study_id"]
        study_runs = sorted(run["run_id"] for run in opened.study_runs(study_id))
    return {"folder": folder, "store": store, "check_id": check["check_id"],
            "verdict": json.loads(checked.stdout), "replicas": replicas,
            "study_id": study_id, "study_runs": study_runs}


@pytest.fixture(scope="module")
def exported(records):
    """One replica exported alone (the library), then its check and the study (the CLI), then
    all three again."""
    needs_mlflow()
    from twinrun.export.mlflow import export_records

    uri = f"sqlite:///{records['folder'] / 'tracking' / 'mlflow.db'}"
    (records["folder"] / "tracking").mkdir()
    with Store(records["store"], create=False) as store:
        alone = export_records(store, [records["replicas"][0]], uri)
    ids = [records["check_id"], records["study_id"], records["replicas"][0]]
    first = run_cli("export", "mlflow", *ids[:2], "--store", records["store"],
                    "--tracking-uri", uri, cwd=records["folder"])
    assert first.returncode == 0, first.stderr
    after_first = {run.info.run_id: dict(run.data.tags) for run in search(uri)}
    again = run_cli("export", "mlflow", *ids, "--store", records["store"], "--tracking-uri",
                    uri, cwd=records["folder"])
    assert again.returncode == 0, again.stderr
    return {**records, "uri": uri, "alone": alone, "first": first, "again": again,
            "after_first": after_first}


@pytest.mark.slow
def test_a_run_lands_with_params_epoch_metrics_its_fingerprint_as_a_tag_and_json_artifacts(
        exported, tmp_path):
    import mlflow

    run_id = exported["replicas"][0]
    [summary] = exported["alone"]
    assert summary["record_id"] == run_id and summary["created"] is True
    [found] = search(exported["uri"], record_id=run_id)
    assert found.info.run_id == summary["mlflow_run_id"] and found.info.status == "FINISHED"
    with Store(exported["store"], create=False) as store:
        stored = store.get_run(run_id)
    assert found.data.tags["twinrun.fingerprint"] == stored["fingerprint"]
    assert re.fullmatch("[0-9a-f]{16,32}", stored["fingerprint"])
    assert found.data.tags["twinrun.determinism"] == "on"
    assert found.data.params["seed"] == "0" and found.data.params["config.replica"] == "0"
    client = mlflow.MlflowClient(tracking_uri=exported["uri"])
    history = client.get_metric_history(found.info.run_id, "val_loss")
    assert [point.step for point in history] == [1, 2]  # step = epoch, from the replica's trace
    assert history[-1].value == pytest.approx(stored["metrics"]["val_loss"])
    assert artifact(exported["uri"], found.info.run_id, "environment.json",
                    tmp_path) == stored["environment"]
    assert artifact(exported["uri"], found.info.run_id, "determinism.json",
                    tmp_path) == stored["determinism"]


@pytest.mark.slow
def test_a_check_is_a_parent_carrying_the_verdict_with_its_replicas_nested(exported, tmp_path):
    [parent] = search(exported["uri"], record_id=exported["check_id"])
    assert parent.data.tags["twinrun.verdict"] == exported["verdict"]["verdict"] == "identical"
    assert artifact(exported["uri"], parent.info.run_id, "verdict.json",
                    tmp_path) == exported["verdict"]
    children = search(exported["uri"], kind="run", group_id=exported["check_id"])
    assert sorted(run.data.tags["twinrun.record_id"] for run in children) == \
        sorted(exported["replicas"])
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    # The replica exported alone before its check is the one nested now, not a second copy.
    assert exported["alone"][0]["mlflow_run_id"] in {run.info.run_id for run in children}
    fingerprints = {run.data.tags["twinrun.fingerprint"] for run in children}
    assert len(fingerprints) == 1 and parent.data.tags["twinrun.fingerprints"] == \
        ", ".join([fingerprints.pop()] * 2)
    assert (f"Check {exported['check_id']} exported as MLflow run {parent.info.run_id}, with 2 "
            f"nested runs (1 new).") in exported["first"].stdout


@pytest.mark.slow
def test_a_study_is_a_parent_with_its_summary_and_its_runs_nested(exported, tmp_path):
    [parent] = search(exported["uri"], record_id=exported["study_id"])
    summary = artifact(exported["uri"], parent.info.run_id, "summary.json", tmp_path)
    assert summary["study_id"] == exported["study_id"] and summary["finished"] == 2
    assert parent.data.metrics["init.sd"] == pytest.approx(summary["sources"]["init"]["sd"])
    assert parent.data.tags["twinrun.study_kind"] == "variance"
    children = search(exported["uri"], kind="run", group_id=exported["study_id"])
    assert sorted(run.data.tags["twinrun.record_id"] for run in children) == \
        exported["study_runs"]
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    with Store(exported["store"], create=False) as store:
        for run in children:
            stored = store.get_run(run.data.tags["twinrun.record_id"])
            assert run.data.tags["twinrun.fingerprint"] == stored["fingerprint"]
            assert re.fullmatch("[0-9a-f]{16,32}", stored["fingerprint"])
            assert run.data.metrics["test_loss"] == pytest.approx(stored["metrics"]["test_loss"])


@pytest.mark.slow
def test_exporting_the_same_records_again_adds_nothing(exported):
    after_again = {run.info.run_id: dict(run.data.tags) for run in search(exported["uri"])}
    assert len(after_again) == 1 + 2 + 1 + 2  # check + replicas, study + its runs
    assert after_again == exported["after_first"]
    out = exported["again"].stdout
    assert f"Check {exported['check_id']} was already exported" in out
    assert "with 2 nested runs (0 new)" in out
    assert f"Run {exported['replicas'][0]} was already exported" in out
    assert "mlflow.db" in out and 'experiment "twinrun"' in out


# -- written through the store API --------------------------------------------------------------

@pytest.mark.slow
def test_check_and_variance_with_mlflow_export_themselves_as_they_end(records):
    needs_mlflow()
    uri = f"sqlite:///{records['folder'] / 'direct.db'}"

    def nested(record_id):
        [parent] = search(uri, record_id=record_id)
        children = [run for run in search(uri)
                    if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        return parent, sorted(run.data.tags["twinrun.record_id"] for run in children)

    parent, children = nested(records["check_id"])
    assert children == sorted(records["replicas"])
    assert parent.data.tags["twinrun.verdict"] == records["verdict"]["verdict"] == "identical"
    _, children = nested(records["study_id"])
    assert children == records["study_runs"]


def record_run(store_path, workload="tiny", metric="loss"):
    """A finished two-epoch run, as `twinrun train` records one; returns its id."""
    with Store(store_path) as store:
        run_id = store.start_run(workload=workload, backend="torch", seed=3,
                                 config={"preset": "quick", "batch_size": 64},
                                 seeds={"init": 11}, determinism={"enabled": True, "controls": [
                                     {"name": "torch.manual_seed", "state": "applied"}]},
                                 environment={"python": {"version": "3.11"}})
        for epoch in (1, 2):
            store.record_epoch(run_id, epoch, {metric: 1.0 / epoch})
        store.finish_run(run_id, fingerprint="ab" * 8, metrics={"test_accuracy": 0.5},
                         epochs_trained=2, wall_time=1.0)
    return run_id


def test_names_mlflow_refuses_are_made_names_it_takes():
    assert mlflow_name("optimizer/adam [x]") == "optimizer_adam _x_"
    assert mlflow_name("../up") == "_.._up"
    assert mlflow_name("") == "_"
    assert len(mlflow_name("k" * 400)) == 250


def test_html_and_markup_names_are_exported_as_text(tmp_path):
    needs_mlflow()
    run_id = record_run(tmp_path / "store", workload="[red]<script>alert(1)</script>",
                        metric="<b>loss</b>")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    completed = run_cli("export", "mlflow", run_id, "--store", tmp_path / "store",
                        "--tracking-uri", uri, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    [found] = search(uri, record_id=run_id)
    assert found.data.tags["twinrun.workload"] == "[red]<script>alert(1)</script>"
    assert found.data.metrics["_b_loss__b_"] == 0.5


def test_a_run_left_half_exported_is_replaced_by_the_next_export(tmp_path):
    needs_mlflow()
    import mlflow

    from twinrun.export.mlflow import export_records

    run_id = record_run(tmp_path / "store")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("twinrun",
                                          artifact_location=(tmp_path / "art").as_uri())
    # What an export killed after creating the run leaves: the id tag, no `twinrun.exported`.
    client.create_run(experiment, tags={"twinrun.record_id": run_id})
    with Store(tmp_path / "store", create=False) as store:
        [summary] = export_records(store, [run_id], uri)
        assert summary["created"] is True
        assert export_records(store, [run_id[:10]], uri)[0]["created"] is False
    [found] = search(uri, record_id=run_id)
    assert found.info.run_id == summary["mlflow_run_id"]
    assert [p.step for p in client.get_metric_history(found.info.run_id, "loss")] == [1, 2]


@pytest.mark.parametrize("uri, fragment", [
    ("nonsense://somewhere", "MLflow has no tracking store of the kind nonsense://somewhere"),
    ("http://127.0.0.1:9", "Could not export to the MLflow tracking store http://127.0.0.1:9"),
    ("sqlite:////no/such/folder/mlflow.db", "its folder /no/such/folder does not exist"),
])
def test_an_unusable_tracking_uri_is_one_sentence(tmp_path, uri, fragment):
    needs_mlflow()
    run_id = record_run(tmp_path / "store")
    completed = run_cli("export", "mlflow", run_id, "--store", tmp_path / "store",
                        "--tracking-uri", uri, cwd=tmp_path, timeout=300)
    assert_one_sentence_error(completed, fragment, "--tracking-uri")


def test_an_unknown_id_is_one_sentence_and_creates_no_tracking_store(tmp_path):
    record_run(tmp_path / "store")
    completed = run_cli("export", "mlflow", "nope-123", "--store", tmp_path / "store",
                        cwd=tmp_path)
    assert_one_sentence_error(completed, "No run, check or study nope-123", "twinrun runs")
    assert not (tmp_path / "mlflow.db").exists()


def test_without_mlflow_the_export_says_how_to_install_it(tmp_path):
    run_id = record_run(tmp_path / "store")
    # How Python reports a package that is not installed: importing it raises ImportError.
    program = ("import sys; sys.modules['mlflow'] = None; from twinrun.cli import main; "
               "main(prog_name='twinrun')")
    import subprocess

    completed = subprocess.run([sys.executable, "-c", program, "export", "mlflow", run_id,
                                "--store", str(tmp_path / "store")], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert_one_sentence_error(completed, "pip install 'twinrun[mlflow]'")
    assert not (tmp_path / "mlflow.db").exists()


def test_the_mlflow_option_takes_an_optional_tracking_uri(tmp_path):
    @click.command()
    @mlflow_option
    def command(mlflow_uri):
        click.echo(repr(mlflow_uri))

    def parsed(*args):
        result = CliRunner().invoke(command, list(args))
        assert result.exit_code == 0, result.output
        return result.output.strip()

    assert parsed() == "None"
    assert parsed("--mlflow") == "'sqlite:///mlflow.db'"
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert parsed("--mlflow", uri) == repr(uri)
    assert not (tmp_path / "elsewhere.db").exists()  # checked, not created
    # An id after a bare --mlflow would be taken for the URI: refused, not exported there.
    result = CliRunner().invoke(command, ["--mlflow", "variance-0a1b2c3d4e"])
    assert result.exit_code == 2 and "is not a tracking URI" in result.output
