"""Files a CI job would have: checkpoints (one with a planted regression), arch, spec, dataset."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save as safetensors_bytes

from tests.app.api.helpers import MLP_ARCH, dataset_npz_bytes, state_dict_of

# Sharpness of the training loss on a small uploaded task: a few seconds on one CPU core.
SPEC = {"task": {"loss": "mse", "target_error": 0.5},
        "probes": {"sharpness": {"top_k": 1, "n_lanczos_iter": 6, "hutchinson_probes": 8}}, "seed": 0}  # fmt: skip
# Enough Hessian-vector products to outlast any timeout the tests give (it is cancelled after).
# Slow on any machine: 20,000 trained hypotheses of 8,000 single-row steps each (minutes even with the
# batched trainer), after 10,000 Hessian-vector products; the timeout test cancels it long before.
SLOW_SPEC = {"task": {"loss": "mse", "target_error": 0.5},
             "probes": {"sharpness": {"top_k": 1, "n_lanczos_iter": 6, "hutchinson_probes": 10_000},
                        "inductive_bias": {"sampler": "trained", "n_hypotheses": 20_000,
                                           "train": {"epochs": 200, "batch_size": 1}}},
             "seed": 0}  # fmt: skip


def write_ci_files(folder: Path) -> dict[str, Path]:
    """``good`` and ``worse`` checkpoints: ``worse`` is ``good`` with every weight scaled by 4, which
    multiplies the outputs and so raises the training loss far beyond any noise."""
    folder.mkdir(parents=True, exist_ok=True)
    state = state_dict_of(MLP_ARCH, seed=1)
    paths = {name: folder / f"{name}.json" for name in ("arch", "spec", "slow_spec")}
    paths["arch"].write_text(json.dumps(MLP_ARCH))
    paths["spec"].write_text(json.dumps(SPEC))
    paths["slow_spec"].write_text(json.dumps(SLOW_SPEC))
    paths["good"] = folder / "good.safetensors"
    paths["good"].write_bytes(safetensors_bytes({k: v.contiguous() for k, v in state.items()}))
    paths["worse"] = folder / "worse.safetensors"
    paths["worse"].write_bytes(safetensors_bytes({k: (4 * v).contiguous() for k, v in state.items()}))
    paths["data"] = folder / "toy.npz"
    paths["data"].write_bytes(dataset_npz_bytes())
    return paths
