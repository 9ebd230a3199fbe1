"""The ``priorprobe`` CLI: local runs from a spec file, and the demo through the embedded service."""

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from models.loading import save_safetensors
from models.registry import build_model
from models.specs import parse_arch
from workers.data.builtin import load_builtin
from workers.data.files import save_dataset_npz
from workers.probes.registry import PROBES

ARCH = {"name": "mlp", "in_dim": 2, "hidden": [32, 32], "out_dim": 3}


def test_run_writes_a_report_with_paths_relative_to_the_spec(tmp_path):
    save_safetensors(build_model(parse_arch(ARCH), seed=5), tmp_path / "net.safetensors")
    save_dataset_npz(load_builtin("gaussian_clusters", {"in_dim": 2, "n_classes": 3}, seed=0), tmp_path / "clusters.npz")
    spec = {"model": {"arch": ARCH, "weights": "net.safetensors"},
            "task": {"dataset": {"path": "clusters.npz"}, "loss": "cross_entropy", "target_error": 0.2},
            "probes": {"weight_spectrum": {"n_init_samples": 2}}, "seed": 1}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "spec.json"), "--out", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["run"]["weights"] == "uploaded"
    assert report["run"]["dataset"]["task_type"] == "classification"
    assert len(report["probes"]["weight_spectrum"]["layers"]) == 3
    # The table prints the report's metrics by key, with intervals for the random-init spreads.
    table = result.output[result.output.index("metric"):]
    for metric in report["metrics"]:
        assert metric["key"] in table
    assert "weight_spectrum.stable_rank" in table and "weight_spectrum.init.stable_rank" in table


def test_run_reports_spec_errors_by_field(tmp_path):
    spec = {"model": {"arch": {**ARCH, "activation": "swish"}}, "probes": {"weight_spectrum": {"min_tail": 1}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "spec.json")])
    assert result.exit_code == 2
    assert "model.arch.mlp.activation" in result.output
    spec = {"model": {"arch": ARCH}, "probes": {"weight_spectrum": {"min_tail": 1}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "spec.json")])
    assert result.exit_code == 2 and "probes.weight_spectrum.min_tail" in result.output
    spec = {"model": {"arch": ARCH, "weights": "missing.safetensors"}, "probes": {"weight_spectrum": {}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "spec.json")])
    assert result.exit_code == 2 and "no such file" in result.output


_IMPORTS_AFTER = """
import sys
from app.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    print("EXIT", exit.code, "TORCH", "torch" in sys.modules)
"""


def test_help_and_spec_errors_answer_without_importing_torch(tmp_path):
    # Importing torch is most of a cold start (seconds on a busy 2-core machine): help and a spec
    # the schema refuses must not pay it. A fresh interpreter, so nothing is imported already.
    import subprocess
    import sys

    (tmp_path / "spec.json").write_text(json.dumps({"model": {"arch": {"name": "mlp"}}, "probes": {}}))
    for argv, code in ((["--help"], 0), (["run", str(tmp_path / "spec.json")], 2)):
        out = subprocess.run([sys.executable, "-c", _IMPORTS_AFTER, *argv], capture_output=True, text=True, check=True)
        assert f"EXIT {code} TORCH False" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow  # the whole demo: minutes
def test_demo_runs_every_probe_through_the_embedded_service(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    reports = json.loads((tmp_path / "reports.json").read_text())
    assert set(reports) == {"mlp-trained", "cnn-trained", "vit-init"}
    for report in reports.values():
        assert set(report["probes"]) == set(PROBES)
    assert reports["mlp-trained"]["run"]["weights"] == "uploaded"
    assert reports["vit-init"]["run"]["weights"] == "random_init"
    assert (tmp_path / "priorprobe.db").is_file()  # it really went through the embedded service
    assert "weight_spectrum.alpha_mean" in result.output and "inductive_bias.bits" in result.output
    for report in reports.values():
        for warning in report["warnings"]:  # warnings are printed in full, not counted
            assert warning["message"] in result.output


def test_db_upgrade_on_the_embedded_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORPROBE_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.delenv("PRIORPROBE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fresh' / 'priorprobe.db'}")
    assert {"models", "datasets", "runs", "reports", "run_metrics"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_worker_refuses_to_start_without_a_broker(monkeypatch):
    monkeypatch.delenv("PRIORPROBE_BROKER_URL", raising=False)
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code != 0 and "PRIORPROBE_BROKER_URL" in result.output


def test_run_an_onnx_file_given_as_weights(tmp_path):
    from tests.models.graph.exports import export_named

    export_named("cnn", tmp_path)
    spec = {"model": {"weights": "cnn.onnx"}, "probes": {"invariance": {"transforms": ["circular_shift"], "n_inputs": 16,
                                                                        "n_init_samples": 2, "bootstrap": 50}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "spec.json"), "--out", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["run"]["spec"]["model"]["arch"]["name"] == "onnx" and report["run"]["weights"] == "uploaded"
    # The zoo's circular CNN with global pooling, exported: still exactly shift-invariant.
    assert report["probes"]["invariance"]["transforms"]["circular_shift"]["invariance_ratio"]["value"] < 1e-10


def test_models_template_writes_a_checkpoint_the_service_accepts(tmp_path):
    from models.loading import load_checkpoint

    arch = {"name": "mlp", "in_dim": 4, "hidden": [3], "out_dim": 2}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    result = CliRunner().invoke(main, ["models", "template", str(tmp_path / "arch.json")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == ["layers.0.weight\t[3, 4]", "layers.0.bias\t[3]", "layers.1.weight\t[2, 3]",
                                              "layers.1.bias\t[2]"]
    load_checkpoint(tmp_path / "arch.safetensors", build_model(parse_arch(arch), seed=7))
