"""Synthetic brain-like MRI volumes written in the exact Kaggle ``kaggle_3m`` layout.

The phantoms stand in for the real dataset where it cannot be shipped (tests, the demo, CI): each
patient is a stack of ``H x W x 3`` uint8 slices (pre-contrast, FLAIR, post-contrast) of an
ellipsoidal head with a skull ring, textured brain tissue, dark ventricles and one irregular 3D
lesion that is bright on FLAIR and subtler on the other channels; its mask is exactly the lesion
voxels. Like the real data, about a third of the slices hold tumour, sites and intensities differ
between patients, and some patients lack a sequence (the channel is a copy of FLAIR).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
from scipy import ndimage

from gliomaseg.data.index_table import CLUSTER_COLUMNS
from gliomaseg.data.io import write_image, write_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.utils import atomic_write_text

__all__ = ["DATA_CSV_COLUMNS", "PHANTOM_SITES", "synthesise_dataset", "synthesise_volume"]

#: Site tokens used for phantom patients (never real TCGA sites, so phantoms are easy to spot).
PHANTOM_SITES: tuple[str, ...] = ("SA", "SB", "SC")

#: Columns of ``data.csv``, as in the Kaggle file.
DATA_CSV_COLUMNS: tuple[str, ...] = (
    "Patient",
    *CLUSTER_COLUMNS,
    "histological_type",
    "neoplasm_histologic_grade",
    "tumor_tissue_site",
    "laterality",
    "tumor_location",
    "gender",
    "age_at_initial_pathologic",
    "race",
    "ethnicity",
    "death01",
)
# Inclusive value ranges of the coded columns (ages are years).
_CSV_RANGES: dict[str, tuple[int, int]] = {
    "RNASeqCluster": (1, 4),
    "MethylationCluster": (1, 5),
    "miRNACluster": (1, 4),
    "CNCluster": (1, 3),
    "RPPACluster": (1, 4),
    "OncosignCluster": (1, 3),
    "COCCluster": (1, 3),
    "histological_type": (1, 2),
    "neoplasm_histologic_grade": (1, 2),
    "tumor_tissue_site": (1, 1),
    "laterality": (1, 3),
    "tumor_location": (1, 6),
    "gender": (1, 2),
    "age_at_initial_pathologic": (20, 75),
    "race": (1, 3),
    "ethnicity": (1, 2),
    "death01": (0, 1),
}
_PHANTOM_DIR_RE = re.compile(r"^TCGA_(" + "|".join(PHANTOM_SITES) + r")_P\d{3,}_\d{8}$")

# Mean tissue intensities in [0, 1] per channel (pre-contrast T1, FLAIR, post-contrast T1).
_SKULL = np.array([0.75, 0.55, 0.80], np.float32)
_GREY = np.array([0.42, 0.47, 0.44], np.float32)
_WHITE = np.array([0.55, 0.38, 0.56], np.float32)
_CSF = np.array([0.12, 0.10, 0.14], np.float32)
# Lesion contrast added to the tissue: strong on FLAIR, faint on the others.
_LESION = np.array([-0.07, 0.42, 0.07], np.float32)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``n_out x n_in`` linear-interpolation weights mapping a coarse grid onto a fine one."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
    return np.stack([np.interp(pos, np.arange(n_in), np.eye(n_in)[j]) for j in range(n_in)], 1).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], grid: int) -> np.ndarray:
    """Low-frequency noise, ``S x H x W`` float32 with zero mean and unit std, smooth in-plane and in z."""
    s, h, w = shape
    coarse = rng.standard_normal((s, grid, grid), dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, sigma=(0.8, 1.0, 1.0), mode="nearest")
    # Separable bilinear upsampling as two BLAS products: ~7x faster than ndimage.zoom (and than a
    # broadcast ``@``, which numpy runs as many tiny unblocked products).
    rows = np.tensordot(coarse, _interp_matrix(w, grid).T, axes=([2], [0]))  # S x grid x W
    field = np.tensordot(_interp_matrix(h, grid), rows, axes=([1], [1])).transpose(1, 0, 2)
    return (field - field.mean()) / (field.std() + 1e-6)


def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """1 inside (``d < 1 - width``) falling linearly to 0 at ``d = 1``: a soft-edged region."""
    return np.clip((1.0 - d) / width, 0.0, 1.0)


def synthesise_volume(
    rng: np.random.Generator,
    n_slices: int,
    size: int = 256,
    *,
    missing: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Make one phantom patient.

    Args:
        rng: random generator; the volume depends only on its state.
        n_slices: number of axial slices ``S``.
        size: slice height and width ``H = W``.
        missing: sequences to replace by a copy of FLAIR, any of ``"pre"``, ``"post"``.

    Returns:
        ``(image, mask)``: ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast) and
        ``S x H x W`` uint8 in {0, 1}.

    Raises:
        GliomasegError: ``n_slices < 1``, ``size < 32`` or an unknown entry in ``missing``.
    """
    if n_slices < 1 or size < 32:
        raise GliomasegError(f"need n_slices >= 1 and size >= 32, got n_slices={n_slices}, size={size}")
    unknown = set(missing) - {"pre", "post"}
    if unknown:
        raise GliomasegError(f"missing={missing!r}: unknown sequence(s) {sorted(unknown)}; use 'pre' or 'post'")
    shape = (n_slices, size, size)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y = coords[None, :, None]
    x = coords[None, None, :]
    # The stack spans the head from bottom to top; a z-radius just under 1 leaves the outermost
    # slices empty for some patients, as in the real data.
    z = np.linspace(-1.0, 1.0, n_slices, dtype=np.float32)[:, None, None]

    # Head: a rotated ellipse per slice whose size follows an ellipsoid in z.
    rz = rng.uniform(0.97, 1.1)
    ax, ay = rng.uniform(0.66, 0.76), rng.uniform(0.8, 0.9)
    # Python floats, not numpy float64 scalars, so the float32 volumes are not promoted.
    cx, cy = (float(c) for c in rng.uniform(-0.05, 0.05, size=2))
    angle = float(rng.uniform(-0.15, 0.15))
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    u = (x - cx) * cos + (y - cy) * sin
    v = -(x - cx) * sin + (y - cy) * cos
    shrink = np.sqrt(np.clip(1.0 - (z / rz) ** 2, 0.0, None))
    r = np.sqrt((u / (ax * shrink + 1e-6)) ** 2 + (v / (ay * shrink + 1e-6)) ** 2)
    head = r < 1.0
    skull = _ramp(np.abs(r - 0.95) / 0.05, 0.6)
    brain = _ramp(r / 0.86, 0.05)

    # Tissue: grey/white matter mixed by smooth noise, plus a gentle texture.
    texture = _smooth_noise(rng, shape, grid=10)
    detail = _smooth_noise(rng, shape, grid=28)
    white = 1.0 / (1.0 + np.exp(-3.0 * detail))
    tissue = _GREY * (1.0 - white[..., None]) + _WHITE * white[..., None]
    tissue = tissue * (1.0 + 0.06 * texture[..., None])

    # Lesion: an ellipsoid with a noisy boundary, centred well inside the brain.
    # Centred on a slice, so even a short stack always shows the lesion on at least one slice.
    z_slices = z[:, 0, 0]
    z0 = float(z_slices[np.argmin(np.abs(z_slices - rng.uniform(-0.35, 0.35)))])
    s0 = float(np.sqrt(max(1.0 - (z0 / rz) ** 2, 0.2)))
    u0 = rng.uniform(-0.45, 0.45) * ax * s0
    v0 = rng.uniform(-0.45, 0.45) * ay * s0
    lrx, lry, lrz = rng.uniform(0.13, 0.28), rng.uniform(0.13, 0.28), rng.uniform(0.26, 0.4)
    d = ((u - u0) / lrx) ** 2 + ((v - v0) / lry) ** 2 + ((z - z0) / lrz) ** 2
    wobble = np.clip(0.5 * _smooth_noise(rng, shape, grid=16), -0.5, 0.6)
    lesion = (d < 1.0 + wobble) & (brain > 0.5)
    mask = lesion.astype(np.uint8)
    soft = ndimage.gaussian_filter(lesion.astype(np.float32), sigma=(0, 0.8, 0.8))
    heterogeneity = 1.0 + 0.15 * detail

    # Ventricles: two elongated ellipsoids either side of the midline, dark on every channel.
    vz, vrz = rng.uniform(-0.05, 0.2), rng.uniform(0.3, 0.45)
    csf = np.zeros(shape, np.float32)
    for side in (-1.0, 1.0):
        du = u - side * rng.uniform(0.08, 0.12)
        dv = v + rng.uniform(0.0, 0.1)
        d = (du / (0.07 * ax / 0.65)) ** 2 + (dv / 0.22) ** 2 + ((z - vz) / vrz) ** 2
        csf = np.maximum(csf, _ramp(np.sqrt(d), 0.3))
    # The lesion displaces CSF rather than showing it through.
    csf *= brain * (1.0 - soft)
    tissue = tissue * (1.0 - csf[..., None]) + _CSF * csf[..., None]

    tissue = tissue + (_LESION * (soft * heterogeneity)[..., None])

    # Compose: tissue inside the brain, skull ring outside it, black background.
    vol = tissue * brain[..., None] + _SKULL * (skull * (1.0 - brain))[..., None]
    # Per-patient scanner differences: a smooth bias field, per-channel gain and offset.
    bias = 1.0 + rng.uniform(-0.1, 0.1) * u + rng.uniform(-0.1, 0.1) * v
    gain = rng.uniform(0.75, 1.25, size=3).astype(np.float32)
    offset = rng.uniform(-0.04, 0.06, size=3).astype(np.float32)
    vol = vol * bias[..., None] * gain + offset
    vol = vol + np.float32(rng.uniform(0.012, 0.03)) * rng.standard_normal(vol.shape, dtype=np.float32)
    vol = np.where(head[..., None], vol, 0.0)
    image = np.clip(np.rint(vol * 255.0), 0, 255).astype(np.uint8)
    if "pre" in missing:
        image[..., 0] = image[..., 1]
    if "post" in missing:
        image[..., 2] = image[..., 1]
    return image, mask


