"""Scanner and preprocessing shifts as training augmentation, vectorised over a batch (issue 25).

The evaluation shifts of :mod:`gliomaseg.evaluation.shifts` act on uint8 volumes before
normalisation; training sees cached slices already z-scored per volume. These transforms imitate the
same shifts on z-scored slices: the background (the darkest value, what raw 0 maps to) is subtracted
so the slice is proportional to the raw intensities again, the shift is applied there (gamma, a
multiplicative bias field, Rician noise, skull stripping), and the slice is put back on the z-score
scale by the z-score's own rule, as a per-slice stand-in for the per-volume normalisation the shifted
volume would get: the head is counted again after the shift (every voxel above about one stored
level: a gamma above 1 sends dark brain below it, noise lifts the air above it, skull stripping
removes the scalp), air that joins it is weighed in a whole volume's proportion of air to head, and
that head is given the mean and standard deviation the slice's head had before. Restoring the old
head's statistics instead (before December 2026) kept a gamma-shifted tumour's contrast and lifted
the background, inputs no scan gives (docs/accuracy.md). Lower resolution (down- then up-sampling)
is linear and acts on the z-scores.
A slice drawn for any of the intensity shifts is converted once, gets each of them with its own
probability, and is standardised once; the work is done channels-first (``CN x H x W``), because
NumPy broadcasting over a last axis of 3 runs several times slower.

A 2.5D item (a slice stacked with its neighbours, ``C = 3 (2K + 1)`` channels) gets one draw for the
whole stack: one bias field, one gamma per sequence, one noise level per sequence and one
resolution, as a scanner gives one volume; the noise itself is drawn per plane, as each slice's is.
Skull stripping uses the same erosion for every stacked slice but each slice's own head outline,
as a brain mask of the volume would; the target mask is cut by the centre slice's.

Albumentations has per-image equivalents for some of these (``RandomGamma``, ``GaussNoise``,
``Downscale``), but calling it per slice costs about 2.5 ms of Python per 128 x 128 slice, a third of
a bf16 training step (docs/performance.md), and it has no bias field, Rician noise or skull
stripping; these few NumPy/OpenCV lines apply the draws of a whole batch at once.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from gliomaseg.data.normalise import SEQUENCES

__all__ = ["ScannerShifts"]

_HEAD = 0.05  # head voxels: above 5 % of the slice's range over its background, as in evaluation.shifts
#: Under about one uint8 level of a volume's clipped range: a voxel stored as 0, which the per-volume
#: z-score does not count as head (gliomaseg.data.normalise).
_STORED = 0.005
#: Air voxels per head voxel in a kaggle_3m volume (about 45 % of the voxels are head).
_AIR_PER_HEAD = 0.55 / 0.45
_Y, _X = np.meshgrid(np.linspace(-1, 1, 16, dtype=np.float32), np.linspace(-1, 1, 16, dtype=np.float32), indexing="ij")
#: Degree-3 polynomial terms (as MONAI's RandBiasField) on a 16 x 16 grid; fields are smooth, so they
#: are computed there and resized.
_BASIS = np.stack([_X, _Y, _X * _Y, _X * _X, _Y * _Y, _X**3, _Y**3, _X * _X * _Y, _X * _Y * _Y])
_LUT = 1024  # gamma through a lookup table of this many levels (a power per pixel costs 25x more)
#: Fewest weighted voxels (in the 4x-strided sample) a plane's re-normalisation is computed from.
_MIN_COUNTED = 16.0
#: Largest factor by which re-normalisation stretches or shrinks a plane.
_MAX_SCALE = 4.0


def _stat(x: np.ndarray, fn: Any, region: np.ndarray | None = None) -> np.ndarray:
    """A per-plane statistic of ``M x H x W`` from every 4th row and column (16x less work; a plane's
    range and moments barely change), shaped ``M x 1 x 1``."""
    if region is None:
        return fn(x[:, ::4, ::4].reshape(len(x), -1), axis=1)[:, None, None]
    mean, std, _ = _moments(x, region)
    return mean if fn == "mean" else std


def _moments(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-plane weighted mean, std and total weight of ``M x H x W`` (every 4th row and column, as
    :func:`_stat`), each ``M x 1 x 1``."""
    small = x[:, ::4, ::4].reshape(len(x), -1)
    w = weights[:, ::4, ::4].reshape(len(x), -1).astype(np.float32)
    total = w.sum(axis=1)
    n = np.maximum(total, 1e-6)
    mean = (small * w).sum(axis=1) / n
    std = np.sqrt((((small - mean[:, None]) ** 2) * w).sum(axis=1) / n)
    return mean[:, None, None], std[:, None, None], total[:, None, None]


