"""Named, seeded, realistic distribution shifts of a test volume and its mask (issue 25).

Each shift turns an ``S x H x W x 3`` uint8 volume (pre-contrast, FLAIR, post-contrast, as read from
kaggle_3m) and its ``S x H x W`` mask into a shifted copy of both, the way another scanner, protocol
or preprocessing pipeline might deliver the same patient. Geometric shifts move the mask with the
image (nearest-neighbour); intensity shifts leave it as it is. The strength of each shift is drawn
from a fixed range by a generator seeded with ``seed``, so the same name and seed give the same
volume (:func:`case_seed` derives one seed per patient and shift for an evaluation).

The shifts (ranges at 256 x 256; :data:`SHIFTS` is the one list of names):

- ``rotation``: in-plane rotation by 10-30 degrees either way (MONAI ``Rotate``, zero padding).
- ``scale``: field of view, zoom by 0.7-0.85 (more background, smaller head) or 1.15-1.3 (head cut by
  the field of view) about the centre, size kept (MONAI ``Zoom``, zero padding).
- ``resolution``: in-plane resolution lowered 2-3 fold (MONAI ``Resize`` by area down, bilinear
  back up) and blurred (``GaussianSmooth``, sigma 0.5-1 px); the mask stays at full resolution.
- ``bias_field``: a smooth multiplicative field over the volume (MONAI ``RandBiasField``, degree 3),
  divided by its mean inside the head so the overall brightness stays.
- ``gamma``: gamma 0.5-0.75 or 1.4-2.0 on the intensity range (MONAI ``AdjustContrast``).
- ``noise``: Rician noise with sigma 3-6 % of the range (MONAI ``RandRicianNoise``; magnitude MR
  images have Rician, not Gaussian, noise, and the background becomes positive noise).
- ``skull_strip``: the non-brain tissue removed with a brain mask derived from the volume itself
  (see :func:`brain_mask`); the tumour mask is cut to the brain mask as well.
- ``flair_only``: pre- and post-contrast replaced by copies of FLAIR, the dataset's way of filling
  missing sequences.
- ``raw_intensities``: each channel at a scanner-like scale (x 4-16, offset 0-40) with a long bright
  tail (0.2 % of the head voxels x 2-6, vessels and fat) as a float volume, then scaled back to
  uint8 through the reading path of a NIfTI file (:func:`gliomaseg.inference.nifti.nifti_to_uint8`).
- ``combined``: all of the above in acquisition order: bias field, resolution, noise, gamma, raw
  intensities, skull stripping, rotation, scale, FLAIR only.

MONAI has no skull stripping, no FLAIR-only input and no scanner-scale intensities, so those three
are written here; everything else is MONAI's transform.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gliomaseg.errors import GliomasegError

__all__ = ["SHIFTS", "Shift", "apply_shift", "brain_mask", "case_seed", "resolve_shifts", "shift_names"]

Volume = tuple[np.ndarray, np.ndarray]
_ALL = "all"


def _channels_first(volume: np.ndarray) -> np.ndarray:
    """``S x H x W x 3`` -> ``3S x H x W`` float32: every slice and channel is one 2D MONAI channel."""
    s, h, w, c = volume.shape
    return volume.transpose(0, 3, 1, 2).reshape(s * c, h, w).astype(np.float32)


def _channels_last(array: object, slices: int) -> np.ndarray:
    """``3S x H x W`` floats (numpy or MONAI tensor) -> ``S x H x W x 3`` uint8 (rounded, clipped)."""
    a = np.asarray(array, dtype=np.float32)
    a = a.reshape(slices, -1, *a.shape[1:]).transpose(0, 2, 3, 1)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _either_side(rng: np.random.Generator, low: tuple[float, float], high: tuple[float, float]) -> float:
    """A value from ``low`` or ``high`` with equal chance (a shift is never a no-op)."""
    lo, hi = low if rng.random() < 0.5 else high
    return float(rng.uniform(lo, hi))


def _monai_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _rotation(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from monai.transforms import Rotate

    angle = math.radians(_either_side(rng, (-30.0, -10.0), (10.0, 30.0)))
    image = Rotate(angle, keep_size=True, mode="bilinear", padding_mode="zeros")(_channels_first(volume))
    truth = Rotate(angle, keep_size=True, mode="nearest", padding_mode="zeros")(mask.astype(np.float32))
    return _channels_last(image, len(volume)), np.asarray(truth) > 0.5


def _scale(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from monai.transforms import Zoom

    zoom = _either_side(rng, (0.7, 0.85), (1.15, 1.3))
    image = Zoom(zoom, mode="bilinear", padding_mode="constant", keep_size=True)(_channels_first(volume))
    truth = Zoom(zoom, mode="nearest", padding_mode="constant", keep_size=True)(mask.astype(np.float32))
    return _channels_last(image, len(volume)), np.asarray(truth) > 0.5


def _resolution(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from monai.transforms import GaussianSmooth, Resize

    factor = float(rng.uniform(2.0, 3.0))
    sigma = float(rng.uniform(0.5, 1.0))
    h, w = volume.shape[1:3]
    low = Resize((max(8, round(h / factor)), max(8, round(w / factor))), mode="area")(_channels_first(volume))
    back = Resize((h, w), mode="bilinear", align_corners=False)(low)
    return _channels_last(GaussianSmooth(sigma)(back), len(volume)), mask


def _head(volume: np.ndarray) -> np.ndarray:
    """Voxels of the head: the channel mean above 5 % of its 99th percentile (kaggle_3m's air is ~0)."""
    mean = volume.mean(axis=-1)
    return mean > 0.05 * max(float(np.percentile(mean, 99)), 1.0)


def _bias_field(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from monai.transforms import RandBiasField

    image = volume.transpose(3, 1, 2, 0).astype(np.float32)  # 3 x H x W x S: one field over the volume
    field = RandBiasField(degree=3, coeff_range=(0.0, 0.15), prob=1.0)
    field.set_random_state(_monai_seed(rng))
    biased = np.asarray(field(np.ones_like(image[:1])))[0]
    # RandBiasField draws positive coefficients only; dividing by the field's mean in the head keeps
    # the overall brightness, so the shift is the field's shape, not a global gain.
    head = _head(volume).transpose(1, 2, 0)
    biased = biased / float(biased[head].mean() if head.any() else biased.mean())
    out = image * biased[None]
    return np.clip(np.rint(out.transpose(3, 1, 2, 0)), 0, 255).astype(np.uint8), mask


def _gamma(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from monai.transforms import AdjustContrast

    gamma = _either_side(rng, (0.5, 0.75), (1.4, 2.0))
    return _channels_last(AdjustContrast(gamma)(_channels_first(volume)), len(volume)), mask


def _noise(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from monai.transforms import RandRicianNoise

    noise = RandRicianNoise(prob=1.0, std=float(rng.uniform(0.03, 0.06)) * 255.0, sample_std=False)
    noise.set_random_state(_monai_seed(rng))
    return _channels_last(noise(_channels_first(volume)), len(volume)), mask


def brain_mask(volume: np.ndarray, erosion_px: int = 10) -> np.ndarray:
    """A brain mask derived from the volume itself, the way a simple skull-stripping tool would.

    Steps (written here: MONAI has no skull stripping): the head is every voxel whose channel mean
    is above 5 % of its 99th percentile; its largest 3D component is kept (drops noise specks) and
    its holes filled per slice (dark CSF and necrosis stay inside); it is then eroded in-plane by
    ``erosion_px`` pixels (scalp and skull, about 8-12 mm at kaggle_3m's 0.8-1 mm pixels) and the
    largest 3D component kept again (erosion detaches the eyes and neck).

    Args:
        volume: ``S x H x W x 3`` uint8.
        erosion_px: in-plane erosion radius in pixels.

    Returns:
        ``S x H x W`` bool; all False for a blank volume.
    """
    head = _head(volume)
    labels, n = ndimage.label(head)
    if n == 0:
        return head
    keep = labels == 1 + int(np.argmax(ndimage.sum_labels(head, labels, range(1, n + 1))))
    keep = np.stack([ndimage.binary_fill_holes(s) for s in keep])
    disk = np.hypot(*np.mgrid[-erosion_px : erosion_px + 1, -erosion_px : erosion_px + 1]) <= erosion_px
    brain = ndimage.binary_erosion(keep, structure=disk[None])
    labels, n = ndimage.label(brain)
    if n > 1:
        brain = labels == 1 + int(np.argmax(ndimage.sum_labels(brain, labels, range(1, n + 1))))
    return brain


def _skull_strip(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    scale = volume.shape[1] / 256.0
    brain = brain_mask(volume, erosion_px=max(1, round(float(rng.uniform(8, 12)) * scale)))
    return volume * brain[..., None].astype(np.uint8), mask & brain


def _flair_only(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    return np.repeat(volume[..., 1:2], 3, axis=-1), mask


def _raw_intensities(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    from gliomaseg.inference.nifti import nifti_to_uint8

    head = _head(volume)
    raw = np.empty(volume.shape, np.float32)
    for c in range(volume.shape[-1]):
        raw[..., c] = volume[..., c] * np.float32(rng.uniform(4.0, 16.0)) + np.float32(rng.uniform(0.0, 40.0))
        # a long bright tail: a few head voxels several times brighter (vessels, fat, flow artefacts)
        tail = head & (rng.random(head.shape) < 0.002)
        raw[..., c][tail] *= rng.uniform(2.0, 6.0, int(tail.sum())).astype(np.float32)
    return nifti_to_uint8(raw), mask


_COMBINED_ORDER = (
    "bias_field",
    "resolution",
    "noise",
    "gamma",
    "raw_intensities",
    "skull_strip",
    "rotation",
    "scale",
    "flair_only",
)


def _combined(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Volume:
    for name in _COMBINED_ORDER:
        volume, mask = SHIFTS[name].transform(volume, mask, rng)
    return volume, mask


@dataclass(frozen=True)
class Shift:
    """One named shift.

    Attributes:
        name: the registry name.
        description: one line for reports.
        geometric: whether the mask moves with the image.
        transform: ``(volume, mask, rng) -> (volume, mask)``.
    """

    name: str
    description: str
    geometric: bool
    transform: Callable[[np.ndarray, np.ndarray, np.random.Generator], Volume]


#: The registry: the one list of shift names, in report order.
SHIFTS: dict[str, Shift] = {
    s.name: s
    for s in (
        Shift("rotation", "in-plane rotation 10-30 degrees", True, _rotation),
        Shift("scale", "field of view: zoom 0.7-0.85 or 1.15-1.3", True, _scale),
        Shift("resolution", "in-plane resolution 2-3x lower, blurred", False, _resolution),
        Shift("bias_field", "smooth multiplicative bias field", False, _bias_field),
        Shift("gamma", "gamma 0.5-0.75 or 1.4-2.0", False, _gamma),
        Shift("noise", "Rician noise, sigma 3-6 % of the range", False, _noise),
        Shift("skull_strip", "skull stripped with a mask derived from the volume", True, _skull_strip),
        Shift("flair_only", "pre- and post-contrast replaced by FLAIR", False, _flair_only),
        Shift("raw_intensities", "scanner-scale float intensities read like a NIfTI", False, _raw_intensities),
        Shift("combined", "all of the above", True, _combined),
    )
}


def shift_names() -> list[str]:
    """The registered shift names, in report order."""
    return list(SHIFTS)


def resolve_shifts(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """Validate shift names; ``all`` stands for every registered shift. Duplicates are dropped.

    Raises:
        GliomasegError: an unknown name (the message lists the valid ones).
    """
    out: list[str] = []
    for name in names or ():
        chosen = shift_names() if name == _ALL else [name]
        for n in chosen:
            if n not in SHIFTS:
                raise GliomasegError(f"unknown shift {name!r}; choose from {shift_names()} or {_ALL!r}")
            if n not in out:
                out.append(n)
    return out


def case_seed(seed: int, shift: str, patient_id: str) -> int:
    """A stable per-patient seed for one shift (independent of the order patients are evaluated in)."""
    return zlib.crc32(f"{shift}:{patient_id}:{int(seed)}".encode())


def apply_shift(name: str, volume: np.ndarray, mask: np.ndarray | None = None, seed: int = 0) -> Volume:
    """Apply a named shift to a volume and its mask.

    Args:
        name: a registered shift (see :func:`shift_names`).
        volume: ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast).
        mask: ``S x H x W`` ground truth (any dtype, nonzero = tumour); None: an empty mask.
        seed: the same name and seed give the same output.

    Returns:
        ``(volume, mask)``: ``S x H x W x 3`` uint8 and ``S x H x W`` bool, the inputs untouched.

    Raises:
        GliomasegError: unknown name, wrong shape or dtype.

    Example:
        >>> v = np.zeros((2, 64, 64, 3), np.uint8); v[:, 16:48, 16:48] = 200
        >>> out, m = apply_shift("flair_only", v, seed=0)
        >>> out.shape, m.shape
        ((2, 64, 64, 3), (2, 64, 64))
    """
    if name not in SHIFTS:
        raise GliomasegError(f"unknown shift {name!r}; choose from {shift_names()}")
    volume = np.asarray(volume)
    if volume.ndim != 4 or volume.shape[-1] != 3 or volume.dtype != np.uint8:
        raise GliomasegError(f"volume must be S x H x W x 3 uint8, got shape {volume.shape} dtype {volume.dtype}")
    truth = np.zeros(volume.shape[:3], bool) if mask is None else np.asarray(mask) > 0
    if truth.shape != volume.shape[:3]:
        raise GliomasegError(f"mask shape {truth.shape} does not match the volume's {volume.shape[:3]}")
    out, out_mask = SHIFTS[name].transform(volume, truth, np.random.default_rng(seed))
    return np.ascontiguousarray(out, dtype=np.uint8), np.ascontiguousarray(out_mask, dtype=bool)