def _missing_for(i: int) -> tuple[str, ...]:
    # Fixed by position (not drawn) so any dataset of >= 5 patients has both kinds of gap.
    missing: list[str] = []
    if i % 6 == 2:
        missing.append("pre")
    if i % 6 == 4 or i % 12 == 8:
        missing.append("post")
    return tuple(missing)


def _csv_text(rows: list[dict[str, int | str | None]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(DATA_CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def synthesise_dataset(
    out: str | os.PathLike[str],
    n_patients: int = 12,
    *,
    slices: tuple[int, int] = (20, 28),
    size: int = 256,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a phantom dataset in the ``kaggle_3m`` layout.

    Writes ``out/TCGA_<site>_P<nnn>_<date>/TCGA_<site>_P<nnn>_<date>_<n>.tif`` (``H x W x 3``
    uint8 RGB TIFF), ``..._<n>_mask.tif`` (uint8 0/255) and ``out/data.csv`` (the Kaggle columns,
    with some blank fields). Sites cycle through :data:`PHANTOM_SITES`; patients 3, 9, ... lack
    pre-contrast and 5, 9, 11, ... post-contrast (copies of FLAIR), as counted from 1.

    Args:
        out: target folder; created if missing.
        n_patients: number of patients.
        slices: inclusive range of slices per patient.
        size: slice height and width.
        seed: everything written depends only on it.
        overwrite: allow a non-empty ``out``; earlier phantom patient folders in it are removed
            first and ``data.csv`` is replaced, other files are left alone.

    Returns:
        ``out`` as a Path.

    Raises:
        GliomasegError: bad arguments, or ``out`` is a non-empty folder and ``overwrite`` is False.
    """
    out = Path(out)
    if n_patients < 1:
        raise GliomasegError(f"n_patients must be >= 1, got {n_patients}")
    lo, hi = slices
    if not 1 <= lo <= hi:
        raise GliomasegError(f"slices must be (min, max) with 1 <= min <= max, got {slices}")
    if size < 32:
        raise GliomasegError(f"size must be >= 32, got {size}")
    if out.exists() and not out.is_dir():
        raise GliomasegError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise GliomasegError(
                f"{out} is not empty; choose an empty or new folder, or pass --overwrite "
                "to replace the phantom data in it"
            )
        for old in out.iterdir():
            if old.is_dir() and _PHANTOM_DIR_RE.match(old.name):
                shutil.rmtree(old)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    first_day = dt.date(1995, 1, 1)
    rows: list[dict[str, int | str | None]] = []
    for i in range(n_patients):
        # One child generator per patient keeps each patient stable when n_patients changes.
        prng = np.random.default_rng([seed, i])
        site = PHANTOM_SITES[i % len(PHANTOM_SITES)]
        date = first_day + dt.timedelta(days=int(prng.integers(0, 6000)))
        patient = f"TCGA_{site}_P{i + 1:03d}"
        folder = f"{patient}_{date:%Y%m%d}"
        n_slices = int(prng.integers(lo, hi + 1))
        image, mask = synthesise_volume(prng, n_slices, size, missing=_missing_for(i))
        pdir = out / folder
        for k in range(n_slices):
            write_image(pdir / f"{folder}_{k + 1}.tif", image[k], overwrite=True)
            write_mask(pdir / f"{folder}_{k + 1}_mask.tif", mask[k], overwrite=True)
        row: dict[str, int | str | None] = {"Patient": patient}
        for col, (a, b) in _CSV_RANGES.items():
            # Blank fields appear in the real file too; ethnicity is mostly blank there.
            blank_p = 0.7 if col == "ethnicity" else 0.1
            row[col] = None if rng.random() < blank_p else int(rng.integers(a, b + 1))
        rows.append(row)
    atomic_write_text(out / "data.csv", _csv_text(rows))
    return out
