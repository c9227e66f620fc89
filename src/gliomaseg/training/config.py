"""Training settings: the seed's defaults, the ``cpu``/``gpu`` presets, and YAML/TOML files.

Precedence, lowest first: :class:`TrainConfig` defaults (the seed: U-Net, Dice loss, Adam,
lr 1e-4, batch 8, 256x256) < preset < configuration file < explicit command-line flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gliomaseg.errors import GliomasegError

if TYPE_CHECKING:
    from gliomaseg.data.normalise import PreprocessConfig
    from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.training.config_bounds import MAX_CONFIG_BYTES, check_memory, check_ranges, load_yaml_bounded, short_repr
from gliomaseg.training.presets import PRESETS

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULERS",
    "TrainConfig",
    "load_config_file",
    "resolve_config",
    "save_config",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "onecycle", "cosine", "plateau")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


def _setting(default: Any, help: str, choices: Callable[[], Sequence[str]] | None = None) -> Any:
    """A :class:`TrainConfig` field with its ``--help`` text and, for names, a function listing the choices
    (called only when needed: listing models and losses imports torch and MONAI)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def _models() -> list[str]:
    from gliomaseg.training.models import list_models

    return list_models()


def _losses() -> list[str]:
    from gliomaseg.training.losses import list_losses

    return list_losses()


def _augment_presets() -> list[str]:
    from gliomaseg.data.augment import AUGMENT_PRESETS

    return sorted(AUGMENT_PRESETS)


def _component_scores() -> tuple[str, ...]:
    from gliomaseg.evaluation.postprocess import COMPONENT_SCORES

    return COMPONENT_SCORES


