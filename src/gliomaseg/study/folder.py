"""The study folder: ``study.json``, one ``index.csv``, one ``splits.json`` and the cache, shared by every run.

``studies/<name>/`` holds::

    study.json      the study's settings, split id, package version (written once; a changed
                    configuration is refused, naming the setting that changed)
    index.csv       the dataset index
    splits.json     k folds over the non-test patients; the test part is left untouched
    cache/          the preprocessed slices of every resolution the configurations use
    runs/<config>__fold<k>/   one train() run folder each, with eval_val/ and result.json

Preparing is idempotent and holds a file lock, so shards and array jobs that start together
share one index, one split and one cache.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from filelock import FileLock

from gliomaseg import __version__
from gliomaseg.data.splits import load_splits, make_splits, save_splits, split_id
from gliomaseg.errors import GliomasegError
from gliomaseg.study.grid import RunSpec, StudyConfig
from gliomaseg.utils import atomic_write_text

if TYPE_CHECKING:
    from gliomaseg.training.config import TrainConfig

__all__ = [
    "STUDY_FORMAT",
    "Study",
    "default_folder",
    "make_study_splits",
    "open_study",
    "prepare_study",
    "settings_digest",
]

STUDY_FORMAT = "gliomaseg-study/1"


@dataclass
class Study:
    """A prepared study folder.

    Attributes:
        config: the study's configuration.
        folder: the study folder.
        record: the contents of ``study.json``.
    """

    config: StudyConfig
    folder: Path
    record: dict[str, Any]

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"

    @property
    def split_id(self) -> str:
        return str(self.record["split_id"])

    def splits(self) -> dict[str, Any]:
        """The study's ``splits.json``."""
        return load_splits(self.folder / "splits.json")

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.name

    def spec(self, run_name: str) -> RunSpec:
        """The run called ``run_name`` (``<config>__fold<k>``)."""
        for spec in self.config.runs():
            if spec.name == run_name:
                return spec
        raise GliomasegError(f"study {self.folder} has no run {run_name!r}")

    def train_config(self, spec: RunSpec) -> TrainConfig:
        """The resolved :class:`~gliomaseg.training.config.TrainConfig` of one run."""
        from gliomaseg.training.config import resolve_config

        flags = {
            **spec.settings,
            "data": self.config.data,
            "workdir": str(self.folder),
            "index": str(self.folder / "index.csv"),
            "splits": str(self.folder / "splits.json"),
            "fold": spec.fold,
            "runs_dir": str(self.runs_dir),
            "run_name": spec.name,
        }
        return resolve_config(flags)


def default_folder(config: StudyConfig) -> Path:
    """``<folder of the study file>/<name>`` (``studies/<name>`` without a file)."""
    return (config.source.parent if config.source else Path("studies")) / config.name