def _restandardise(x: np.ndarray, weights: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray) -> None:
    """Map ``x`` (``M x H x W``) linearly in place so that its voxels, weighted by ``weights``, have the
    given mean and std.

    A plane whose weighted region is almost empty in the strided sample (a slice above the head, or
    dark brain that a strong gamma sent under one stored level) keeps its values: its statistics mean
    nothing, and dividing by a std near 0 once gave values of 1e5 and more, which wrecked BatchNorm's
    running statistics at the end of about one epoch in ten (docs/accuracy.md). The scale is bounded
    for the same reason: a volume's z-score, which this imitates, never stretches one slice 100-fold.
    """
    mean, std, counted = _moments(x, weights)
    scale = np.clip(ref_std / np.maximum(std, 1e-6), 1.0 / _MAX_SCALE, _MAX_SCALE)
    keep = (counted < _MIN_COUNTED) | (std < 1e-6)
    scale = np.where(keep, 1.0, scale).astype(np.float32)
    offset = np.where(keep, 0.0, ref_mean - mean * scale).astype(np.float32)
    x *= scale
    x += offset


class ScannerShifts:
    """Gamma, bias field, noise, lower resolution and skull stripping drawn per slice, applied per batch.

    Args:
        cfg: an :class:`~gliomaseg.data.augment.AugmentConfig` (``gamma_p``, ``bias_field_p``,
            ``noise_p``, ``resolution_p``, ``skull_strip_p`` and their ranges).
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._bank: np.ndarray | None = None

    def __call__(self, images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> None:
        """Augment ``N x H x W x C`` z-scored float32 images in place (masks are cut by skull stripping).

        ``C`` is 3 (pre-contrast, FLAIR, post-contrast), or ``3 (2K + 1)`` for slices stacked with their
        neighbours (see the module docstring).
        """
        cfg, n = self.cfg, len(images)
        draws = {
            name: rng.random(n) < getattr(cfg, name) for name in ("skull_strip_p", "bias_field_p", "gamma_p", "noise_p")
        }
        idx = np.flatnonzero(np.any(list(draws.values()), axis=0))
        if idx.size:
            h, w, planes = images.shape[1:]
            x = np.ascontiguousarray(images[idx].transpose(0, 3, 1, 2)).reshape(-1, h, w)
            chosen = {name: np.repeat(d[idx], planes) for name, d in draws.items()}
            masks[idx] = self._intensity(x, planes, chosen, masks[idx], rng)
            images[idx] = x.reshape(len(idx), planes, h, w).transpose(0, 2, 3, 1)
        low = np.flatnonzero(rng.random(n) < cfg.resolution_p)
        if low.size:
            self._resolution(images, low, rng)

    def _intensity(
        self, x: np.ndarray, planes: int, chosen: dict[str, np.ndarray], masks: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The intensity shifts on ``planes N x H x W`` planes (``planes`` per item) in place; returns the
        cut masks."""
        background = _stat(x, np.min)
        x -= background
        np.maximum(x, 0.0, out=x)
        top = np.maximum(_stat(x, np.max), 1e-6)
        head = x > _HEAD * top
        counted = x > _STORED * top  # what the per-volume z-score counts as head: every voxel above raw 0
        ref_mean, ref_std = _stat(x, "mean", counted) + background, _stat(x, "std", counted)
        # Air that a shift lifts above 0 (noise) joins the head a volume's z-score counts, in the
        # proportion of a whole volume's air to head, not of this slice's (a slice with a small head
        # would otherwise be normalised by its air alone).
        share = np.clip(_stat(counted.astype(np.float32), np.mean), 1e-3, 1.0 - 1e-3)
        air_weight = np.minimum(_AIR_PER_HEAD * share / (1.0 - share), 4.0)
        weights = np.where(counted, np.float32(1.0), air_weight.astype(np.float32))
        region = np.ones_like(head)
        if chosen["skull_strip_p"].any():
            region, masks = self._skull_strip(x, planes, head, chosen["skull_strip_p"], masks, rng)
        if chosen["bias_field_p"].any():
            self._bias_field(x, planes, chosen["bias_field_p"], rng)
        if chosen["gamma_p"].any():
            self._gamma(x, planes, top, chosen["gamma_p"], rng)
        if chosen["noise_p"].any():
            self._noise(x, planes, top, chosen["noise_p"], rng)
        # Re-normalised by the z-score's own rule on the shifted intensities: the head is counted again
        # (a gamma above 1 sends dark brain under one stored level, noise lifts the air above it), so its
        # statistics move as a shifted scan's would; restoring the old head's statistics instead kept
        # the tumour's contrast and lifted the background (docs/accuracy.md).
        _restandardise(x, weights * (region & (x > _STORED * top)), ref_mean, ref_std)
        if chosen["skull_strip_p"].any():
            # The stripped background lands at -mean/std of the brain; from one small or uniform slice's
            # statistics that can be -10 or lower, where a real volume's (about -3) never goes.
            np.maximum(x, background - 2.5, out=x)
        return masks

    def _skull_strip(
        self,
        x: np.ndarray,
        planes: int,
        head: np.ndarray,
        chosen: np.ndarray,
        masks: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        region, masks = np.ones_like(head), masks.copy()
        scale = x.shape[1] / 256.0
        depth = planes // SEQUENCES
        for k in np.flatnonzero(chosen[::planes]):
            radius = max(1, round(float(rng.uniform(6.0, 12.0)) * scale))
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            for j in range(depth):  # each stacked slice by its own outline, as a volume's brain mask
                first = planes * k + SEQUENCES * j
                brain = ndimage.binary_fill_holes(head[first + 1])  # FLAIR's head, holes (CSF, necrosis) kept inside
                brain = cv2.erode(brain.astype(np.uint8), disk).astype(bool)
                if brain.sum() < 16:  # a slice above or below the brain: nothing to strip to
                    continue
                x[first : first + SEQUENCES] *= brain
                region[first : first + SEQUENCES] = brain
                if j == depth // 2:  # the centre slice, whose mask is the target
                    masks[k] &= brain.astype(masks.dtype)
        return region, masks

    def _bias_field(self, x: np.ndarray, planes: int, chosen: np.ndarray, rng: np.random.Generator) -> None:
        h, w = x.shape[1:]
        for k in np.flatnonzero(chosen[::planes]):  # one field per item, the same for all its planes
            coeff = rng.uniform(-self.cfg.bias_field_coeff, self.cfg.bias_field_coeff, len(_BASIS))
            field = np.exp(np.tensordot(coeff.astype(np.float32), _BASIS, axes=1))
            x[planes * k : planes * (k + 1)] *= cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)

    def _gamma(self, x: np.ndarray, planes: int, top: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> None:
        log_g = np.log(self.cfg.gamma_max)
        levels = np.linspace(0.0, 1.0, _LUT, dtype=np.float32)
        for k in np.flatnonzero(chosen[::planes]):
            for sequence in range(SEQUENCES):  # one gamma per sequence, shared by the stacked slices
                table = levels ** np.exp(rng.uniform(-log_g, log_g))
                for plane in range(planes * k + sequence, planes * (k + 1), SEQUENCES):
                    level = np.clip(x[plane] * ((_LUT - 1) / top[plane]), 0, _LUT - 1).astype(np.int16)
                    x[plane] = table[level] * top[plane]

    def _noise(self, x: np.ndarray, planes: int, top: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> None:
        idx = np.flatnonzero(chosen)
        # one level per item and sequence (in plane order: item, stacked slice, sequence)
        level = rng.uniform(0.0, self.cfg.noise_std, (len(idx) // planes, 1, SEQUENCES))
        level = np.broadcast_to(level, (len(level), planes // SEQUENCES, SEQUENCES)).reshape(-1, 1, 1)
        sigma = (level * top[idx]).astype(np.float32)
        if self._bank is None or self._bank.shape[2:] != x.shape[1:]:
            # standard normal fields drawn once (fresh ones per slice cost more than the rest of the recipe);
            # each use takes a random entry rolled by a random offset
            self._bank = rng.standard_normal((8, 2, *x.shape[1:]), dtype=np.float32)
        pick = self._bank[rng.integers(0, len(self._bank), len(idx))]
        pick = np.roll(pick, (int(rng.integers(0, x.shape[1])), int(rng.integers(0, x.shape[2]))), axis=(2, 3))
        real = x[idx] + sigma * pick[:, 0]
        imag = sigma * pick[:, 1]
        x[idx] = np.sqrt(real * real + imag * imag)  # the magnitude of complex Gaussian noise: Rician

    def _resolution(self, images: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> None:
        h, w = images.shape[1:3]
        for i, factor in zip(idx, rng.uniform(1.5, self.cfg.resolution_factor, len(idx))):
            size = (max(4, round(w / factor)), max(4, round(h / factor)))
            for first in range(0, images.shape[3], SEQUENCES):  # OpenCV resizes at most 4 channels at once
                part = np.ascontiguousarray(images[i, ..., first : first + SEQUENCES])
                small = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
                images[i, ..., first : first + SEQUENCES] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
