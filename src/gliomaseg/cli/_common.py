"""The command-line grammar: every flag shared by sub-commands is defined here, once, with its meaning.

The rules (README, "Command-line grammar"): one flag name means one thing in every sub-command;
``--model NAME|FILE`` (repeatable) is a trained model to apply and ``--arch NAME`` the network to
train; booleans are ``--x/--no-x``; ``--out`` is where a command writes (by default in the current
folder, never inside the installed package); every sub-command's ``--help`` ends with an example.
:data:`MEANINGS` holds the meaning of each flag that more than one sub-command takes, and
``tests/test_cli_grammar.py`` checks every parser against it.

Nothing here imports torch, MONAI or scikit-learn: building the parser must stay fast
(``gliomaseg --help``).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "DEVICES",
    "ExampleFormatter",
    "MEANINGS",
    "POSTPROCESS_FLAGS",
    "LazyChoices",
    "add_command",
    "add_device_flags",
    "add_figures_flag",
    "add_launcher_flag",
    "add_limit_flags",
    "add_n_boot_flag",
    "add_model_flag",
    "add_out_flag",
    "add_overwrite_flag",
    "add_postprocess_flags",
    "add_quality_calibration_flag",
    "add_quality_flag",
    "add_resume_flag",
    "add_shard_flag",
    "limits_from",
    "postprocess_changes",
    "quiet_library_warnings",
    "quiet_training_libraries",
]

#: Lightning's loggers (its adverts, "GPU available: False" and similar notes log at INFO).
_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")

POSTPROCESS_FLAGS = ("threshold", "min_size", "largest_component", "component_score", "tta", "fill_holes")
DEVICES = ("auto", "cpu", "cuda", "mps")

#: The meaning of every flag that more than one sub-command takes: its help text starts with it
#: (a command may add what it means there, e.g. its default). tests/test_cli_grammar.py checks it.
MEANINGS: dict[str, str] = {
    "--model": "a trained model to apply",
    "--out": "where to write",
    "--overwrite": "replace",
    "--resume": "continue",
    "--device": "where the network runs",
    "--bf16": "bfloat16 network",
    "--figures": "draw figures",
    "--data": "kaggle_3m folder",
    "--workdir": "working folder",
    "--index": "index file",
    "--splits": "splits file",
    "--fold": "fold",
    "--seed": "random seed",
    "--size": "slice size in pixels",
    "--normalisation": "per-volume intensity normalisation",
    "--patients": "number of patients",
    "--epochs": "training epochs",
    "--batch-size": "slices per batch",
    "--threshold": "probability threshold",
    "--min-size": "remove 3D components smaller than this many voxels",
    "--largest-component": "keep only one 3D component per volume",
    "--component-score": "which component --largest-component keeps",
    "--tta": "flip test-time augmentation",
    "--fill-holes": "fill holes enclosed by the mask in each slice",
    "--shard": "run only the K-th of N slices",
    "--launcher": "where the runs execute",
    "--n-boot": "bootstrap resamples",
    "--max-slice-pixels": "refuse slices of more pixels (H x W) than this",
    "--max-voxels": "refuse scans of more voxels (slices x H x W) than this",
    "--max-slices": "refuse scans of more slices than this",
    "--quality": "a quality score and ok/check flag per case",
    "--quality-calibration": "the quality flag's calibration",
}


class LazyChoices:
    """argparse ``choices`` listed on first use: listing models, losses or normalisations imports torch,
    MONAI or OpenCV, which building the parser (``gliomaseg --help``) must not pay for."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._items: list[str] | None = None

    def _get(self) -> list[str]:
        if self._items is None:
            self._items = list(self._load())
        return self._items

    def __contains__(self, item: object) -> bool:
        return item in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class ExampleFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that the ``example:`` epilog keeps its lines (one command each)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_command(
    sub: argparse._SubParsersAction, name: str, *, help: str, example: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with an example (``example``: one command line per line)."""
    lines = "\n".join(f"  {line}" for line in example.strip().splitlines())
    return sub.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=f"example:\n{lines}",
        formatter_class=ExampleFormatter,
    )


def add_model_flag(p: argparse.ArgumentParser, *, required: bool = True, extra: str = "") -> None:
    """``--model NAME|FILE``, repeatable: a bundled model's name or a model file (.pt/.onnx)."""
    p.add_argument(
        "--model",
        action="append",
        required=required,
        metavar="NAME|FILE",
        help=f"{MEANINGS['--model']}: a bundled model (`gliomaseg models`; e.g. lgg-unet) or a model file "
        f"(best.pt, last.pt, .onnx); repeat it for an ensemble averaging the models' probabilities{extra}",
    )


def add_out_flag(p: argparse.ArgumentParser, what: str, *, default: str | None = None, required: bool = False) -> None:
    """``--out PATH``: where the command writes (``what``: its default or what it is, for the help)."""
    p.add_argument("--out", default=default, required=required, metavar="PATH", help=f"{MEANINGS['--out']}: {what}")


def add_overwrite_flag(p: argparse.ArgumentParser, what: str = "the outputs of an earlier run in --out") -> None:
    """``--overwrite``: a plain switch (nothing of the user's is replaced without it)."""
    p.add_argument("--overwrite", action="store_true", help=f"{MEANINGS['--overwrite']} {what}")


def add_resume_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--resume``: a plain switch, continue a stopped run where it stopped."""
    p.add_argument("--resume", action="store_true", help=f"{MEANINGS['--resume']} {what}")


def add_device_flags(p: argparse.ArgumentParser, *, bf16: bool = True, what: str = "") -> None:
    """``--device {auto,cpu,cuda,mps}`` and ``--bf16/--no-bf16`` (``what``: which models they apply to)."""
    note = f"; {what}" if what else ""
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help=f"{MEANINGS['--device']} (default auto: a GPU when there is one){note}",
    )
    if bf16:
        p.add_argument(
            "--bf16",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{MEANINGS['--bf16']} on the CPU (default: on where the CPU computes bf16 natively; "
            f"--no-bf16 for float32){note}",
        )


def add_figures_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--figures/--no-figures`` (default on)."""
    p.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"{MEANINGS['--figures']}: {what} (default on; --no-figures is faster)",
    )


