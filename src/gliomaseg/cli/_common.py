"""Pieces shared by the sub-command modules: boolean flags, post-processing flags, quiet libraries."""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any

__all__ = [
    "POSTPROCESS_FLAGS",
    "add_limit_flags",
    "add_postprocess_flags",
    "limits_from",
    "parse_bool",
    "postprocess_changes",
    "quiet_library_warnings",
    "quiet_training_libraries",
]

#: Lightning's loggers (its adverts, "GPU available: False" and similar notes log at INFO).
_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")

POSTPROCESS_FLAGS = ("threshold", "min_size", "largest_component", "component_score", "tta", "fill_holes")


def parse_bool(text: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` -> bool (for ``--flag VALUE`` settings)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")


def add_postprocess_flags(p: argparse.ArgumentParser) -> None:
    """Flags that change single post-processing settings; the model file's stored ones fill the rest."""
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--min-size", type=int, help="remove 3D components smaller than this many voxels")
    on_off = {"action": argparse.BooleanOptionalAction, "default": None}
    p.add_argument("--largest-component", **on_off, help="keep only one 3D component per volume")
    p.add_argument(
        "--component-score",
        choices=("voxels", "probability"),
        help="which component --largest-component keeps: the most voxels or the largest summed probability",
    )
    p.add_argument("--tta", **on_off, help="flip test-time augmentation")
    p.add_argument("--fill-holes", **on_off, help="fill holes enclosed by the mask in each slice")


def postprocess_changes(args: argparse.Namespace) -> dict[str, object]:
    """The post-processing settings given on the command line (unset flags left out)."""
    return {k: getattr(args, k) for k in POSTPROCESS_FLAGS if getattr(args, k) is not None}


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    """The memory budget of one scan (``predict``, ``serve``): see :mod:`gliomaseg.inference.limits`."""
    from gliomaseg.inference.limits import DEFAULT_LIMITS, LIMIT_FLAGS

    helps = {
        "max_slice_pixels": "refuse slices of more pixels (H x W) than this",
        "max_voxels": "refuse scans of more voxels (slices x H x W) than this, or whose data decode to more than "
        "12 bytes a voxel of it",
        "max_slices": "refuse scans of more slices than this",
    }
    for name, flag in LIMIT_FLAGS.items():
        default = getattr(DEFAULT_LIMITS, name)
        p.add_argument(flag, type=int, default=None, metavar="N", help=f"{helps[name]} (default {default:,})")


def limits_from(args: argparse.Namespace, command: str) -> Any:
    """The :class:`~gliomaseg.inference.limits.Limits` the flags of :func:`add_limit_flags` ask for."""
    from gliomaseg.inference.limits import DEFAULT_LIMITS, LIMIT_FLAGS, Limits

    given = {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name, None) is not None}
    return Limits(**{**{n: getattr(DEFAULT_LIMITS, n) for n in LIMIT_FLAGS}, **given, "command": command})


def quiet_library_warnings() -> None:
    """Hide library deprecation notices and Lightning's hints (e.g. about ``srun``) from the user's log.

    They concern the libraries' own code, not the user's data or settings; ``-v`` keeps them. Call
    inside ``warnings.catch_warnings()`` so that the filters end with the command.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|lightning_fabric|torch)(\.|$)")


def quiet_training_libraries(verbose: bool) -> None:
    """Show Lightning's log once and only its warnings (all of it with ``verbose``).

    Lightning attaches its own ``INFO: ...`` handler to the ``lightning`` logger, which also
    propagates to the root handler of the command: every line came out twice. Call after Lightning
    is imported (importing it resets the level of its loggers).
    """
    import lightning  # noqa: F401 - its import installs the handler removed here

    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
        logger.propagate = True
