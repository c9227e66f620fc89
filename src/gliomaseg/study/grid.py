"""A study's configuration file and its grid: configurations (axis values) x cross-validation folds.

A study file is YAML::

    name: cpu-small                  # study folder name (default: the file name without .yaml)
    data: null                       # kaggle_3m folder, relative to this file (``--data`` overrides)
    folds: 3                         # patient-level k-fold cross-validation on the non-test patients
    split: {test_from: ../docs/splits_lgg-dev.json, seed: 0}   # or {test_fraction: 0.15, seed: 0}
    checkpoint: last                 # model file evaluated on the held-out fold: last (default) or best
    evaluate: {figures: false}       # evaluate() options for each run; shifts: [all] adds dice_shifted
    statistics: {metric: dice, n_boot: 2000, alpha: 0.05}
    base: {preset: cpu, epochs: 4}   # TrainConfig settings of every run
    axes:                            # TrainConfig settings that vary; the grid is their product
      model: [unet, resunet]
      loss: [dice, bce_dice]
      augment: {augfull: full, augnone: none}      # explicit labels; a label may map to several settings
    slurm: {partition: gpu, gpus_per_node: 1, timeout_min: 240, mem_gb: 32, cpus_per_task: 8}

Configuration names join one token per axis with ``__`` (nnU-Net style): the value itself for
``model`` and ``loss``, a short key and the value for the others (``augfull``), or the label of a
mapping axis. A run is ``<configuration>__fold<k>``.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gliomaseg.errors import GliomasegError

__all__ = ["CHECKPOINTS", "MANAGED_KEYS", "METRICS", "RunSpec", "StudyConfig", "load_study_config"]

#: Model files a study can evaluate on the held-out fold.
CHECKPOINTS = ("last", "best")
#: TrainConfig settings the study sets itself for every run (a study file may not set them).
MANAGED_KEYS = ("data", "workdir", "index", "splits", "fold", "runs_dir", "run_name")
_TOP_KEYS = {"name", "data", "folds", "split", "checkpoint", "evaluate", "statistics", "base", "axes", "slurm"}
_SPLIT_KEYS = {"test_from", "test_fraction", "seed", "stratify"}
_EVALUATE_KEYS = {"figures", "n_boot", "batch_size", "device", "shifts", "shift_seed"}
_STATISTICS_KEYS = {"metric", "n_boot", "alpha"}
#: Axes whose values are names on their own (``unet``); other axes prefix a short key (``augfull``).
_BARE_AXES = ("arch", "loss")
_SHORT = {
    "augment": "aug",
    "context_slices": "ctx",
    "features": "f",
    "batch_size": "bs",
    "epochs": "ep",
    "optimizer": "opt",
    "scheduler": "sched",
    "normalisation": "norm",
    "tumour_fraction": "tf",
    "weight_decay": "wd",
}
#: The per-patient metrics a study summarises and tests (``statistics.metric`` picks the primary one).
#: ``dice_shifted``: the mean Dice of a patient over the shifts of ``evaluate: {shifts: [...]}`` (issue 25).
METRICS = ("dice", "iou", "hd95", "dice_shifted")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: a configuration trained on the training part of one fold.

    Attributes:
        config: the configuration name (e.g. ``unet__dice__augfull``).
        fold: the fold index; the run is evaluated on that fold's held-out (``val``) patients.
        labels: axis -> label of the value (e.g. ``{"arch": "unet", "augment": "augfull"}``).
        settings: the TrainConfig settings of this configuration (base and axis values merged).
    """

    config: str
    fold: int
    labels: dict[str, str]
    settings: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.config}__fold{self.fold}"


