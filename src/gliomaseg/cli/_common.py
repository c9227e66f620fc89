"""Pieces shared by the sub-command modules: boolean flags, post-processing flags, timing."""

from __future__ import annotations

import argparse

__all__ = ["POSTPROCESS_FLAGS", "add_postprocess_flags", "parse_bool", "postprocess_changes"]

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