def _normalisations() -> tuple[str, ...]:
    from gliomaseg.data.normalise import NORMALISATIONS

    return NORMALISATIONS


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the run folder.

    The defaults are the seed's recipe (``../SEED.md``): classic U-Net, 32 features, 256x256,
    Dice loss, Adam, lr 1e-4, batch 8, augmentation with flips, rotate/shift/scale and
    brightness/contrast.
    """

    # data
    data: str | None = _setting(None, "kaggle_3m folder (or own slices); indexed into WORKDIR/index.csv once")
    workdir: str = _setting(".", "working folder of index.csv, splits.json, cache/ and runs/")
    index: str | None = _setting(None, "index file (default: WORKDIR/index.csv)")
    splits: str | None = _setting(None, "splits file (default: WORKDIR/splits.json)")
    fold: int = _setting(0, "fold whose train/val patients are used")
    size: int = _setting(256, "slice size in pixels for training (a multiple of 16, >= 32); slices are resized to it")
    normalisation: str = _setting("zscore", "per-volume intensity normalisation", _normalisations)
    context_slices: int = _setting(
        0, "2.5D input: neighbouring slices on each side stacked as channels, 0-3 (0: one slice, 3 channels)"
    )
    augment: str = _setting("full", "augmentation preset", _augment_presets)
    tumour_fraction: float | None = _setting(None, "share of tumour slices per batch, in (0, 1) (unset: natural)")
    # model and loss
    arch: str = _setting("unet", "network architecture", _models)
    features: int = _setting(32, "feature maps of the first level (doubled at each level)")
    loss: str = _setting("dice", "loss", _losses)
    # optimisation
    optimizer: str = _setting("adam", "optimiser", lambda: OPTIMIZERS)
    lr: float = _setting(1e-4, "learning rate (the peak rate for onecycle)")
    weight_decay: float = _setting(0.0, "weight decay")
    scheduler: str = _setting("none", "learning-rate schedule", lambda: SCHEDULERS)
    epochs: int = _setting(50, "training epochs")
    batch_size: int = _setting(8, "slices per batch")
    early_stopping: int = _setting(0, "stop after this many epochs without a better validation Dice (0: never)")
    # post-processing stored in the model file (evaluate/predict use it unless told otherwise)
    threshold: float = _setting(0.5, "probability threshold stored in the model file")
    min_size: int = _setting(0, "remove 3D components smaller than this many voxels (stored in the model file)")
    largest_component: bool = _setting(False, "keep only one 3D component per volume (stored in the model file)")
    tta: bool = _setting(False, "flip test-time augmentation (stored in the model file)")
    fill_holes: bool = _setting(False, "fill holes enclosed by the mask in each slice (stored in the model file)")
    component_score: str = _setting(
        "voxels", "which component --largest-component keeps (stored in the model file)", _component_scores
    )
    # hardware
    accelerator: str = _setting("auto", "cpu, gpu, mps or auto (a GPU when there is one)")
    devices: int = _setting(1, "GPUs (or CPU processes) to train on")
    num_nodes: int = _setting(1, "machines to train on (multi-node DDP)")
    strategy: str = _setting("auto", "Lightning strategy, e.g. auto or ddp")
    precision: str = _setting("auto", "numeric precision (auto: mixed where the hardware has it)", lambda: PRECISIONS)
    num_workers: int = _setting(2, "data-loader worker processes")
    # bookkeeping
    seed: int = _setting(0, "random seed")
    runs_dir: str | None = _setting(None, "parent folder of the run folders (default: WORKDIR/runs)")
    run_name: str | None = _setting(None, "run folder name (default: ARCH__LOSS__foldK)")
    limit_train_batches: float = _setting(1.0, "training batches per epoch: a fraction (<= 1.0) or a count (> 0)")
    limit_val_batches: float = _setting(1.0, "validation batches per epoch: a fraction (<= 1.0) or a count")
    preset: str | None = _setting(None, "the named recipe the settings started from", lambda: tuple(PRESETS))
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "free-form notes kept with the run"})

    def __post_init__(self) -> None:
        self._check_types()
        self.validate()

    def _check_types(self) -> None:
        """Each value of the type its field declares; numbers written as text (YAML reads ``1e-3`` as
        a string) are converted. Raises GliomasegError naming the setting and the expected type."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value, hint = getattr(self, f.name), hints[f.name]
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
            if optional:  # X | None
                if value is None:
                    continue
                hint = next(k for k in typing.get_args(hint) if k is not type(None))
            kind = typing.get_origin(hint) or hint
            if kind in (int, float) and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = kind(value)
            accepted = (int, float) if kind is float else kind  # an int is a valid float (PEP 484)
            ok = isinstance(value, accepted) and not (kind in (int, float) and isinstance(value, bool))
            if not ok:
                raise GliomasegError(f"{f.name}={short_repr(value)}: expected {getattr(kind, '__name__', kind)}")
            object.__setattr__(self, f.name, value)

    def validate(self) -> None:
        """Check values; raises GliomasegError naming the bad setting.

        The preprocessing and post-processing settings are checked by the configs they build
        (:class:`~gliomaseg.data.normalise.PreprocessConfig`,
        :class:`~gliomaseg.evaluation.postprocess.PostprocessConfig`), so each rule lives once.
        """
        from gliomaseg.data.augment import AUGMENT_PRESETS
        from gliomaseg.training.losses import list_losses
        from gliomaseg.training.models import list_models

        preprocess = self.preprocess_config()
        self.postprocess_config()
        checks = [
            (self.arch in list_models(), f"arch={self.arch!r}: choose one of {list_models()}"),
            (self.loss in list_losses(), f"loss={self.loss!r}: choose one of {list_losses()}"),
            (self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}: choose one of {list(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"scheduler={self.scheduler!r}: choose one of {list(SCHEDULERS)}"),
            (self.precision in PRECISIONS, f"precision={self.precision!r}: choose one of {list(PRECISIONS)}"),
            (self.augment in AUGMENT_PRESETS, f"augment={self.augment!r}: choose one of {sorted(AUGMENT_PRESETS)}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr={self.lr}: must be a finite number > 0"),
            (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"weight_decay={self.weight_decay}: must be a finite number >= 0",
            ),
            (self.epochs >= 1, f"epochs={self.epochs}: must be >= 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size}: must be >= 1"),
            (self.features >= 1, f"features={self.features}: must be >= 1"),
            (self.fold >= 0, f"fold={self.fold}: must be >= 0"),
            (self.devices >= 1, f"devices={self.devices}: must be >= 1"),
            (self.num_nodes >= 1, f"num_nodes={self.num_nodes}: must be >= 1"),
            (self.num_workers >= 0, f"num_workers={self.num_workers}: must be >= 0"),
            (
                self.limit_train_batches > 0,
                f"limit_train_batches={self.limit_train_batches}: must be > 0 (0 trains nothing)",
            ),
            (self.early_stopping >= 0, f"early_stopping={self.early_stopping}: patience must be >= 0"),
            (
                self.tumour_fraction is None or 0 < self.tumour_fraction < 1,
                f"tumour_fraction={self.tumour_fraction}: must be in (0, 1) or unset",
            ),
            (self.preset is None or self.preset in PRESETS, f"preset={self.preset!r}: choose one of {list(PRESETS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GliomasegError(message)
        check_ranges({f.name: getattr(self, f.name) for f in fields(self)})
        check_memory(self.arch, self.features, self.size, self.batch_size, self.accelerator, preprocess.channels)

    def to_dict(self) -> dict[str, Any]:
        """Every setting as a plain dict (``config.yaml``, the model file)."""
        return dataclasses.asdict(self)

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing the network is trained with (and that the model file stores)."""
        from gliomaseg.data.normalise import PreprocessConfig

        return PreprocessConfig(size=self.size, normalisation=self.normalisation, context_slices=self.context_slices)

    def postprocess_config(self) -> PostprocessConfig:
        """The post-processing stored in the model file as its default for evaluate/predict."""
        from gliomaseg.evaluation.postprocess import PostprocessConfig

        return PostprocessConfig(
            threshold=self.threshold,
            min_size=self.min_size,
            largest_component=self.largest_component,
            tta=self.tta,
            fill_holes=self.fill_holes,
            component_score=self.component_score,
        )

    @property
    def index_path(self) -> Path:
        return Path(self.index) if self.index else Path(self.workdir) / "index.csv"

    @property
    def splits_path(self) -> Path:
        return Path(self.splits) if self.splits else Path(self.workdir) / "splits.json"

    @property
    def cache_root(self) -> Path:
        return Path(self.workdir) / "cache"

    def default_run_name(self) -> str:
        """nnU-Net-style experiment folder name: ``<arch>__<loss>__fold<k>``."""
        return f"{self.arch}__{self.loss}__fold{self.fold}"

    @property
    def runs_root(self) -> Path:
        """The parent folder of the run folders: ``runs_dir``, else ``<workdir>/runs`` (the working folder
        holds the run)."""
        return Path(self.runs_dir) if self.runs_dir else Path(self.workdir) / "runs"

    @property
    def run_dir(self) -> Path:
        return self.runs_root / (self.run_name or self.default_run_name())


_FIELD_NAMES = {f.name for f in fields(TrainConfig)}
#: Settings renamed since files were written with them: old name -> new name (named in the error).
RENAMED = {"model": "arch"}


def _unknown_settings(unknown: list[str]) -> str:
    renamed = [f"{old!r} is now {RENAMED[old]!r}" for old in unknown if old in RENAMED]
    hint = f" ({'; '.join(renamed)}: rename it)" if renamed else ""
    return f"unknown settings {unknown}{hint}; valid: {sorted(_FIELD_NAMES)}"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file of :class:`TrainConfig` fields.

    Raises:
        GliomasegError: unknown extension, unreadable content or unknown keys (the message lists them).
    """
    path = Path(path)
    if not path.is_file():
        raise GliomasegError(f"config file {path} does not exist")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise GliomasegError(
            f"config file {path}: {path.stat().st_size:,} bytes, over {MAX_CONFIG_BYTES:,}; a settings file is a "
            "few hundred bytes: is it the right file?"
        )
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            data = load_yaml_bounded(text) or {}
        except yaml.YAMLError as err:
            raise GliomasegError(f"config file {path}: not valid YAML ({' '.join(str(err).split())})") from None
    elif path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise GliomasegError(f"config file {path}: not valid TOML ({err})") from None
    else:
        raise GliomasegError(f"config file {path}: use a .yaml, .yml or .toml file")
    if not isinstance(data, dict):
        raise GliomasegError(f"config file {path}: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELD_NAMES)
    if unknown:
        raise GliomasegError(f"config file {path}: {_unknown_settings(unknown)}")
    return data


def resolve_config(
    flags: dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
) -> TrainConfig:
    """Merge defaults < preset < config file < flags (``None`` flags count as not given).

    A ``preset`` key inside the config file is honoured when no preset is passed explicitly.

    Raises:
        GliomasegError: unknown preset or settings, or invalid values.
    """
    values: dict[str, Any] = {}
    file_values = load_config_file(config_file) if config_file else {}
    flag_values = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = sorted(set(flag_values) - _FIELD_NAMES)
    if unknown:
        raise GliomasegError(_unknown_settings(unknown))
    preset = flag_values.pop("preset", None) or preset or file_values.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise GliomasegError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
        values.update(PRESETS[preset])
        values["preset"] = preset
    values.update({k: v for k, v in file_values.items() if k != "preset"})
    values.update(flag_values)
    return TrainConfig(**values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically)."""
    from gliomaseg.utils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False))
