"""Model files: only tensors and plain data load, and a diverged (non-finite) model is never written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gliomaseg.checkpoint import load_checkpoint, save_checkpoint
from gliomaseg.errors import GliomasegError
from gliomaseg.training.models import create_model


class _RunsCode:
    """Unpickling this runs a shell command: what a hostile "model file" would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.marker}",))


def _hostile(path: Path) -> None:
    torch.save({"format": "gliomaseg-model/1", "x": _RunsCode(path.with_suffix(".ran"))}, path)


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a model at all")


def _lightning_like(path: Path) -> None:
    torch.save({"state_dict": {}, "epoch": 3, "loops": {}}, path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_hostile, r"m\.pt is not a gliomaseg model file .*: it holds a Python object \(posix\.system\)"),
        (_garbage, r"m\.pt is not a gliomaseg model file .*damaged or not a PyTorch file"),
        (_lightning_like, r"m\.pt is not a gliomaseg model file \(expected format .*--resume-from only"),
    ],
    ids=["runs-code", "garbage", "lightning-ckpt"],
)
def test_untrusted_files_are_refused_without_suggesting_to_unlock_them(tmp_path: Path, make, expected: str) -> None:
    make(tmp_path / "m.pt")
    with pytest.raises(GliomasegError, match=expected) as err:
        load_checkpoint(tmp_path / "m.pt")
    assert "weights_only" not in str(err.value) and "False" not in str(err.value)
    assert not (tmp_path / "m.ran").exists()  # the command never ran


def test_a_model_with_non_finite_weights_is_never_written(tmp_path: Path) -> None:
    model = create_model("unet", features=4)
    with torch.no_grad():
        model.conv.weight[0, 0, 0, 0] = float("nan")
    meta = {"model": {"name": "unet", "kwargs": {"features": 4}}, "preprocess": {}, "postprocess": {}}
    with pytest.raises(GliomasegError, match=r"best\.pt not written: the weights hold NaN .*conv\.weight.*lower --lr"):
        save_checkpoint(tmp_path / "best.pt", model, meta)
    assert list(tmp_path.iterdir()) == []


def test_a_model_file_with_non_finite_weights_from_elsewhere_is_refused(tmp_path: Path) -> None:
    """Written by another tool (or an older version): loading it would turn every mask empty, silently."""
    state = {k: v.clone() for k, v in create_model("unet", features=4).state_dict().items()}
    state["conv.bias"].fill_(float("inf"))
    payload = {"format": "gliomaseg-model/1", "model": {"name": "unet", "kwargs": {"features": 4}}}
    torch.save({**payload, "preprocess": {}, "postprocess": {}, "state_dict": state}, tmp_path / "m.pt")
    with pytest.raises(GliomasegError, match=r"m\.pt: the weights hold NaN or infinite values \(conv\.bias\)"):
        load_checkpoint(tmp_path / "m.pt")
