"""Per-volume intensity normalisation and resizing, applied to every volume before the network.

Normalisation works on whole patient volumes ``S x H x W x 3`` (uint8, channels pre-contrast, FLAIR,
post-contrast), because MRI intensities are only comparable within one acquisition. Modes:

- ``"zscore"`` (default): per volume and channel, clip at the channel's 99.5th percentile (bright
  outliers such as vessels or fat), then subtract the mean and divide by the standard deviation of the
  voxels inside the head (voxels > 0 of that channel; if fewer than 1 % of the voxels are > 0, all voxels
  are used). The background is not forced to 0: it keeps the value raw 0 maps to, ``-mean / std``
  (about -1 to -2), so it stays the darkest value and resizing/augmentation do not create a bright rim.
- ``"reference"``: what the Buda et al. reference implementation does (``utils.normalize_volume``):
  rescale the whole volume's 10th–99th percentile range (over all channels) to [0, 1] with clipping
  (``skimage.exposure.rescale_intensity`` semantics), then z-score each channel over the whole volume.
- ``"scale"``: ``x / 255`` (no volume statistics).

A single slice is treated as a volume of one slice, so its statistics come from that slice alone
(used when predicting on loose slices).

Order: normalise at full resolution first, then resize (bilinear for images, nearest for masks), so
the statistics do not depend on the target size and match what prediction on full-size slices sees.
Last, a model trained with ``context_slices = K > 0`` (2.5D input) gets each slice stacked with its
``K`` neighbours on either side as channels (:func:`stack_context`); the cache stores single slices and
the training data stack them as they are read, with the same edge rule (:func:`context_index`).
Because the inputs are uint8, every mode reduces to a 256-entry lookup table per channel built from a
histogram of the volume; percentiles, means and standard deviations are exact (numpy's ``linear``
percentile method) without ever materialising a float64 copy of the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from gliomaseg.errors import GliomasegError
from gliomaseg.utils import SettingsMixin

__all__ = [
    "MIN_SIZE",
    "NORMALISATIONS",
    "SIZE_MULTIPLE",
    "MAX_CONTEXT_SLICES",
    "SEQUENCES",
    "check_size",
    "PreprocessConfig",
    "context_index",
    "normalise_volume",
    "preprocess_volume",
    "resize_volume",
    "stack_context",
    "shared_channel",
]

SIZE_MULTIPLE = 16
"""Network input sides must be multiples of this: every registered model downsamples four times by 2."""
MIN_SIZE = 32
"""The smallest training/preprocessing size (a 2 x 2 bottleneck after four poolings)."""
SEQUENCES = 3
"""Channels of one slice: pre-contrast, FLAIR, post-contrast."""
MAX_CONTEXT_SLICES = 3
"""The most neighbours on each side a 2.5D model may take (7 slices: about 2 cm at kaggle_3m's spacing)."""


def check_size(size: object, name: str = "size") -> int:
    """The one rule for a training/preprocessing size: an int, a multiple of 16 and >= 32.

    Args:
        size: the value to check.
        name: the setting's name for the message.

    Returns:
        ``size`` as an int.

    Raises:
        TypeError: not an integer.
        GliomasegError: not a multiple of :data:`SIZE_MULTIPLE` or below :data:`MIN_SIZE`.

    Example:
        >>> check_size(128)
        128
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"{name}={size!r} must be an int (e.g. 256)")
    if size < MIN_SIZE or size % SIZE_MULTIPLE:
        raise GliomasegError(
            f"{name}={size}: must be a multiple of {SIZE_MULTIPLE} and >= {MIN_SIZE} (e.g. 64, 128, 256; "
            "four pooling levels)"
        )
    return int(size)


NORMALISATIONS = ("zscore", "reference", "scale")
_ZSCORE_CLIP_PERCENTILE = 99.5
_HEAD_MIN_FRACTION = 0.01
_REF_LOW, _REF_HIGH = 10.0, 99.0
_EPS = 1e-6


@dataclass(frozen=True)
class PreprocessConfig(SettingsMixin):
    """Preprocessing settings; part of the cache key and of every checkpoint.

    Args:
        size: output height and width in pixels (see :func:`check_size`).
        normalisation: ``"zscore"``, ``"reference"`` or ``"scale"`` (see module docstring).
        context_slices: neighbours on each side stacked with a slice as extra channels (2.5D input;
            0 to :data:`MAX_CONTEXT_SLICES`); the network takes :attr:`channels` channels. Model files
            written before the setting existed have no such key and read as 0.
    """

    _SETTING_KIND = "preprocessing setting"

    size: int = 256
    normalisation: str = "zscore"
    context_slices: int = 0

    def __post_init__(self) -> None:
        size = check_size(self.size)
        if self.normalisation not in NORMALISATIONS:
            raise GliomasegError(f"normalisation={self.normalisation!r}: choose one of {list(NORMALISATIONS)}")
        k = self.context_slices
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= MAX_CONTEXT_SLICES:
            raise GliomasegError(
                f"context_slices={k!r}: must be an int from 0 (one slice, 3 channels) to {MAX_CONTEXT_SLICES} "
                f"(neighbours on each side stacked as channels)"
            )
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "context_slices", int(k))

    @property
    def channels(self) -> int:
        """The network's input channels: 3 sequences for each of the ``2 * context_slices + 1`` slices."""
        return SEQUENCES * (2 * self.context_slices + 1)

    def per_slice(self) -> PreprocessConfig:
        """These settings without the neighbours: what the slice cache stores (one cache serves every K)."""
        return replace(self, context_slices=0)


# ----------------------------------------------------------------------------------------------------
# normalisation


def _check_volume(volume: np.ndarray, name: str = "volume") -> np.ndarray:
    volume = np.asarray(volume)
    if volume.dtype != np.uint8:
        raise TypeError(f"{name} has dtype {volume.dtype}; expected uint8 S x H x W x 3 (read it with io.read_image)")
    if volume.ndim == 3 and volume.shape[-1] == 3:
        volume = volume[None]  # one slice is a volume of one
    if volume.ndim != 4 or volume.shape[-1] != 3:
        raise GliomasegError(f"{name} has shape {volume.shape}; expected S x H x W x 3 (or H x W x 3)")
    return volume


def _hist_percentile(counts: np.ndarray, q: float) -> float:
    """``np.percentile(x, q)`` (linear method) of the values whose histogram over 0..K-1 is ``counts``."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    pos = q / 100.0 * (n - 1)
    lo, frac = int(np.floor(pos)), pos - np.floor(pos)
    v_lo = int(np.searchsorted(cum, lo, side="right"))
    v_hi = int(np.searchsorted(cum, min(lo + 1, n - 1), side="right"))
    return float(v_lo + frac * (v_hi - v_lo))


def _weighted_mean_std(values: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    n = counts.sum()
    mean = float((values * counts).sum() / n)
    var = float((((values - mean) ** 2) * counts).sum() / n)
    return mean, float(np.sqrt(var))


def shared_channel(volume: np.ndarray) -> np.ndarray | None:
    """The one ``S x H x W`` array behind all channels of a volume whose channels are the same memory, else None.

    A FLAIR-only scan fills the missing sequences with FLAIR (as kaggle_3m does); the readers give it
    as one uint8 array broadcast to three channels (channel stride 0), and the steps here then work
    on that one channel and broadcast the result: the same numbers as three copies, at a third of the cost.
    """
    return volume[..., 0] if volume.ndim == 4 and volume.shape[-1] > 1 and volume.strides[-1] == 0 else None


def _channel_histograms(volume: np.ndarray) -> np.ndarray:
    """``3 x 256`` int64 histograms of an ``S x H x W x 3`` uint8 volume.

    ``cv2.calcHist`` is ~20x faster than ``np.bincount`` on a strided channel, and faster still on
    a contiguous plane (hence ``cv2.split``: 9 ms instead of 14 ms for 40 slices of 256 x 256); it
    counts in float32, so it is fed chunks of fewer than 2**24 pixels to keep the counts exact.
    A volume of one shared channel (:func:`shared_channel`) is counted once.
    """
    shared = shared_channel(volume)
    flat = volume.reshape(-1, volume.shape[2], 3) if shared is None else shared.reshape(-1, volume.shape[2], 1)
    step = max(1, (1 << 23) // max(1, volume.shape[2]))
    hists = np.zeros((flat.shape[-1], 256), dtype=np.int64)
    for start in range(0, flat.shape[0], step):
        chunk = np.ascontiguousarray(flat[start : start + step])
        planes = cv2.split(chunk) if shared is None else [chunk[..., 0]]
        for c, plane in enumerate(planes):
            hists[c] += cv2.calcHist([plane], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return hists if shared is None else np.repeat(hists, 3, axis=0)


def _luts(volume: np.ndarray, mode: str) -> np.ndarray:
    """Per-channel lookup tables ``3 x 256`` (float32) mapping raw uint8 to normalised values."""
    levels = np.arange(256, dtype=np.float64)
    if mode == "scale":
        return np.tile((levels / 255.0).astype(np.float32), (3, 1))
    hists = _channel_histograms(volume)
    luts = np.empty((3, 256), dtype=np.float32)
    if mode == "zscore":
        for c in range(3):
            top = _hist_percentile(hists[c], _ZSCORE_CLIP_PERCENTILE)
            clipped = np.minimum(levels, top)
            head = hists[c].copy()
            head[0] = 0
            if head.sum() < _HEAD_MIN_FRACTION * hists[c].sum():
                head = hists[c]
            mean, std = _weighted_mean_std(clipped, head)
            luts[c] = (clipped - mean) / (std if std > _EPS else 1.0)
        return luts
    if mode == "reference":
        total = hists.sum(axis=0)
        p_lo = _hist_percentile(total, _REF_LOW)
        p_hi = _hist_percentile(total, _REF_HIGH)
        if p_hi > p_lo:
            rescaled = (np.clip(levels, p_lo, p_hi) - p_lo) / (p_hi - p_lo)
        else:  # constant volume: skimage would divide by zero; map everything to 0
            rescaled = np.zeros_like(levels)
        for c in range(3):
            mean, std = _weighted_mean_std(rescaled, hists[c])
            luts[c] = (rescaled - mean) / (std if std > _EPS else 1.0)
        return luts
    raise GliomasegError(f"normalisation={mode!r} must be one of {list(NORMALISATIONS)}")


def normalise_volume(volume: np.ndarray, mode: str = "zscore") -> np.ndarray:
    """Normalise one patient volume.

    Args:
        volume: ``S x H x W x 3`` uint8 (``H x W x 3`` is taken as a volume of one slice).
        mode: ``"zscore"``, ``"reference"`` or ``"scale"`` (see module docstring).

    Returns:
        float32 array of the same shape as ``volume`` (``1 x H x W x 3`` for a single slice); a read-only
        broadcast of one channel when the volume's channels are one array (:func:`shared_channel`).

    Raises:
        TypeError: ``volume`` is not uint8.
        GliomasegError: wrong shape or unknown mode.
    """
    if mode not in NORMALISATIONS:
        raise GliomasegError(f"normalisation={mode!r} must be one of {list(NORMALISATIONS)}")
    volume = _check_volume(volume)
    luts = _luts(volume, mode)
    shared = shared_channel(volume)
    if shared is not None:  # identical channels have identical tables: one lookup, broadcast back
        plane = np.ascontiguousarray(shared).reshape(-1, volume.shape[2])
        out = cv2.LUT(plane, np.ascontiguousarray(luts[0].reshape(1, 256))).reshape(shared.shape)
        return np.broadcast_to(out[..., None], volume.shape)
    # One 3-channel LUT over the volume seen as a tall image: each channel uses its own table.
    flat = np.ascontiguousarray(volume).reshape(-1, volume.shape[2], 3)
    out = cv2.LUT(flat, np.ascontiguousarray(luts.T.reshape(1, 256, 3)))
    return out.reshape(volume.shape)


# ----------------------------------------------------------------------------------------------------
# resizing


def resize_volume(volume: np.ndarray, size: int, kind: str = "image") -> np.ndarray:
    """Resize every slice of a volume to ``size x size``.

    Images use bilinear interpolation (``cv2.INTER_LINEAR``); masks use nearest neighbour
    (``cv2.INTER_NEAREST_EXACT``, which unlike ``INTER_NEAREST`` has no half-pixel shift), so they stay
    binary. Non-square slices are stretched to a square.

    Args:
        volume: images ``S x H x W x C`` (any float/uint8 dtype) or masks ``S x H x W``.
        size: output height and width.
        kind: ``"image"`` or ``"mask"``.

    Returns:
        Array ``S x size x size (x C)`` of the input dtype (unchanged input if already that size); a read-only
        broadcast of one channel when the channels are one array (:func:`shared_channel`).

    Raises:
        GliomasegError: unknown ``kind``, bad ``size`` or wrong number of dimensions.
    """
    if kind not in ("image", "mask"):
        raise GliomasegError(f"kind={kind!r} must be 'image' or 'mask'")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise GliomasegError(f"size={size!r} must be a positive int")
    volume = np.asarray(volume)
    want_ndim = 4 if kind == "image" else 3
    if volume.ndim != want_ndim:
        shape = "S x H x W x C" if kind == "image" else "S x H x W"
        raise GliomasegError(f"{kind} volume has shape {volume.shape}; expected {shape}")
    if volume.shape[1] == size and volume.shape[2] == size:
        return volume
    interp = cv2.INTER_LINEAR if kind == "image" else cv2.INTER_NEAREST_EXACT
    shared = shared_channel(volume) if kind == "image" else None
    if shared is not None:  # cv2 interpolates each channel on its own: one channel resized, broadcast back
        plane = np.empty((volume.shape[0], size, size), dtype=volume.dtype)
        for i in range(volume.shape[0]):
            plane[i] = cv2.resize(np.ascontiguousarray(shared[i]), (size, size), interpolation=interp)
        return np.broadcast_to(plane[..., None], (*plane.shape, volume.shape[3]))
    out_shape = (volume.shape[0], size, size, *volume.shape[3:])
    out = np.empty(out_shape, dtype=volume.dtype)
    for i in range(volume.shape[0]):
        res = cv2.resize(np.ascontiguousarray(volume[i]), (size, size), interpolation=interp)
        out[i] = res.reshape(out_shape[1:])
    return out


def context_index(n: int, k: int) -> np.ndarray:
    """For each of ``n`` slices in order, the indices of itself and its ``k`` neighbours on each side.

    At a volume's first and last slices the missing neighbours repeat the edge slice: the nearest
    slice that exists is the best guess of the one that does not, so the stack still looks like
    anatomy. Zero-filled neighbours would not (after z-scoring 0 is mid-grey tissue, not background:
    a blank grey slice no scan gives), and dropping the edge slices would leave them unsegmented.

    Args:
        n: slices in the volume (>= 1).
        k: neighbours on each side (>= 0).

    Returns:
        int64 ``n x (2k + 1)``: row ``i`` is ``clip(i - k .. i + k, 0, n - 1)``, the centre in column ``k``.

    Example:
        >>> context_index(3, 1).tolist()
        [[0, 0, 1], [0, 1, 2], [1, 2, 2]]
    """
    offsets = np.arange(-k, k + 1, dtype=np.int64)
    return np.clip(np.arange(n, dtype=np.int64)[:, None] + offsets, 0, max(n - 1, 0))


def stack_context(images: np.ndarray, k: int) -> np.ndarray:
    """Each slice of a volume with its ``k`` neighbours on each side, stacked along the channels.

    Args:
        images: ``S x H x W x C`` one patient's slices in order (any dtype).
        k: neighbours on each side; 0 returns ``images`` itself.

    Returns:
        ``S x H x W x (2k + 1) C``: channels ``j C .. j C + C - 1`` hold slice ``s - k + j`` (the centre
        slice at ``j = k``), with the edge rule of :func:`context_index`.
    """
    if k == 0:
        return images
    s, h, w, c = images.shape
    stacked = images[context_index(s, k)]  # S x (2k+1) x H x W x C
    return np.ascontiguousarray(stacked.transpose(0, 2, 3, 1, 4)).reshape(s, h, w, (2 * k + 1) * c)


def preprocess_volume(images: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Normalise at full resolution, resize, and stack each slice's neighbours (``cfg.context_slices``).

    Args:
        images: ``S x H x W x 3`` uint8, one patient's slices in order (or ``H x W x 3``: one slice,
            stats from it alone).
        cfg: preprocessing settings.

    Returns:
        float32 ``S x size x size x cfg.channels`` (``x 3`` without context slices): the network's input,
        channels last.
    """
    out = resize_volume(normalise_volume(images, cfg.normalisation), cfg.size, "image")
    return stack_context(out, cfg.context_slices)
