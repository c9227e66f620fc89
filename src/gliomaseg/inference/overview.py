"""One overview figure per case: a montage of the slices with the most tumour, outlined in red.

``predict`` writes it by default instead of one overlay per slice (those stay available with
``--overlays``): one PNG is what a reader opens first, and it costs a few milliseconds where
per-slice PNGs cost more than the network. Drawn with numpy and Pillow rather than matplotlib,
whose figure set-up alone takes longer than segmenting a volume.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.utils import atomic_write

__all__ = ["OVERVIEW_SLICES", "overview_image", "overview_slices", "write_overview"]

#: Slices in an overview (fewer when the volume has fewer).
OVERVIEW_SLICES = 8
_COLUMNS = 4
_TILE = 256  # tiles larger than this are shrunk by an integer factor
_FLAIR = 1
# A palette image: one byte a pixel, which PNG encodes in a third of the time of RGB. Greys keep their
# levels up to 253 (254 and 255 show as 253); the last two entries are the outline's red and the labels' yellow.
_RED, _YELLOW = 254, 255
_PALETTE = [*(v for g in range(_RED) for v in (g, g, g)), 255, 0, 0, 255, 255, 0]


def overview_slices(mask: np.ndarray, n: int = OVERVIEW_SLICES) -> list[int]:
    """The slices to show: spread over the tumour (always its largest slice), else evenly spaced.

    Args:
        mask: ``S x H x W`` bool.
        n: how many (at most ``S``).

    Returns:
        Sorted 0-based slice positions.
    """
    s = mask.shape[0]
    n = min(n, s)
    area = np.array([np.count_nonzero(m) for m in mask], dtype=np.int64)  # 6x faster than a sum over the volume
    tumour = np.flatnonzero(area)
    if len(tumour) > n:
        # Adjacent slices repeat each other; spread the picks through the tumour instead.
        picks = {int(tumour[int((i + 0.5) * len(tumour) / n)]) for i in range(n)}
        biggest = int(np.argmax(area))
        if biggest not in picks:
            picks.remove(min(picks, key=lambda z: abs(z - biggest)))
            picks.add(biggest)
        return sorted(picks)
    chosen = {int(z) for z in tumour}
    for z in np.linspace(0, s - 1, n).round().astype(int):
        if len(chosen) >= n:
            break
        chosen.add(int(z))
    return sorted(chosen)


def _tile(grey: np.ndarray, mask: np.ndarray, factor: int) -> np.ndarray:
    """One tile of palette indices: ``grey`` (shrunk by ``factor``) with the mask's outline in red."""
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    if factor > 1:
        h, w = (grey.shape[0] // factor) * factor, (grey.shape[1] // factor) * factor
        grey = grey[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3)).astype(np.uint8)
        edge = edge[:h, :w].reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
    tile = np.minimum(grey, _RED - 1)  # a copy: the volume may be a read-only view
    tile[edge] = _RED
    return tile


def _montage(volume: np.ndarray, mask: np.ndarray, n: int) -> Image.Image:
    """:func:`overview_image` as a palette ("P") image."""
    if volume.ndim != 4 or volume.shape[:3] != mask.shape:
        raise GliomasegError(f"overview: volume {volume.shape} and mask {mask.shape} must be S x H x W (x 3)")
    picks = overview_slices(mask, n)
    factor = max(1, -(-max(mask.shape[1:]) // _TILE))
    tiles = [_tile(volume[z, ..., _FLAIR], np.asarray(mask[z], bool), factor) for z in picks]
    h, w = tiles[0].shape[:2]
    cols = min(_COLUMNS, len(tiles))
    rows = -(-len(tiles) // cols)
    canvas = np.zeros((rows * h, cols * w), np.uint8)
    for i, tile in enumerate(tiles):
        canvas[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = tile
    image = Image.fromarray(canvas)
    image.putpalette(_PALETTE)
    draw = ImageDraw.Draw(image)
    for i, z in enumerate(picks):
        draw.text(((i % cols) * w + 3, (i // cols) * h + 2), f"{z + 1}/{mask.shape[0]}", fill=_YELLOW)
    return image


def overview_image(volume: np.ndarray, mask: np.ndarray, *, n: int = OVERVIEW_SLICES) -> np.ndarray:
    """The montage: FLAIR in grey, the predicted tumour outlined in red, each tile labelled ``slice/S``.

    Args:
        volume: ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast), in the model's frame.
        mask: ``S x H x W`` bool in the same frame.
        n: slices shown.

    Returns:
        ``rows * h x columns * w x 3`` uint8 RGB (``h x w`` the tiles, ``H x W`` shrunk to at most 256).

    Raises:
        GliomasegError: mismatched shapes.
    """
    return np.asarray(_montage(volume, mask, n).convert("RGB"))


def write_overview(
    path: str | os.PathLike[str], volume: np.ndarray, mask: np.ndarray, *, overwrite: bool = False
) -> Path:
    """Write :func:`overview_image` as a palette PNG, atomically.

    Args:
        path: the ``.png`` target.
        volume: ``S x H x W x 3`` uint8 in the model's frame.
        mask: ``S x H x W`` bool in the same frame.
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    image = _montage(volume, mask, OVERVIEW_SLICES)
    # Fast compression: the montage is small and level 1 is within a few percent of level 9 here.
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=1), suffix=".png")