@dataclass
class StudyConfig:
    """A parsed study file (see the module docstring); paths are absolute.

    Attributes:
        name: study name (its folder's name).
        source: the YAML file it came from (None when built in Python).
        data: the kaggle_3m folder, or None (then the study folder needs an ``index.csv``).
        folds: number of cross-validation folds (>= 2).
        split: ``test_from`` (a splits.json whose test part is kept) or ``test_fraction``, ``seed``,
            ``stratify`` (see :func:`gliomaseg.data.splits.make_splits`).
        checkpoint: ``last`` or ``best``.
        evaluate: extra keyword arguments of :func:`gliomaseg.evaluation.evaluator.evaluate`.
        statistics: ``metric`` (primary), ``n_boot``, ``alpha``.
        base: TrainConfig settings of every run.
        axes: axis -> {label: settings dict}, in file order.
        slurm: submitit/SLURM settings (not part of the results: changing them is allowed).
    """

    name: str
    source: Path | None = None
    data: str | None = None
    folds: int = 5
    split: dict[str, Any] = field(default_factory=lambda: {"test_fraction": 0.15, "seed": 0})
    checkpoint: str = "last"
    evaluate: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the settings without touching data; raises :class:`GliomasegError` naming the problem."""
        where = f"study {self.source or self.name}"
        if not _NAME_RE.match(self.name):
            raise GliomasegError(f"{where}: name {self.name!r} must be letters, digits, '.', '_' or '-'")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise GliomasegError(f"{where}: folds={self.folds!r} must be an integer >= 2 (k-fold cross-validation)")
        if self.checkpoint not in CHECKPOINTS:
            raise GliomasegError(f"{where}: checkpoint={self.checkpoint!r}: choose one of {list(CHECKPOINTS)}")
        for key, allowed, section in (
            ("split", _SPLIT_KEYS, self.split),
            ("evaluate", _EVALUATE_KEYS, self.evaluate),
            ("statistics", _STATISTICS_KEYS, self.statistics),
        ):
            unknown = sorted(set(section) - allowed)
            if unknown:
                raise GliomasegError(f"{where}: unknown {key} setting(s) {unknown}; valid: {sorted(allowed)}")
        if "shifts" in self.evaluate:  # before any training, not when the first run is evaluated
            from gliomaseg.evaluation.shifts import resolve_shifts

            try:
                resolve_shifts(list(self.evaluate["shifts"]))
            except GliomasegError as err:
                raise GliomasegError(f"{where}: evaluate.shifts: {err}") from err
        metric = self.statistics.get("metric", "dice")
        if metric not in METRICS:
            raise GliomasegError(f"{where}: statistics.metric={metric!r}: choose one of {list(METRICS)}")
        if "test_from" in self.split and "test_fraction" in self.split:
            raise GliomasegError(f"{where}: split: give test_from or test_fraction, not both")
        axis_keys = {key for values in self.axes.values() for settings in values.values() for key in settings}
        managed = sorted(set(MANAGED_KEYS) & (set(self.base) | axis_keys))
        if managed:
            raise GliomasegError(f"{where}: {managed} are set by the study for every run; remove them from base/axes")
        if not self.axes:
            raise GliomasegError(
                f"{where}: axes is empty: give at least one setting to compare, e.g. model: [unet, unetpp]"
            )
        for spec in self.runs():
            if spec.fold == 0:
                _check_settings(spec, where)

    def configs(self) -> list[str]:
        """Configuration names in grid order."""
        return [spec.config for spec in self.runs() if spec.fold == 0]

    def runs(self) -> list[RunSpec]:
        """Every run, configuration-major (all folds of the first configuration first)."""
        out = []
        for combo in itertools.product(*(list(values.items()) for values in self.axes.values())):
            settings = dict(self.base)
            labels = {}
            for axis, (label, values) in zip(self.axes, combo):
                settings.update(values)
                labels[axis] = label
            config = "__".join(labels.values())
            out += [RunSpec(config, k, labels, settings) for k in range(self.folds)]
        return out

    def results_settings(self) -> dict[str, Any]:
        """The settings the runs' results depend on: compared with the study folder's to refuse mixing.

        Left out: the name and source, the launcher (``slurm``) and the ``statistics``, which only
        change how finished results are summarised.
        """
        skip = ("source", "slurm", "name", "statistics")
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        out["evaluate"] = {k: v for k, v in self.evaluate.items() if k not in ("device", "batch_size")}
        return out


def _check_settings(spec: RunSpec, where: str) -> None:
    """Resolve one configuration's TrainConfig (unknown or invalid settings fail here, before any run)."""
    from gliomaseg.training.config import resolve_config
    from gliomaseg.training.losses import list_losses
    from gliomaseg.training.models import list_models

    try:
        cfg = resolve_config(dict(spec.settings))
    except GliomasegError as err:
        raise GliomasegError(f"{where}: configuration {spec.config}: {err}") from None
    # TrainConfig checks these names only when the run builds its network; a study checks them up front.
    for kind, value, known in (("arch", cfg.arch, list_models()), ("loss", cfg.loss, list_losses())):
        if value not in known:
            raise GliomasegError(f"{where}: configuration {spec.config}: {kind}={value!r}: choose one of {known}")
    # The held-out fold is the validation part that train() sees: nothing may be steered by it.
    if cfg.early_stopping:
        raise GliomasegError(
            f"{where}: configuration {spec.config}: early_stopping={cfg.early_stopping} would stop on the held-out "
            "fold; a study trains a fixed number of epochs (set early_stopping: 0)"
        )
    if cfg.scheduler == "plateau":
        raise GliomasegError(
            f"{where}: configuration {spec.config}: scheduler=plateau follows the held-out fold's Dice; "
            "use none, onecycle or cosine"
        )


