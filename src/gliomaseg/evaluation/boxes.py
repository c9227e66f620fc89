"""A mask's bounding box, cheaply: shared by post-processing and the mL measures of ``predict``.

Kept apart from :mod:`gliomaseg.evaluation.postprocess` (which imports torch) so that what reads a
user's upload stays light (the web page's readers import the measures).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bounding_box"]


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of ``mask``, or None when it has none.

    Axes are cut one at a time, the one with the largest stride first, each projection taken over
    the box cut so far: a small tumour's box costs about one pass over the volume, whatever its
    memory order (a mask put back into the input's geometry is a transposed, flipped view), not one per axis.

    Args:
        mask: bool array of any shape and memory layout.

    Returns:
        One slice per axis, or None for an empty mask.
    """
    cut = [slice(0, n) for n in mask.shape]
    for axis in sorted(range(mask.ndim), key=lambda a: -abs(mask.strides[a])):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask[tuple(cut)].any(axis=others))
        if not len(hits):
            return None
        start = cut[axis].start
        cut[axis] = slice(start + int(hits[0]), start + int(hits[-1]) + 1)
    return tuple(cut)
