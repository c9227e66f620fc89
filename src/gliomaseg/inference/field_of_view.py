"""The field-of-view window: the model sees the head framed as kaggle_3m framed it.

kaggle_3m's slices are cut close around the head (its largest in-plane extent fills about
:data:`HEAD_FRACTION` of the slice side). A scan with a wider or off-centre field of view shows the
model a smaller head after the resize to the training size, and accuracy drops (0.90 -> 0.47 mean
Dice in a 512 x 512 canvas, docs/geometry.md). The window crops or pads each slice of the
model-frame volume to a square around the head, sized as in kaggle_3m; the probabilities are put
back into the full slices (zero outside the window), so everything after the network, including
what the web page shows, sees the volume's own slices.

No library offers this as one step: MONAI's ``CropForeground`` crops to a margin around the
foreground rather than to a size relative to it, and does not pad to a square; the box arithmetic
is a few lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from gliomaseg.data.normalise import MIN_SIZE, shared_channel

__all__ = ["FRAMED_FRACTION", "HEAD_FRACTION", "crop_to_box", "head_box", "uncrop_from_box", "window_box", "windowed"]

#: The head's largest in-plane extent over the slice side in kaggle_3m (median over 24 non-test patients of
#: lgg-dev measured with :func:`head_box`; range 0.79-0.98).
HEAD_FRACTION = 0.88
#: A head filling at least this share of the slice side is framed as in training already and is not windowed:
#: over the 76 non-test lgg-dev patients (0.74-1.00, 70 of them >= 0.8) windowing them anyway cost 0.004 mean
#: Dice (one patient 0.105), and no shifted framing of benchmarks/field_of_view.py reaches it.
FRAMED_FRACTION = 0.8

Box = tuple[int, int, int, int]


def head_box(flair: np.ndarray) -> Box:
    """The head's in-plane bounding box ``(row0, col0, rows, cols)``.

    Args:
        flair: ``S x H x W`` FLAIR slices (any numeric dtype).

    Returns:
        The box of the largest connected part of the smoothed mean slice above 15 % of its 99th
        percentile; the whole slice when nothing is above it.
    """
    mean = ndimage.gaussian_filter(flair.mean(axis=0, dtype=np.float32), 2.0)
    head = mean > 0.15 * max(float(np.percentile(mean, 99)), 1e-6)
    labels, n = ndimage.label(head)
    if n == 0:
        return 0, 0, flair.shape[1], flair.shape[2]
    largest = 1 + int(np.argmax(ndimage.sum(head, labels, range(1, n + 1))))
    rows, cols = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    return rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start


def window_box(flair: np.ndarray) -> Box | None:
    """The square window centred on the head whose side the head fills to :data:`HEAD_FRACTION`.

    Args:
        flair: ``S x H x W`` FLAIR slices.

    Returns:
        ``(row0, col0, side, side)``, which may reach outside the slices (padding); None when the head
        already fills :data:`FRAMED_FRACTION` of the slices' larger side (no window needed).
    """
    r0, c0, h, w = head_box(flair)
    if max(h, w) >= FRAMED_FRACTION * max(flair.shape[1:3]):
        return None
    side = max(MIN_SIZE, math.ceil(max(h, w) / HEAD_FRACTION))
    return r0 + h // 2 - side // 2, c0 + w // 2 - side // 2, side, side


def crop_to_box(data: np.ndarray, box: Box) -> np.ndarray:
    """``data``'s (``S x H x W (x C)``) part inside ``box``; zero where the box reaches outside (padding).

    FLAIR alone broadcast to three channels (:func:`~gliomaseg.data.normalise.shared_channel`) is cut
    once and stays a broadcast, so the normaliser still works on its one channel.
    """
    shared = shared_channel(data)
    if shared is not None:
        window = crop_to_box(shared, box)
        return np.broadcast_to(window[..., None], (*window.shape, data.shape[3]))
    r0, c0, h, w = box
    out = np.zeros((data.shape[0], h, w, *data.shape[3:]), data.dtype)
    rs, re_, cs, ce = max(r0, 0), min(r0 + h, data.shape[1]), max(c0, 0), min(c0 + w, data.shape[2])
    if re_ > rs and ce > cs:  # a box wholly outside the slices is all padding
        out[:, rs - r0 : re_ - r0, cs - c0 : ce - c0] = data[:, rs:re_, cs:ce]
    return out


def uncrop_from_box(window: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """The reverse of :func:`crop_to_box`: ``window`` (``S x h x w``) put into zero slices of ``size``."""
    r0, c0, h, w = box
    out = np.zeros((window.shape[0], *size, *window.shape[3:]), window.dtype)
    rs, re_, cs, ce = max(r0, 0), min(r0 + h, size[0]), max(c0, 0), min(c0 + w, size[1])
    if re_ > rs and ce > cs:
        out[:, rs:re_, cs:ce] = window[:, rs - r0 : re_ - r0, cs - c0 : ce - c0]
    return out


def windowed(predict_proba: Callable[[np.ndarray], np.ndarray], volume: np.ndarray) -> np.ndarray:
    """Probabilities of ``predict_proba`` run on the head's window of ``volume``, in the full slices.

    Args:
        predict_proba: ``S x h x w x 3`` uint8 -> ``S x h x w`` float32 probabilities.
        volume: ``S x H x W x 3`` uint8 in the model's frame (FLAIR is channel 1).

    Returns:
        ``S x H x W`` float32: the window's probabilities, 0 outside it (``predict_proba(volume)`` itself
        when the head is framed as in training already: :func:`window_box` gives None).

    Example:
        >>> import numpy as np
        >>> head = np.zeros((2, 300, 300, 3), np.uint8); head[:, 100:180, 120:200] = 200
        >>> windowed(lambda v: np.ones(v.shape[:3], np.float32), head).sum(axis=(1, 2))[0] > 0
        True
    """
    box = window_box(volume[..., 1])
    if box is None:
        return predict_proba(volume)
    return uncrop_from_box(predict_proba(crop_to_box(volume, box)), box, volume.shape[1:3])