def _token(axis: str, value: Any) -> str:
    text = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    # "__" separates the axes in a configuration name, so a value never contains it.
    text = re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)))
    return text if axis in _BARE_AXES else _SHORT.get(axis, axis.replace("_", "")) + text


def _parse_axis(axis: str, values: Any, where: str) -> dict[str, dict[str, Any]]:
    """An axis as ``{label: settings}``: a list of values of the setting ``axis``, or a mapping of labels."""
    if isinstance(values, list) and values:
        labels = [_token(axis, v) for v in values]
        dup = sorted({label for label in labels if labels.count(label) > 1})
        if dup:
            raise GliomasegError(f"{where}: two values of axis {axis} are both named {dup[0]!r}; list each value once")
        return {label: {axis: v} for label, v in zip(labels, values)}
    if isinstance(values, dict) and values:
        out = {}
        for label, value in values.items():
            if not _NAME_RE.match(str(label)) or "__" in str(label):
                raise GliomasegError(f"{where}: axis {axis}: label {label!r} must be letters, digits, '.', '-' or '_'")
            out[str(label)] = dict(value) if isinstance(value, dict) else {axis: value}
        return out
    raise GliomasegError(
        f"{where}: axis {axis} must be a non-empty list of values or a mapping label -> value (or -> settings)"
    )


def load_study_config(path: str | Path, *, data: str | Path | None = None) -> StudyConfig:
    """Read a study YAML file.

    Args:
        path: the ``.yaml`` file.
        data: kaggle_3m folder, overriding the file's ``data``.

    Returns:
        The :class:`StudyConfig` (relative ``data`` and ``split.test_from`` are taken from the file's folder).

    Raises:
        GliomasegError: missing or unreadable file, unknown keys, bad values or invalid TrainConfig settings.

    Example:
        >>> cfg = load_study_config("studies/cpu-small.yaml", data="/data/kaggle_3m")  # doctest: +SKIP
        >>> cfg.configs()  # doctest: +SKIP
        ['unet__dice', 'unet__bce_dice', 'resunet__dice', 'resunet__bce_dice']
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise GliomasegError(f"study file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise GliomasegError(f"study file {path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise GliomasegError(f"study file {path}: expected a mapping of settings, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise GliomasegError(f"study file {path}: unknown key(s) {unknown}; valid: {sorted(_TOP_KEYS)}")
    where = f"study file {path}"
    sections = {}
    for key in ("split", "evaluate", "statistics", "base", "axes", "slurm"):
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            raise GliomasegError(f"{where}: {key} must be a mapping, got {value!r}")
        sections[key] = value
    split = dict(sections["split"] or {"test_fraction": 0.15, "seed": 0})
    if "test_from" in split:
        split["test_from"] = str((path.parent / str(split["test_from"])).resolve())
    if data is not None:  # from the command line: relative to the current folder
        data_dir: str | None = str(Path(data).expanduser().resolve())
    elif raw.get("data") is not None:
        data_dir = str((path.parent / Path(str(raw["data"])).expanduser()).resolve())
    else:
        data_dir = None
    return StudyConfig(
        name=str(raw.get("name") or path.stem),
        source=path,
        data=data_dir,
        folds=raw.get("folds", 5),
        split=split,
        checkpoint=raw.get("checkpoint", "last"),
        evaluate=sections["evaluate"],
        statistics=sections["statistics"],
        base=sections["base"],
        axes={axis: _parse_axis(axis, values, where) for axis, values in sections["axes"].items()},
        slurm=sections["slurm"],
    )
