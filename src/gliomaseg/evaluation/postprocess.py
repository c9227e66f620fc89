"""Post-processing of predicted probability volumes and flip test-time augmentation (TTA).

Connected components are 3D over a patient's ``S x H x W`` slice stack, so a tumour that touches
across neighbouring slices is one component. The default connectivity is 26 (``connectivity=3``,
full: faces, edges and corners), the default of ``skimage.measure.label`` that the Buda et al.
reference uses for its largest-component step; ``connectivity=1`` gives 6-connectivity. kaggle_3m
slices are thicker than the in-plane pixel size, which makes the through-plane neighbourhood
coarser, but it is the only 3D neighbourhood available without spacing information.

MONAI's ``KeepLargestConnectedComponent`` and ``RemoveSmallObjects`` need scikit-image on CPU,
which is not a dependency of this project, so components are labelled with
``scipy.ndimage.label`` instead (same connectivity convention: ``connectivity`` = maximum number
of orthogonal hops, as in MONAI and scikit-image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.boxes import bounding_box
from gliomaseg.utils import SettingsMixin

__all__ = [
    "COMPONENT_SCORES",
    "FLIPS",
    "PostprocessConfig",
    "binarise",
    "flip_tta",
    "keep_largest_component",
    "postprocess_volume",
    "remove_small_components",
]

# Flip name -> tensor dims of a B x C x H x W batch (h = horizontal = left/right = W axis).
#: How ``largest_component`` ranks the components: by voxel count or by summed probability.
COMPONENT_SCORES: tuple[str, ...] = ("voxels", "probability")

FLIPS: dict[str, tuple[int, ...]] = {"none": (), "h": (-1,), "v": (-2,), "hv": (-2, -1)}


@dataclass
class PostprocessConfig(SettingsMixin):
    """How predicted probabilities become a final mask.

    Args:
        threshold: probability at or above which a pixel is foreground, in (0, 1).
        min_size: remove 3D connected components with fewer voxels than this; 0 turns it off.
        largest_component: keep only one 3D connected component per volume, the largest (the Buda
            et al. reference post-processing) or the most probable (see ``component_score``).
        component_score: how ``largest_component`` picks the component to keep: ``"voxels"`` (its
            size) or ``"probability"`` (the sum of its voxels' probabilities). By size, a large
            faint false positive can win over a small, confident true tumour and delete it, which
            scores the patient 0; summed probability weighs confidence too.
        tta: average sigmoid probabilities over flips at prediction time (see :func:`flip_tta`);
            :func:`postprocess_volume` receives probabilities that already include it.
        fill_holes: fill holes enclosed by the mask in each slice (2D). The kaggle_3m masks
            include necrotic or cystic cores, which are dark on FLAIR and which a network tends to
            leave out when it traces the bright rim.

    Raises:
        GliomasegError: a threshold outside (0, 1) or a negative / non-integer ``min_size``.
        TypeError: non-bool ``largest_component`` or ``tta``.
    """

    _SETTING_KIND = "postprocess option"

    threshold: float = 0.5
    min_size: int = 0
    largest_component: bool = False
    tta: bool = False
    fill_holes: bool = False
    component_score: str = "voxels"

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise TypeError(f"threshold={self.threshold!r}: must be a number in (0, 1)")
        if not 0.0 < float(self.threshold) < 1.0:
            raise GliomasegError(f"threshold={self.threshold!r}: must be in (0, 1) (a probability)")
        self.threshold = float(self.threshold)
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int | np.integer):
            raise GliomasegError(f"min_size={self.min_size!r}: must be an integer >= 0 (voxels)")
        if self.min_size < 0:
            raise GliomasegError(f"min_size={self.min_size!r}: must be >= 0 voxels (0 = off)")
        self.min_size = int(self.min_size)
        if self.component_score not in COMPONENT_SCORES:
            raise GliomasegError(f"component_score={self.component_score!r}: choose one of {list(COMPONENT_SCORES)}")
        for name in ("largest_component", "tta", "fill_holes"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise TypeError(f"{name}={value!r}: must be true or false")
            setattr(self, name, bool(value))


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")


def binarise(prob: Any, threshold: float = 0.5) -> np.ndarray:
    """Threshold probabilities: ``prob >= threshold`` (the convention of MONAI's ``AsDiscrete``).

    Args:
        prob: probabilities in [0, 1], any shape (numpy array or torch tensor).
        threshold: cut-off in (0, 1).

    Returns:
        Bool array of the same shape.

    Raises:
        GliomasegError: a threshold outside (0, 1) or values outside [0, 1] (e.g. logits; apply a
            sigmoid first).
    """
    if not 0.0 < threshold < 1.0:
        raise GliomasegError(f"threshold must be in (0, 1), got {threshold!r}.")
    p = _to_numpy(prob, "prob")
    if p.dtype == np.bool_:
        return p.copy()
    # min and max propagate NaN, so this one pair of passes also finds NaN (the comparisons fail)
    if p.size and not (p.min() >= 0.0 and p.max() <= 1.0):
        raise GliomasegError(
            f"prob must hold probabilities in [0, 1], found range [{np.nanmin(p)}, {np.nanmax(p)}] "
            "(or NaN); pass sigmoid(logits), not logits."
        )
    return p >= threshold


def _label(mask: Any, connectivity: int) -> tuple[np.ndarray, int, np.ndarray, tuple[slice, ...]]:
    """The mask, its number of components, the labels of its bounding box, and the box.

    Only the box around the mask is labelled: a tumour fills a small part of a head, and labelling
    every voxel of a 155-slice volume cost more than the rest of ``predict``'s post-processing.
    """
    m = _to_numpy(mask, "mask")
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be a bool array (use binarise first), got dtype {m.dtype}.")
    if m.ndim not in (2, 3):
        raise GliomasegError(f"mask must be S x H x W (or H x W), got shape {m.shape}.")
    if not 1 <= connectivity <= m.ndim:
        raise GliomasegError(
            f"connectivity must be in 1..{m.ndim} (1 = 6-connected, 3 = 26-connected in 3D), got {connectivity!r}."
        )
    box = bounding_box(m) or (slice(0, 0),) * m.ndim
    structure = ndimage.generate_binary_structure(m.ndim, connectivity)
    labels, n = ndimage.label(m[box], structure=structure)
    return m, n, labels, box


def _in_box(shape: tuple[int, ...], box: tuple[slice, ...], inside: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[box] = inside
    return out


def remove_small_components(mask: Any, min_size: int, connectivity: int = 3) -> np.ndarray:
    """Remove connected components with fewer than ``min_size`` voxels.

    Args:
        mask: bool mask ``S x H x W`` (components are 3D) or ``H x W``.
        min_size: minimum component size in voxels to keep; 0 or 1 keeps everything.
        connectivity: maximum orthogonal hops between neighbours, 1..ndim (3 = 26-connected).

    Returns:
        A new bool array; an empty mask stays empty.

    Raises:
        GliomasegError: negative ``min_size``, bad shape or connectivity.
        TypeError: a non-bool mask.
    """
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 0:
        raise GliomasegError(f"min_size must be an integer >= 0 voxels, got {min_size!r}.")
    m, n, labels, box = _label(mask, connectivity)
    if n == 0 or min_size <= 1:
        return m.copy()
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return _in_box(m.shape, box, keep[labels])


def keep_largest_component(mask: Any, connectivity: int = 3, weights: Any = None) -> np.ndarray:
    """Keep only the largest connected component (ties: the lowest label, i.e. first in raster order).

    Args:
        mask: bool mask ``S x H x W`` (components are 3D) or ``H x W``.
        connectivity: maximum orthogonal hops between neighbours, 1..ndim (3 = 26-connected).
        weights: per-voxel weights of the mask's shape (e.g. probabilities): the component with the
            largest sum of weights is kept instead of the one with the most voxels.

    Returns:
        A new bool array; an empty mask stays empty.

    Raises:
        GliomasegError: bad shape or connectivity.
        TypeError: a non-bool mask.
    """
    m, n, labels, box = _label(mask, connectivity)
    if n <= 1:
        return m.copy()
    w = None if weights is None else _to_numpy(weights, "weights")
    if w is not None and w.shape != m.shape:
        raise GliomasegError(f"weights must have the mask's shape {m.shape}, got {w.size} values.")
    # Only the labelled voxels' weights are summed (in raster order, as over the whole volume).
    inside = labels > 0
    sizes = np.bincount(labels[inside], weights=None if w is None else w[box][inside].astype(np.float64))
    sizes[0] = 0
    return _in_box(m.shape, box, labels == int(np.argmax(sizes)))


def postprocess_volume(prob: Any, cfg: PostprocessConfig | None = None) -> np.ndarray:
    """Turn one patient's probability volume into its final mask.

    Steps: threshold (``prob >= cfg.threshold``), then remove 3D components smaller than
    ``cfg.min_size`` voxels, then (if ``cfg.largest_component``) keep one 3D component (the largest,
    or the most probable with ``cfg.component_score="probability"``),
    then (if ``cfg.fill_holes``) fill enclosed holes slice by slice.
    ``cfg.tta`` is not applied here: TTA happens at prediction time (:func:`flip_tta`).

    Args:
        prob: probabilities ``S x H x W`` in [0, 1] (numpy or torch).
        cfg: post-processing options; defaults to ``PostprocessConfig()``.

    Returns:
        Bool mask ``S x H x W``.

    Raises:
        GliomasegError: not 3D, or values outside [0, 1].
    """
    cfg = cfg if cfg is not None else PostprocessConfig()
    p = _to_numpy(prob, "prob")
    if p.ndim != 3:
        raise GliomasegError(f"prob must be one patient volume S x H x W, got shape {p.shape}.")
    mask = binarise(p, cfg.threshold)
    if cfg.min_size > 0:
        mask = remove_small_components(mask, cfg.min_size)
    if cfg.largest_component:
        mask = keep_largest_component(mask, weights=p if cfg.component_score == "probability" else None)
    if cfg.fill_holes:
        mask = fill_holes_per_slice(mask)
    return mask


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill background regions enclosed by the mask in each ``H x W`` slice of ``S x H x W``.

    2D on purpose: a hole is a region the mask surrounds in-plane (as annotators draw it); in 3D
    almost nothing is enclosed, since tumours end within the stack.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise GliomasegError(f"mask must be S x H x W, got shape {mask.shape}.")
    return np.stack([ndimage.binary_fill_holes(s) for s in mask]) if len(mask) else mask.copy()


def flip_tta(
    predict_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    flips: Sequence[str] = ("none", "h", "v", "hv"),
) -> torch.Tensor:
    """Flip test-time augmentation: average of sigmoid probabilities over flipped inputs.

    For every flip, ``predict_fn`` sees the flipped batch, its logits are flipped back to the
    original orientation and passed through a sigmoid; the probabilities are averaged (not the
    logits). Runs under ``torch.no_grad()``; put the model in ``eval()`` mode first.

    Args:
        predict_fn: maps ``B x C x H x W`` images to ``B x K x H x W`` logits (K = 1 here).
        images: batch ``B x C x H x W``.
        flips: any of ``"none"``, ``"h"`` (left-right), ``"v"`` (up-down), ``"hv"`` (both);
            non-empty, no duplicates.

    Returns:
        Probabilities ``B x K x H x W`` in [0, 1] (``B x 1 x H x W`` for a binary model).

    Raises:
        GliomasegError: unknown/duplicate/no flips, a non-4D batch, or logits whose batch or spatial
            size differs from the input.
        TypeError: ``images`` not a tensor.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch tensor B x C x H x W, got {type(images).__name__}.")
    if images.ndim != 4:
        raise GliomasegError(f"images must be B x C x H x W, got shape {tuple(images.shape)}.")
    if isinstance(flips, str):
        raise GliomasegError(f"flips must be a sequence of flip names such as ('none', 'h'), got the string {flips!r}.")
    flips = tuple(flips)
    unknown = [f for f in flips if f not in FLIPS]
    if not flips or unknown or len(set(flips)) != len(flips):
        raise GliomasegError(
            f"flips must be a non-empty list of distinct names from {sorted(FLIPS)}, got {list(flips)}."
        )
    total = torch.zeros(())
    with torch.no_grad():
        for name in flips:
            dims = FLIPS[name]
            x = torch.flip(images, dims) if dims else images
            logits = predict_fn(x)
            if logits.ndim != 4 or logits.shape[0] != images.shape[0] or logits.shape[-2:] != images.shape[-2:]:
                raise GliomasegError(
                    f"predict_fn returned shape {tuple(logits.shape)} for input {tuple(images.shape)}; "
                    "expected logits B x K x H x W with the same B, H, W."
                )
            # Flips are involutions: flipping the same dims again restores the orientation.
            prob = torch.sigmoid(torch.flip(logits, dims) if dims else logits)
            total = total + prob
    return total / len(flips)
