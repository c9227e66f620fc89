"""``predict``: segment the user's own images and write masks, overlays and tumour areas.

Inputs (any mix; each becomes one or more *cases*, one row of ``areas.csv`` each):

- **A slice image** ``.tif``/``.tiff``/``.png``/``.jpg``/``.jpeg``, ``H x W`` (grey) or ``H x W x 3``
  uint8 (pre-contrast, FLAIR, post-contrast, as in kaggle_3m). A one-channel image is taken as
  FLAIR and copied into all three channels, which is how the dataset itself fills missing
  sequences. One slice is a volume of one: the per-volume normalisation statistics then come
  from that slice alone (kind ``slice``).
- **A folder of slices**: files named ``<name>_<n>.<ext>`` form one volume per ``<name>``, ordered
  by the number ``n`` (kind ``volume``; a kaggle_3m patient folder, whose files are named after
  the folder, is kind ``patient``). Files named ``*_mask.*`` are ignored, other images (not
  ``<name>_<n>``) are separate one-slice cases, other file types are ignored, and sub-folders
  are searched too (so the whole ``kaggle_3m`` folder works). NIfTI files in a folder are cases too.
- **A NIfTI volume** ``.nii``/``.nii.gz`` (read with nibabel): ``X x Y x Z`` (slices along the last
  spatial axis, taken as FLAIR and copied into three channels) or ``X x Y x Z x C`` with ``C`` in
  {1, 3} (channel order pre-contrast, FLAIR, post-contrast); ``X x Y`` is one slice. Slice ``z`` is
  ``data[:, :, z]`` with rows along ``X`` and columns along ``Y``: array axes are used as stored,
  with no reorientation (the model was trained on axial slices; store axial slices on the last
  axis). Non-uint8 data are scaled to uint8 per volume and channel: the 0.5th-99.5th percentile
  range of the finite values maps linearly to 0-255 (clipped; NaN -> 0); uint8 data are kept.

Outputs under ``out`` mirror the input names (a folder input ``.../P1/`` writes into ``out/P1/``,
sub-folders likewise):

- a mask per slice, ``<stem>_mask.<ext>``, same ``H x W`` as the input, uint8 0/255 like the
  dataset; TIFF -> TIFF, PNG -> PNG, JPEG -> PNG (a lossy mask would not stay binary);
- for NIfTI, ``<stem>_mask.nii[.gz]``: uint8 0/1, spatial shape ``X x Y x Z`` of the input, with
  its affine and header geometry (qform/sform, voxel sizes, units);
- an overlay per slice, ``<stem>_overlay.png`` (NIfTI: ``<stem>_overlay/<stem>_<z>.png``, ``z``
  0-based): FLAIR in grey with the predicted tumour outlined in red;
- ``areas.csv``: one row per case with columns ``input, case, kind, slices, slices_with_tumour,
  tumour_pixels, voxel_mm3, tumour_mm3, mask`` (``tumour_pixels`` counts voxels for volumes; the
  mm^3 columns need voxel sizes, so they are filled for NIfTI only).

Existing outputs are never replaced without ``overwrite``; every target is checked, and every
input read, before anything is written.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from gliomaseg.data.io import read_image_any, write_image, write_mask
from gliomaseg.inference import Segmenter, load_segmenter
from gliomaseg.postprocess import PostprocessConfig
from gliomaseg.utils import atomic_write, atomic_write_text

__all__ = [
    "AREAS_COLUMNS",
    "SLICE_SUFFIXES",
    "SUPPORTED_INPUTS",
    "Case",
    "discover_inputs",
    "nifti_to_uint8",
    "overlay",
    "predict_inputs",
    "read_case",
]

log = logging.getLogger(__name__)

#: Slice image suffixes (lower case) and the suffix their masks are written with.
SLICE_SUFFIXES: dict[str, str] = {
    ".tif": ".tif",
    ".tiff": ".tiff",
    ".png": ".png",
    ".jpg": ".png",
    ".jpeg": ".png",
}
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
SUPPORTED_INPUTS = (
    "a slice image (.tif, .tiff, .png, .jpg, .jpeg; grey or 3-channel uint8), a folder of slices "
    "(<name>_<n>.<ext>), a kaggle_3m patient folder, or a NIfTI volume (.nii, .nii.gz)"
)
AREAS_COLUMNS: tuple[str, ...] = (
    "input",
    "case",
    "kind",
    "slices",
    "slices_with_tumour",
    "tumour_pixels",
    "voxel_mm3",
    "tumour_mm3",
    "mask",
)
_NUMBERED = re.compile(r"^(?P<name>.+)_(?P<n>\d+)$")
_PERCENTILES = (0.5, 99.5)
_RED = np.array([255, 0, 0], np.uint8)


@dataclass
class Case:
    """One unit of prediction: a volume (or a single slice) and where its outputs go.

    Attributes:
        name: the case's name (file stem, ``<name>`` of ``<name>_<n>`` slices, or NIfTI stem).
        kind: ``slice``, ``volume``, ``patient`` or ``nifti``.
        source: the input file, or the folder holding the slices.
        files: slice files in order (one for ``slice``, the NIfTI file for ``nifti``).
        masks: mask target per slice (one NIfTI file for ``nifti``).
        overlays: overlay PNG target per slice.
    """

    name: str
    kind: str
    source: Path
    files: list[Path]
    masks: list[Path]
    overlays: list[Path]
    volume: np.ndarray | None = field(default=None, repr=False)
    nifti: Any = field(default=None, repr=False)

    @property
    def targets(self) -> list[Path]:
        """Every file this case writes."""
        return [*self.masks, *self.overlays]


def _nifti_stem(path: Path) -> str | None:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _unsupported(path: Path, why: str) -> ValueError:
    return ValueError(f"{path}: {why}; supported inputs are {SUPPORTED_INPUTS}")


def _slice_case(path: Path, out_dir: Path) -> Case:
    mask_suffix = SLICE_SUFFIXES[path.suffix.lower()]
    return Case(
        name=path.stem,
        kind="slice",
        source=path,
        files=[path],
        masks=[out_dir / f"{path.stem}_mask{mask_suffix}"],
        overlays=[out_dir / f"{path.stem}_overlay.png"],
    )


def _nifti_case(path: Path, out_dir: Path) -> Case:
    stem = _nifti_stem(path) or path.stem
    suffix = path.name[len(stem) :]
    return Case(
        name=stem,
        kind="nifti",
        source=path,
        files=[path],
        masks=[out_dir / f"{stem}_mask{suffix}"],
        overlays=[],
    )


def _is_slice_image(path: Path) -> bool:
    return path.suffix.lower() in SLICE_SUFFIXES and not path.stem.lower().endswith("_mask")


def _folder_cases(folder: Path, out_dir: Path, skip: Path | None) -> list[Case]:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__")))
    files = [p for p in entries if p.is_file()]
    groups: dict[str, list[tuple[int, Path]]] = {}
    cases: list[Case] = []
    for path in files:
        if _nifti_stem(path) is not None:
            cases.append(_nifti_case(path, out_dir))
        elif _is_slice_image(path):
            m = _NUMBERED.match(path.stem)
            if m:
                groups.setdefault(m["name"], []).append((int(m["n"]), path))
            else:
                cases.append(_slice_case(path, out_dir))
    for name, numbered in groups.items():
        numbered.sort()
        numbers = [n for n, _ in numbered]
        if len(set(numbers)) != len(numbers):
            dup = sorted({n for n in numbers if numbers.count(n) > 1})
            raise ValueError(
                f"{folder}: slices of {name!r} share numbers {dup} (e.g. the same slice as .tif and .png); "
                "keep one file per slice"
            )
        paths = [p for _, p in numbered]
        cases.append(
            Case(
                name=name,
                kind="patient" if name == folder.name else "volume",
                source=folder,
                files=paths,
                masks=[out_dir / f"{p.stem}_mask{SLICE_SUFFIXES[p.suffix.lower()]}" for p in paths],
                overlays=[out_dir / f"{p.stem}_overlay.png" for p in paths],
            )
        )
    for sub in entries:
        if sub.is_dir() and (skip is None or sub.resolve() != skip):
            cases.extend(_folder_cases(sub, out_dir / sub.name, skip))
    return cases


def discover_inputs(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> list[Case]:
    """Expand the inputs into cases with their output paths (nothing is read yet).

    Args:
        inputs: slice files, folders and NIfTI files (see the module docstring).
        out: the output folder; outputs mirror input names below it (and it is never scanned as input).

    Returns:
        The cases in input order (folders: NIfTI files and loose slices, then ``<name>_<n>``
        volumes in name order, then sub-folders).

    Raises:
        ValueError: a missing input, an unsupported file type, a folder without any slice or
            NIfTI file, or two inputs that would write the same output file.
    """
    out = Path(out)
    skip = out.resolve()
    cases: list[Case] = []
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise ValueError(f"no inputs given; pass {SUPPORTED_INPUTS}")
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = _folder_cases(path, out / path.name, skip)
            if not found:
                raise _unsupported(path, "folder holds no slice images or NIfTI files")
            cases.extend(found)
        elif path.is_file():
            if _nifti_stem(path) is not None:
                cases.append(_nifti_case(path, out))
            elif path.suffix.lower() in SLICE_SUFFIXES:
                cases.append(_slice_case(path, out))
            else:
                raise _unsupported(path, f"unsupported file type {''.join(path.suffixes) or '(none)'!r}")
        else:
            raise ValueError(f"input {path} does not exist; pass {SUPPORTED_INPUTS}")
    seen: dict[Path, Path] = {}
    for case in cases:
        for target in case.targets:
            key = target.resolve()
            if key in seen and seen[key] != case.source:
                raise ValueError(
                    f"inputs {seen[key]} and {case.source} would both write {target}; "
                    "rename one or predict them into different --out folders"
                )
            seen[key] = case.source
    return cases


def _as_three_channels(image: np.ndarray) -> np.ndarray:
    # A grey image is FLAIR; copying it into every channel mirrors how kaggle_3m fills a missing
    # pre- or post-contrast sequence with FLAIR.
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def nifti_to_uint8(data: np.ndarray) -> np.ndarray:
    """Scale a NIfTI volume to uint8, per channel, robustly.

    Args:
        data: ``... x C`` array of any numeric dtype (channels last).

    Returns:
        uint8 array of the same shape: uint8 input unchanged; otherwise each channel's 0.5th-99.5th
        percentile range of finite values mapped linearly to 0-255 (clipped, NaN -> 0, a constant
        channel -> 0).
    """
    if data.dtype == np.uint8:
        return data
    out = np.zeros(data.shape, np.uint8)
    for c in range(data.shape[-1]):
        channel = np.asarray(data[..., c], dtype=np.float32)
        finite = np.isfinite(channel)
        if not finite.any():
            continue
        lo, hi = np.percentile(channel[finite], _PERCENTILES)
        if hi <= lo:
            continue
        scaled = (np.where(finite, channel, lo) - lo) * (255.0 / (hi - lo))
        out[..., c] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def _read_nifti(path: Path) -> tuple[np.ndarray, Any]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise ValueError(f"{path}: unreadable or truncated NIfTI file ({type(err).__name__}: {err})") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _unsupported(path, f"not a NIfTI-1/2 image ({type(img).__name__})")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"{path}: NIfTI data type {data.dtype} is not a real number type")
    shape = data.shape
    if data.ndim == 5 and shape[3] == 1:  # NIfTI vector images store channels on the 5th axis
        data = data[:, :, :, 0, :]
    if data.ndim == 2:
        data = data[:, :, None, None]
    elif data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4 or data.shape[-1] not in (1, 3):
        raise ValueError(
            f"{path}: NIfTI shape {shape} is not supported; expected X x Y x Z (FLAIR) or X x Y x Z x C "
            "with C = 1 (FLAIR) or 3 (pre-contrast, FLAIR, post-contrast)"
        )
    volume = np.moveaxis(nifti_to_uint8(data), 2, 0)  # Z x X x Y x C: slices first, as stored
    return np.ascontiguousarray(_as_three_channels(volume)), img


def read_case(case: Case) -> np.ndarray:
    """Read a case's volume (and keep it on ``case.volume``).

    Returns:
        ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast).

    Raises:
        ValueError: an unreadable or truncated file, a wrong dtype or channel count, or slices of
            one volume with different sizes (the message names the file).
    """
    if case.kind == "nifti":
        case.volume, case.nifti = _read_nifti(case.source)
        return case.volume
    slices = []
    for path in case.files:
        image = _as_three_channels(read_image_any(path))
        if slices and image.shape != slices[0].shape:
            raise ValueError(
                f"{path}: size {image.shape[0]} x {image.shape[1]} differs from {case.files[0]} "
                f"({slices[0].shape[0]} x {slices[0].shape[1]}); slices of one volume must match"
            )
        slices.append(image)
    case.volume = np.stack(slices)
    return case.volume


def overlay(flair: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FLAIR in grey with the mask's outline in red.

    Args:
        flair: ``H x W`` uint8.
        mask: ``H x W`` bool.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    rgb = np.repeat(flair[..., None], 3, axis=-1)
    edge = mask & ~ndimage.binary_erosion(mask)
    rgb[edge] = _RED
    return rgb


def _write_nifti(path: Path, mask: np.ndarray, source: Any, overwrite: bool) -> None:
    import nibabel as nib

    header = source.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_intent("none")
    header["cal_min"], header["cal_max"] = 0, 1
    image = type(source)(mask, source.affine, header)
    image.header.set_slope_inter(1, 0)
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.name[len(_nifti_stem(path) or "") :]
    # nibabel picks the format from the suffix, so the temporary file keeps it.
    atomic_write(path, lambda tmp: nib.save(image, tmp), suffix=suffix)


def _write_case(case: Case, mask: np.ndarray, overwrite: bool, overlays: bool) -> dict[str, Any]:
    volume = case.volume if case.volume is not None else read_case(case)
    tumour = int(mask.sum())
    row: dict[str, Any] = {
        "input": str(case.source),
        "case": case.name,
        "kind": case.kind,
        "slices": int(mask.shape[0]),
        "slices_with_tumour": int(mask.reshape(mask.shape[0], -1).any(axis=1).sum()),
        "tumour_pixels": tumour,
        "voxel_mm3": np.nan,
        "tumour_mm3": np.nan,
    }
    if case.kind == "nifti":
        spatial = case.nifti.shape[:3] if len(case.nifti.shape) >= 3 else case.nifti.shape[:2]
        data = np.moveaxis(mask, 0, 2).astype(np.uint8).reshape(spatial)  # back to X x Y x Z
        _write_nifti(case.masks[0], data, case.nifti, overwrite)
        zooms = case.nifti.header.get_zooms()[: len(spatial)]
        voxel = float(np.prod(zooms))
        row["voxel_mm3"], row["tumour_mm3"] = voxel, tumour * voxel
        row["mask"] = str(case.masks[0])
        if overlays:
            folder = case.masks[0].parent / f"{case.name}_overlay"
            for z in range(mask.shape[0]):
                target = folder / f"{case.name}_{z:03d}.png"
                write_image(target, overlay(volume[z, ..., 1], mask[z]), overwrite=overwrite)
        return row
    for z, (mask_path, overlay_path) in enumerate(zip(case.masks, case.overlays)):
        write_mask(mask_path, mask[z], overwrite=overwrite)
        if overlays:
            write_image(overlay_path, overlay(volume[z, ..., 1], mask[z]), overwrite=overwrite)
    row["mask"] = str(case.masks[0] if case.kind == "slice" else case.masks[0].parent)
    return row


def _nifti_overlays(case: Case, n_slices: int) -> list[Path]:
    folder = case.masks[0].parent / f"{case.name}_overlay"
    return [folder / f"{case.name}_{z:03d}.png" for z in range(n_slices)]


def _apply_postprocess(seg: Segmenter, postprocess: PostprocessConfig | Mapping[str, Any] | None) -> Segmenter:
    if postprocess is None:
        return seg
    changes = postprocess.to_dict() if isinstance(postprocess, PostprocessConfig) else dict(postprocess)
    changes = {k: v for k, v in changes.items() if v is not None}
    allowed = set(PostprocessConfig().to_dict())
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"unknown postprocess option(s) {unknown}; allowed: {sorted(allowed)}")
    return seg.with_postprocess(**changes)


def predict_inputs(
    model_path: str | os.PathLike[str] | Segmenter,
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    postprocess: PostprocessConfig | Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    bf16: bool | None = None,
    threads: int | None = None,
    overlays: bool = True,
    graph_fusion: bool | None = None,
) -> pd.DataFrame:
    """Segment slices, folders and NIfTI volumes and write masks, overlays and ``areas.csv``.

    Args:
        model_path: a model file (``best.pt``), an ``.onnx`` export, or a ready :class:`Segmenter`.
        inputs: one input or several (see the module docstring for the kinds).
        out: output folder (created); outputs mirror the input names.
        overwrite: replace existing outputs; without it nothing is written if any target exists.
        postprocess: a :class:`PostprocessConfig`, or a mapping of the settings to change from the
            model's stored defaults (e.g. ``{"threshold": 0.4, "tta": True}``; None values ignored).
        batch_size: slices per forward pass (None: the backend's default).
        device: PyTorch device for model files (``auto``, ``cpu``, ``cuda``...).
        bf16: bfloat16 autocast for model files (None: the default).
        threads: onnxruntime threads for ``.onnx`` models (None: all cores).
        overlays: also write the overlay PNGs.
        graph_fusion: oneDNN Graph fusion for model files on the CPU (None: the default, on).

    Returns:
        The ``areas.csv`` table (columns :data:`AREAS_COLUMNS`), one row per case.

    Raises:
        ValueError: unsupported, missing or corrupt inputs (naming the file), existing outputs
            without ``overwrite``, or an unusable model.
    """
    out = Path(out)
    cases = discover_inputs(inputs if not isinstance(inputs, (str, os.PathLike)) else [inputs], out)
    for case in cases:
        read_case(case)
        if case.kind == "nifti" and overlays:
            case.overlays = _nifti_overlays(case, case.volume.shape[0])  # type: ignore[union-attr]
    areas_path = out / "areas.csv"
    targets = [t for case in cases for t in (case.targets if overlays else case.masks)] + [areas_path]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise ValueError(
            f"{len(existing)} output file(s) exist already ({shown}); pass --overwrite (overwrite=True) "
            "to replace them, or choose another --out folder"
        )
    if isinstance(model_path, Segmenter):
        seg = model_path
    else:
        seg = load_segmenter(
            model_path, device=device, batch_size=batch_size, bf16=bf16, threads=threads, graph_fusion=graph_fusion
        )
    seg = _apply_postprocess(seg, postprocess)
    rows = []
    for case in cases:
        mask = seg.predict_volume(case.volume)  # type: ignore[arg-type]
        rows.append(_write_case(case, mask, overwrite, overlays))
        log.info(
            "%s (%s): %d slice(s), %d tumour pixels",
            case.name,
            case.kind,
            mask.shape[0],
            rows[-1]["tumour_pixels"],
        )
        case.volume = None  # free memory as we go
    table = pd.DataFrame(rows, columns=list(AREAS_COLUMNS))
    atomic_write_text(areas_path, table.to_csv(index=False))
    return table
