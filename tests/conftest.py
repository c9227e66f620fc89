"""Shared fixtures: the real-data helpers (``shared_dir``, ``lgg_unpack``) and a tiny phantom dataset."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

# The project's shared/ folder sits beside the repository root (…/main/../shared).
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one intra-op thread avoids two threads spin-waiting on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder beside the repository root (may not exist)."""
    return SHARED_DIR


@pytest.fixture(scope="session")
def lgg_unpack(shared_dir: Path) -> Callable[[int | Sequence[str], Path], Path]:
    """Unpack real patients in the ``kaggle_3m`` layout: ``lgg_unpack(3, dest)`` or ``lgg_unpack(ids, dest)``.

    Skips the test when ``shared/data/lgg-dev`` (or the unpack tool) is absent.
    """
    data = shared_dir / "data" / "lgg-dev"
    tool = shared_dir / "tools" / "lgg-unpack"
    if not data.is_dir() or not tool.is_file():
        pytest.skip(f"real LGG data not available: {data} (and {tool}) missing")

    def unpack(n_or_ids: int | Sequence[str], dest: Path) -> Path:
        by_count = isinstance(n_or_ids, int)
        args = ["--patients", str(n_or_ids)] if by_count else ["--only", ",".join(n_or_ids)]
        subprocess.run([sys.executable, str(tool), str(dest), *args], check=True, capture_output=True, text=True)
        return Path(dest)

    return unpack


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom ``kaggle_3m`` folder: 6 patients, 8-10 slices of 64 x 64, seed 0. Do not modify it."""
    from gliomaseg.data.phantoms import synthesise_dataset

    return synthesise_dataset(tmp_path_factory.mktemp("phantom") / "kaggle_3m", 6, slices=(8, 10), size=64)


@pytest.fixture(scope="session")
def unet_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real U-Net model file, randomly initialised (seed 0), features=4, trained size 32: fast and deterministic."""
    import torch

    from gliomaseg.checkpoint import save_checkpoint
    from gliomaseg.training.models import create_model

    torch.manual_seed(0)
    meta = {
        "model": {"name": "unet", "kwargs": {"features": 4}},
        "preprocess": {"size": 32, "normalisation": "zscore"},
        "postprocess": {"threshold": 0.5},
        "split_id": "random-init",
    }
    return save_checkpoint(tmp_path_factory.mktemp("unet") / "unet.pt", create_model("unet", features=4), meta)