def settings_digest(settings: dict[str, Any]) -> str:
    """12 hex digits identifying a study's result-relevant settings (stored in every ``result.json``)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    missing = "(not set)"
    return [
        f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]


def make_study_splits(table: pd.DataFrame, config: StudyConfig) -> dict[str, Any]:
    """The study's splits: a test part (kept from ``split.test_from`` or drawn) and k folds over the rest.

    Raises:
        GliomasegError: ``test_from`` names patients the index lacks, or too few patients for the folds.
    """
    opts = {k: v for k, v in config.split.items() if k in ("seed", "stratify")}
    if "test_from" not in config.split:
        return make_splits(table, test_fraction=config.split.get("test_fraction", 0.15), n_folds=config.folds, **opts)
    source = Path(config.split["test_from"])
    test = sorted(load_splits(source)["test"])
    known = set(table["patient_id"].astype(str))
    missing = sorted(set(test) - known)
    if missing:
        raise GliomasegError(
            f"split.test_from={source}: {len(missing)} of its test patients are not in this dataset "
            f"(e.g. {missing[:3]}); use a splits file of this dataset or split.test_fraction"
        )
    rest = table[~table["patient_id"].isin(test)]
    splits = make_splits(rest, test_fraction=0.0, n_folds=config.folds, **opts)
    n = len(known)
    return {**splits, "test": test, "test_fraction": len(test) / n, "index_patients": n, "test_from": str(source)}


def _build_caches(study: Study, table: pd.DataFrame, progress: bool) -> None:
    """Build the cache of every resolution the configurations train at, so parallel runs do not race."""
    from gliomaseg.data.cache import build_cache
    from gliomaseg.data.normalise import PreprocessConfig

    seen = set()
    for spec in study.config.runs():
        cfg = study.train_config(spec)
        pre = PreprocessConfig(size=cfg.size, normalisation=cfg.normalisation)
        if (pre.size, pre.normalisation) not in seen:
            seen.add((pre.size, pre.normalisation))
            build_cache(table, study.folder / "cache", pre, progress=progress)


def prepare_study(
    config: StudyConfig, folder: str | Path | None = None, *, progress: bool = True, build_cache: bool = True
) -> Study:
    """Create (or reopen) the study folder: ``study.json``, ``index.csv``, ``splits.json``, caches.

    Args:
        config: the study configuration.
        folder: the study folder (default :func:`default_folder`).
        progress: progress bars while indexing and caching.
        build_cache: build the caches now (otherwise the first run of each resolution does).

    Returns:
        The :class:`Study`.

    Raises:
        GliomasegError: the folder holds a study with other settings (the message lists what
            changed), neither data nor an index is available, or the splits cannot be made.

    Example:
        >>> study = prepare_study(load_study_config("studies/cpu-small.yaml"))  # doctest: +SKIP
    """
    from gliomaseg.data.workspace import ensure_index

    folder = Path(folder if folder is not None else default_folder(config)).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    settings = _normalised(config.results_settings())
    with FileLock(folder / ".prepare.lock"):
        record_path = folder / "study.json"
        old = json.loads(record_path.read_text()) if record_path.is_file() else None
        if old is not None:
            changes = _changes(old["settings"], settings)
            if changes:
                raise GliomasegError(
                    f"{record_path} holds results of another configuration ({'; '.join(changes[:5])}); "
                    "results of different configurations are never mixed: give the study another name "
                    "(or --out), or delete that folder to start again"
                )
        table = ensure_index(config.data, folder / "index.csv", progress=progress)
        splits_path = folder / "splits.json"
        if splits_path.is_file():
            splits = load_splits(splits_path)
        else:
            splits = make_study_splits(table, config)
            save_splits(splits, splits_path)
        record = old or {
            "format": STUDY_FORMAT,
            "name": config.name,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "package_version": __version__,
            "split_id": split_id(splits, 0).split(":")[0],
            "settings": settings,
            "config": _normalised({**dataclasses.asdict(config), "source": str(config.source or "")}),
        }
        # The launcher and the statistics may change between sessions (another partition, another alpha).
        record["config"]["slurm"] = _normalised(config.slurm)
        record["config"]["statistics"] = _normalised(config.statistics)
        atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
        study = Study(config=config, folder=folder, record=record)
        if build_cache:
            _build_caches(study, table, progress)
    return study


def open_study(folder: str | Path) -> Study:
    """Reopen a prepared study folder from its ``study.json`` (what a SLURM job or a shard does).

    Raises:
        GliomasegError: no ``study.json`` in ``folder``, or one of another format.
    """
    folder = Path(folder).expanduser().resolve()
    path = folder / "study.json"
    if not path.is_file():
        raise GliomasegError(f"{folder} is not a study folder (no study.json): run `gliomaseg study STUDY_FILE` first")
    record = json.loads(path.read_text())
    if record.get("format") != STUDY_FORMAT:
        raise GliomasegError(f"{path}: format {record.get('format')!r} is not {STUDY_FORMAT!r}")
    raw = dict(record["config"])
    raw["source"] = Path(raw["source"]) if raw.get("source") else None
    return Study(config=StudyConfig(**raw), folder=folder, record=record)