def add_shard_flag(p: argparse.ArgumentParser, what: str = "the runs (1 <= K <= N)") -> None:
    """``--shard K/N``: one of N machines' share of the work."""
    p.add_argument("--shard", metavar="K/N", help=f"{MEANINGS['--shard']} of {what}")


def add_n_boot_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--n-boot N``: resamples of a bootstrap confidence interval."""
    p.add_argument(
        "--n-boot", type=int, default=2000, metavar="N", help=f"{MEANINGS['--n-boot']} of {what} (default 2000)"
    )


def add_launcher_flag(p: argparse.ArgumentParser) -> None:
    """``--launcher {local,submitit}``."""
    p.add_argument(
        "--launcher",
        choices=("local", "submitit"),
        default="local",
        help=f"{MEANINGS['--launcher']}: local (here, one after another) or submitit (a SLURM job array)",
    )


def add_postprocess_flags(p: argparse.ArgumentParser) -> None:
    """Flags that change single post-processing settings; the model file's stored ones fill the rest."""
    p.add_argument("--threshold", type=float, help=f"{MEANINGS['--threshold']} (default: the model's)")
    p.add_argument("--min-size", type=int, help=f"{MEANINGS['--min-size']} (default: the model's)")
    on_off = {"action": argparse.BooleanOptionalAction, "default": None}
    p.add_argument("--largest-component", **on_off, help=f"{MEANINGS['--largest-component']} (default: the model's)")
    p.add_argument(
        "--component-score",
        choices=("voxels", "probability"),
        help=f"{MEANINGS['--component-score']}: the most voxels or the largest summed probability "
        "(default: the model's)",
    )
    p.add_argument("--tta", **on_off, help=f"{MEANINGS['--tta']} (default: the model's)")
    p.add_argument("--fill-holes", **on_off, help=f"{MEANINGS['--fill-holes']} (default: the model's)")


def add_quality_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--quality/--no-quality`` (default on): :mod:`gliomaseg.inference.quality` (``what``: where it goes),
    and ``--quality-calibration``."""
    p.add_argument(
        "--quality",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"{MEANINGS['--quality']} ({what}; default on; it costs a second network pass only when the model's "
        "quality calibration uses the flip disagreement)",
    )
    add_quality_calibration_flag(p)


def add_quality_calibration_flag(p: argparse.ArgumentParser) -> None:
    """``--quality-calibration NAME|FILE``: :func:`gliomaseg.inference.quality_calibrations.quality_calibration`."""
    from gliomaseg.inference.quality_calibrations import BUNDLED_CALIBRATIONS  # JSON names only: no heavy import

    p.add_argument(
        "--quality-calibration",
        metavar="NAME|FILE",
        help=f"{MEANINGS['--quality-calibration']}: a bundled one ({', '.join(BUNDLED_CALIBRATIONS)}; 'flip' adds "
        "the flip disagreement: a better flag for a second network pass per case) or a JSON file of "
        "scripts/calibrate_quality.py (default: the model's own, else one-pass)",
    )


def postprocess_changes(args: argparse.Namespace) -> dict[str, object]:
    """The post-processing settings given on the command line (unset flags left out)."""
    return {k: getattr(args, k) for k in POSTPROCESS_FLAGS if getattr(args, k) is not None}


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    """The memory budget of one scan (``predict``, ``serve``): see :mod:`gliomaseg.inference.limits`."""
    from gliomaseg.inference.limits import DEFAULT_LIMITS, LIMIT_FLAGS

    more = {"--max-voxels": ", or whose data decode to more than 12 bytes a voxel of it"}
    for name, flag in LIMIT_FLAGS.items():
        default = getattr(DEFAULT_LIMITS, name)
        text = f"{MEANINGS[flag]}{more.get(flag, '')} (default {default:,})"
        p.add_argument(flag, type=int, default=None, metavar="N", help=text)


def limits_from(args: argparse.Namespace, command: str) -> Any:
    """The :class:`~gliomaseg.inference.limits.Limits` the flags of :func:`add_limit_flags` ask for."""
    from gliomaseg.inference.limits import DEFAULT_LIMITS, LIMIT_FLAGS, Limits

    given = {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name, None) is not None}
    return Limits(**{**{n: getattr(DEFAULT_LIMITS, n) for n in LIMIT_FLAGS}, **given, "command": command})


def quiet_library_warnings() -> None:
    """Hide library deprecation notices, Lightning's hints (e.g. about ``srun``) and highdicom's INFO lines
    from the user's log.

    They concern the libraries' own code, not the user's data or settings; ``-v`` keeps them. Call
    inside ``warnings.catch_warnings()`` so that the filters end with the command.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|lightning_fabric|torch)(\.|$)")
    # highdicom logs each module it copies into a DICOM SEG at INFO: dozens of lines per case
    logging.getLogger("highdicom").setLevel(logging.WARNING)


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
