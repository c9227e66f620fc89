"""A corpus of bad inputs, made on the fly: each entry writes one fault and says which file it broke.

Three kinds, for the stages that read them:

- :data:`DATASET_FAULTS`: a patient folder of a ``kaggle_3m`` dataset with one fault, for ``index``
  (then ``cache`` and ``train`` on what ``index`` keeps);
- :data:`INPUT_FAULTS`: one input of ``predict`` and the web page (a slice, a folder, a NIfTI volume);
- :data:`MODEL_FAULTS`: a model file or ONNX export for ``evaluate``, ``predict``, ``export`` and ``serve``.

Each :class:`Fault` builds its input in a given folder and returns the path the error must name,
with a regex of the reason. Awkward but valid inputs (non-ASCII and spaces in names, a one-slice
patient, link loops) are in :func:`good_awkward_patients` and :func:`looping_folder`.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import tifffile
import torch
from PIL import Image

from gliomaseg.data.io import write_image, write_mask

SIZE = 32


@dataclass(frozen=True)
class Fault:
    """One bad input.

    Attributes:
        name: the test id.
        make: writes the input below the given folder; returns the file the error must name.
        reason: a regex the error message must match (after the file's name).
    """

    name: str
    make: Callable[[Path], Path]
    reason: str


def _image(seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : size // 2, size // 4 : size // 2] = 1
    return mask


def good_slice(folder: Path, patient: str, n: int, size: int = SIZE) -> Path:
    """A valid slice ``<patient>_<n>.tif`` and its mask in ``folder``; returns the image."""
    write_mask(folder / f"{patient}_{n}_mask.tif", _mask(size))
    return write_image(folder / f"{patient}_{n}.tif", _image(n, size))


def _patient(root: Path, name: str, n_good: int = 2) -> Path:
    folder = root / name
    for n in range(1, n_good + 1):
        good_slice(folder, name, n)
    return folder


# ---------------------------------------------------------------------------------- dataset faults
def _truncated(root: Path) -> Path:
    path = good_slice(_patient(root, "TRUNC"), "TRUNC", 3, size=64)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _empty(root: Path) -> Path:
    path = good_slice(_patient(root, "EMPTY"), "EMPTY", 3)
    path.write_bytes(b"")
    return path


def _grey(root: Path) -> Path:
    path = good_slice(_patient(root, "GREY"), "GREY", 3)
    Image.fromarray(_image()[..., 0]).save(path)
    return path


def _float(root: Path) -> Path:
    path = good_slice(_patient(root, "FLOAT"), "FLOAT", 3)
    Image.fromarray(np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32)).save(path)
    return path


def _rgb16(root: Path) -> Path:
    path = good_slice(_patient(root, "RGB16"), "RGB16", 3)
    tifffile.imwrite(path, _image().astype(np.uint16) * 257, photometric="rgb")
    return path


def _mask_of_another_size(root: Path) -> Path:
    folder = _patient(root, "MASKSIZE")
    path = good_slice(folder, "MASKSIZE", 3)
    write_mask(folder / "MASKSIZE_3_mask.tif", _mask(SIZE + 8), overwrite=True)
    return path


def _non_binary_mask(root: Path) -> Path:
    folder = _patient(root, "NONBINARY")
    good_slice(folder, "NONBINARY", 3)
    Image.fromarray((_mask() * 128).astype(np.uint8)).save(folder / "NONBINARY_3_mask.tif")
    return folder / "NONBINARY_3_mask.tif"


def _missing_mask(root: Path) -> Path:
    folder = _patient(root, "NOMASK")
    return write_image(folder / "NOMASK_3.tif", _image(3))


def _duplicate_numbers(root: Path) -> Path:
    folder = _patient(root, "DUP")
    write_image(folder / "DUP_01.png", _image(4))
    write_mask(folder / "DUP_01_mask.png", _mask())
    return folder / "DUP_1.tif"  # the one reported (the names sort DUP_01.png first)


def _tiny(root: Path) -> Path:
    return good_slice(_patient(root, "TINY", n_good=0), "TINY", 1, size=16)


def _slice_of_another_size(root: Path) -> Path:
    return good_slice(_patient(root, "ODDSIZE", n_good=3), "ODDSIZE", 4, size=48)


DATASET_FAULTS = [
    Fault("truncated", _truncated, r"unreadable or truncated image file"),
    Fault("empty", _empty, r"unreadable or truncated image file"),
    Fault("wrong-shape", _grey, r"got shape 32 x 32 \(uint8\); expected H x W x 3"),
    Fault("wrong-dtype", _float, r"32-bit samples \(dtype float32"),
    Fault("16-bit", _rgb16, r"16-bit samples \(dtype uint16, mode RGB\).*Convert it to 8 bits"),
    Fault("mask-of-another-size", _mask_of_another_size, r"image is 32 x 32 but its mask .* is 40 x 40"),
    Fault("non-binary-mask", _non_binary_mask, r"mask values \{0, 128\} are not binary"),
    Fault("missing-mask", _missing_mask, r"image without its mask: expected .*NOMASK_3_mask\.tif"),
    Fault("duplicate-slice-numbers", _duplicate_numbers, r"slice 1 of patient DUP appears more than once"),
    Fault("tiny-slice", _tiny, r"slice is 16 x 16 pixels; slices must be at least 32 x 32"),
    Fault("slice-of-another-size", _slice_of_another_size, r"slice is 48 x 48 but 3 other slice\(s\) of patient"),
]


def good_awkward_patients(root: Path) -> list[str]:
    """Valid patients with awkward names and shapes: non-ASCII and spaces, and a single slice."""
    _patient(root, "Patiënt 7 ü", n_good=3)
    _patient(root, "ONE SLICE", n_good=1)
    return ["Patiënt 7 ü", "ONE SLICE"]


# ------------------------------------------------------------------------------------ input faults
def _nifti(data: np.ndarray, name: str = "v.nii.gz") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        nib.save(nib.Nifti1Image(data, np.eye(4)), folder / name)
        return folder / name

    return make


def _with(values: list[float]) -> np.ndarray:
    data = np.random.default_rng(0).normal(100, 20, (40, 40, 4)).astype(np.float32)
    data.flat[: len(values)] = values
    return data


def _truncated_nifti(folder: Path) -> Path:
    path = _nifti(_with([]))(folder)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:500]))
    return path


def _slice_file(name: str, content: Callable[[], bytes]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        (folder / name).write_bytes(content())
        return folder / name

    return build


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _two_channel_tiff(folder: Path) -> Path:
    tifffile.imwrite(folder / "two.tif", _image()[..., :2], photometric="minisblack", planarconfig="contig")
    return folder / "two.tif"


def _dup_folder(folder: Path) -> Path:
    scan = folder / "scan"
    scan.mkdir()
    write_image(scan / "P_1.tif", _image())
    write_image(scan / "P_01.png", _image())
    return scan


INPUT_FAULTS = [
    Fault("truncated", _slice_file("t.png", lambda: _png(_image())[:100]), r"unreadable or truncated"),
    Fault("empty", _slice_file("e.png", lambda: b""), r"unreadable or truncated"),
    Fault("16-bit", _slice_file("s16.png", lambda: _png(_image().astype(np.uint16) * 257)), r"16-bit samples"),
    Fault("wrong-type", _slice_file("s.bmp", lambda: b"BM"), r"unsupported file type '\.bmp'"),
    Fault("two-channels", _two_channel_tiff, r"(TIFF has 2 channels|unreadable).*expected H x W"),
    Fault("nifti-nan", _nifti(_with([np.nan])), r"1 NaN and 0 infinite voxel\(s\).*replace them"),
    Fault("nifti-inf", _nifti(_with([np.inf, -np.inf])), r"0 NaN and 2 infinite voxel\(s\)"),
    Fault(
        "nifti-tiny",
        _nifti(np.zeros((40, 8, 40), np.float32)),
        r"slices of 8 x 40 voxels in the model's orientation are too small",  # RAS stored: rows are -Y
    ),
    Fault("nifti-truncated", _truncated_nifti, r"unreadable or truncated NIfTI file"),
    Fault(
        "nifti-two-channels",
        _nifti(np.zeros((40, 40, 4, 2), np.float32)),
        r"NIfTI shape \(40, 40, 4, 2\) is not supported",
    ),
    Fault("nifti-complex", _nifti(np.zeros((40, 40, 4), np.complex64)), r"NIfTI data type complex64 is not a real"),
    Fault("duplicate-slice-numbers", _dup_folder, r"slices of 'P' share numbers \[1\]"),
]


def looping_folder(folder: Path) -> Path:
    """A patient folder of 2 slices holding a link to itself and a link to itself as a file."""
    patient = folder / "loop P"
    for n in (1, 2):
        write_image(patient / f"loop P_{n}.tif", _image(n))
    (patient / "again").symlink_to(patient)
    (patient / "self.png").symlink_to(patient / "self.png")
    return patient


# ------------------------------------------------------------------------------------ model faults
class _RunsCode:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, ("echo this should never run",))


def _garbage_model(folder: Path) -> Path:
    (folder / "model.pt").write_bytes(b"PK\x03\x04 not really a zip")
    return folder / "model.pt"


def _hostile_model(folder: Path) -> Path:
    torch.save({"format": "gliomaseg-model/1", "x": _RunsCode()}, folder / "model.pt")
    return folder / "model.pt"


def _pickle_model(folder: Path) -> Path:
    (folder / "model.pt").write_bytes(pickle.dumps({"format": "gliomaseg-model/1"}))
    return folder / "model.pt"


def _lightning_ckpt(folder: Path) -> Path:
    torch.save({"state_dict": {}, "loops": {}, "epoch": 1}, folder / "last.ckpt")
    return folder / "last.ckpt"


def _garbage_onnx(folder: Path) -> Path:
    (folder / "model.onnx").write_bytes(b"\x08\x07 junk")
    return folder / "model.onnx"


MODEL_FAULTS = [
    Fault("garbage", _garbage_model, r"is not a gliomaseg model file .*damaged or not a PyTorch file"),
    Fault("runs-code", _hostile_model, r"holds a Python object \(posix\.system\).*refuses it"),
    Fault("plain-pickle", _pickle_model, r"is not a gliomaseg model file"),
    Fault("lightning-ckpt", _lightning_ckpt, r"is not a gliomaseg model file \(expected format"),
    Fault("garbage-onnx", _garbage_onnx, r"is not (an|a valid) ONNX model"),
]
