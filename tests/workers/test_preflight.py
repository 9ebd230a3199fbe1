"""``preflight``: the one pre-run validation shared by the API and the CLI (their parity is tested
in tests/app/test_preflight_parity.py)."""

from __future__ import annotations

import pytest

from models.errors import InputError
from workers.data.builtin import load_builtin
from workers.preflight import preflight
from workers.probes.weight_spectrum import WeightSpectrum
from workers.runspec import RunSpec

ARCH = {"name": "mlp", "in_dim": 4, "hidden": [8], "out_dim": 3}
CLUSTERS = {"builtin": "gaussian_clusters", "in_dim": 4, "n_classes": 3}


def _spec(arch=ARCH, **task) -> RunSpec:
    body = {"model": {"arch": arch}, "probes": {"weight_spectrum": {}, "sharpness": {}}}
    if task:
        body["task"] = {"dataset": CLUSTERS, "target_error": 0.2, **task}
    return RunSpec.model_validate(body)


def _description(**params) -> dict:
    return load_builtin("gaussian_clusters", {"in_dim": 4, "n_classes": 3, **params}, seed=0).describe()


def test_a_fitting_spec_returns_its_probes():
    probes = preflight(_spec(loss="cross_entropy"), _description())
    assert list(probes) == ["weight_spectrum", "sharpness"] and isinstance(probes["weight_spectrum"], WeightSpectrum)


def test_without_a_task_the_probes_that_need_one_are_refused():
    with pytest.raises(InputError) as caught:
        preflight(_spec(), None)
    assert [error["loc"] for error in caught.value.errors] == [["task"]]


def test_dataset_and_probe_problems_are_collected_with_their_locations():
    with pytest.raises(InputError) as caught:
        preflight(_spec({**ARCH, "out_dim": 2}, loss="cross_entropy"), _description(n_train=0))
    locs = [error["loc"] for error in caught.value.errors]
    # The architecture's outputs (3 classes, out_dim 2) and sharpness's missing training split.
    assert locs == [["task", "dataset"], ["task", "dataset"]]
    assert "out_dim >= 3" in caught.value.errors[0]["msg"] and "train" in caught.value.errors[1]["msg"]


def test_regression_targets_refuse_a_classification_loss():
    description = load_builtin("teacher", {"in_dim": 4, "out_dim": 3, "n_train": 8, "n_test": 8}, seed=0).describe()
    with pytest.raises(InputError) as caught:
        preflight(_spec(loss="zero_one"), description)
    assert [error["loc"] for error in caught.value.errors] == [["task", "dataset"]]


def test_probe_params_and_the_dataset_are_reported_together():
    spec = RunSpec.model_validate({"model": {"arch": {**ARCH, "in_dim": 5}},
                                   "task": {"dataset": CLUSTERS, "target_error": 0.2},
                                   "probes": {"weight_spectrum": {"min_tail": 1}}})
    with pytest.raises(InputError) as caught:
        preflight(spec, _description())
    assert [error["loc"] for error in caught.value.errors] == [["probes", "weight_spectrum", "min_tail"], ["task", "dataset"]]
