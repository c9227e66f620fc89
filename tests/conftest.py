"""Shared fixtures: real-data helpers, one phantom dataset, model files and their ONNX export.

Session-scoped fixtures are shared by every test module: do not modify what they return (write
into ``tmp_path`` instead).

- ``lgg_unpack`` / ``real_patients``: real LGG patients from ``../shared`` (tests marked ``real``;
  they skip with a reason when the data is absent).
- ``phantoms``: a small phantom ``kaggle_3m`` folder; ``phantom_workdir`` its shared work folder.
- ``model_file``: a factory of real (untrained) U-Net model files; ``onnx_file``: the ONNX export
  of the one with randomised BatchNorm.
- ``read_only_folder``, ``full_disk``: real read-only and tiny (full) file systems (tmpfs mounts
  when running as root, which chmod does not stop); ``unprivileged``: runs a command without
  root's power to read any file, so that unreadable files are unreadable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------------------------- real data
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
def real_patients(lgg_unpack: Callable[[int, Path], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3 real patients (``TCGA_CS_4942/4943/4944``) in a ``kaggle_3m`` folder, unpacked once."""
    return lgg_unpack(3, tmp_path_factory.mktemp("real") / "kaggle_3m")


# -------------------------------------------------------------------------------------- phantoms
@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom ``kaggle_3m`` folder: 6 patients, 8-10 slices of 64 x 64, seed 0."""
    from gliomaseg.data.phantoms import synthesise_dataset

    return synthesise_dataset(tmp_path_factory.mktemp("phantom") / "kaggle_3m", 6, slices=(8, 10), size=64)


@pytest.fixture(scope="session")
def phantom_workdir(phantoms: Path) -> Path:
    """The work folder beside ``phantoms``: training fills it (index.csv, splits.json, cache/) on first use."""
    return phantoms.parent / "work"


# ----------------------------------------------------------------------------------- model files
#: The post-processing stored in the model files below (the defaults of PostprocessConfig).
POSTPROCESS = {"threshold": 0.5, "min_size": 0, "largest_component": False, "tta": False}


#: ``model_file``'s factory (see its docstring for the arguments).
ModelFileFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> ModelFileFactory:
    """Write real (untrained) U-Net model files: ``model_file(path=None, *, features, size, bias, ...)``.

    - ``features``: the U-Net's width; ``size``: the stored preprocessing size.
    - ``bias``: a constant net: the last convolution's weights zeroed and its bias set (+10 -> every
      pixel tumour, -10 -> none).
    - ``randomise_bn``: non-trivial BatchNorm statistics and affine parameters, so that eval-mode
      BatchNorm folding (fused graph, ONNX) is really exercised.
    - ``meta``: entries added to (or replacing) the stored metadata: ``postprocess``, ``split_id``,
      ``epoch``, ``config``...

    Without ``path`` the file goes to a session folder and equal requests share one file (do not
    modify or export next to it); with ``path`` a new file is written there.
    """
    import torch

    from gliomaseg.checkpoint import save_checkpoint
    from gliomaseg.training.models import create_model

    root = tmp_path_factory.mktemp("models")
    made: dict[str, Path] = {}

    def make(
        path: Path | None = None,
        *,
        features: int = 4,
        size: int = 32,
        bias: float | None = None,
        randomise_bn: bool = False,
        seed: int = 0,
        **meta: Any,
    ) -> Path:
        key = json.dumps([features, size, bias, randomise_bn, seed, meta], sort_keys=True, default=str)
        if path is None and key in made:
            return made[key]
        torch.manual_seed(seed)
        model = create_model("unet", features=features)
        with torch.no_grad():
            if bias is not None:
                model.conv.weight.zero_()
                model.conv.bias.fill_(bias)
            if randomise_bn:
                for module in model.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.running_mean.uniform_(-0.5, 0.5)
                        module.running_var.uniform_(0.5, 2.0)
                        module.weight.uniform_(0.5, 1.5)
                        module.bias.uniform_(-0.2, 0.2)
        stored = {
            "model": {"name": "unet", "kwargs": {"features": features}},
            "preprocess": {"size": size, "normalisation": "zscore"},
            "postprocess": POSTPROCESS,
            **meta,
        }
        target = Path(path) if path is not None else root / f"model{len(made)}.pt"
        save_checkpoint(target, model, stored)
        if path is None:
            made[key] = target
        return target

    return make


@pytest.fixture(scope="session")
def onnx_file(model_file: ModelFileFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX export of ``model_file(randomise_bn=True)`` (checked against PyTorch by the export)."""
    from gliomaseg.inference.export import export_onnx

    return export_onnx(model_file(randomise_bn=True), tmp_path_factory.mktemp("onnx") / "model.onnx").path


# ------------------------------------------------------------------------------ disks and users
def _mount_tmpfs(folder: Path, options: str) -> str | None:
    """Mount a tmpfs on ``folder``; returns None, or why it could not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs failed ({done.stderr.strip()})"


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An empty folder nobody can write in: a read-only tmpfs for root (chmod does not stop root), else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    why = _mount_tmpfs(folder, "ro,size=64k")
    if why:
        pytest.skip(f"cannot make a read-only folder for root: {why}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty folder on a 256 KiB file system (a tmpfs mount; needs root), to fill up."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    why = _mount_tmpfs(folder, "size=256k")
    if why:
        pytest.skip(f"cannot simulate a full disk: {why}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


#: ``unprivileged(argv)``: run a command without root's power to read any file (see the fixture).
Unprivileged = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

# Root keeps its user id but loses the capabilities that let it ignore file permissions.
_WITHOUT_DAC = ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[Unprivileged]:
    """``run(argv)``: run a command (in ``tmp_path``) such that chmod 000 makes a file unreadable to it.

    As root (which chmod does not stop) the command runs under ``setpriv`` without the capabilities
    that override file permissions; otherwise as it is. Permissions are restored afterwards.
    """
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): chmod cannot make a file unreadable")
        prefix = [setpriv, *_WITHOUT_DAC]

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    try:
        yield run
    finally:
        for root, dirs, _ in os.walk(tmp_path):  # top-down: each folder is opened up before it is entered
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
