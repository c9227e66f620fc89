"""The run folder of ``train``: finding it, refusing to replace it, and resuming it with its own settings.

A run folder's ``config.yaml`` is the run's settings. Resuming takes them from there, so a resumed
run never changes what it trains: settings given again that contradict it are refused, naming
each; settings that repeat it are fine; only where the run trains may change
(:data:`ENVIRONMENT_SETTINGS`). ``config.yaml`` is written once, when the run starts, and never
replaced by a resume. A run folder whose run stopped before its first checkpoint is restarted by
``--resume`` from epoch 0, so no folder is a dead end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.training.config import TrainConfig, load_config_file, save_config

__all__ = [
    "ENVIRONMENT_SETTINGS",
    "RunPlan",
    "find_run",
    "plan_run",
    "resume_settings",
    "saved_config",
    "start_run_folder",
]

log = logging.getLogger(__name__)

#: Settings a resumed run may change: where it trains, not what it trains.
ENVIRONMENT_SETTINGS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "num_workers")
_PATH_SETTINGS = ("data", "workdir", "index", "splits", "runs_dir")
_LOCATION = ("runs_dir", "run_name")
CONFIG_NAME = "config.yaml"
LAST_CKPT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class RunPlan:
    """What :func:`plan_run` decided.

    Attributes:
        run_dir: the run folder (absolute).
        ckpt_path: the Lightning checkpoint to continue, or None to start at epoch 0.
        write_config: whether ``config.yaml`` is to be written (a new run, or a folder without one).
        replace: whether an existing folder is to be replaced (``overwrite``).
    """

    run_dir: Path
    ckpt_path: Path | None
    write_config: bool
    replace: bool


def saved_config(run_dir: str | Path) -> TrainConfig | None:
    """The settings in ``run_dir/config.yaml``, or None when the folder has none.

    Raises:
        GliomasegError: the file exists but is not a valid configuration.
    """
    path = Path(run_dir) / CONFIG_NAME
    return TrainConfig(**load_config_file(path)) if path.is_file() else None


def _same(key: str, given: Any, saved: Any) -> bool:
    if key in _PATH_SETTINGS and given is not None and saved is not None:
        return Path(given).expanduser().resolve() == Path(saved).expanduser().resolve()
    numbers = (int, float)
    if isinstance(given, numbers) and isinstance(saved, numbers) and not isinstance(given, bool):
        return math.isclose(float(given), float(saved), rel_tol=1e-12, abs_tol=0.0)
    return bool(given == saved)


def _conflicts(saved: TrainConfig, given: Mapping[str, Any], run_dir: Path) -> list[str]:
    out = []
    for key, value in given.items():
        if key in ENVIRONMENT_SETTINGS or (key in _LOCATION and value is None):
            continue
        # The folder's location is where it is now (it may have moved since config.yaml was written).
        expected = {"runs_dir": str(run_dir.parent), "run_name": run_dir.name}.get(key, getattr(saved, key))
        if not _same(key, value, expected):
            out.append(f"{key}={value!r} (the run has {expected!r})")
    return out


def resume_settings(saved: TrainConfig, given: Mapping[str, Any], run_dir: str | Path) -> TrainConfig:
    """The settings of a resumed run: ``saved``, with only :data:`ENVIRONMENT_SETTINGS` taken from ``given``.

    Args:
        saved: the run's own settings (``config.yaml``).
        given: the settings given again (command-line flags, a config file; unset ones left out).
        run_dir: the run folder (its location wins over the ``runs_dir``/``run_name`` it was saved with).

    Raises:
        GliomasegError: a given setting contradicts the run's (each is named with both values).

    Example:
        >>> saved = TrainConfig(lr=1e-3, epochs=10, runs_dir="/runs", run_name="a")
        >>> resume_settings(saved, {"lr": 1e-3, "num_workers": 0}, "/runs/a").num_workers
        0
        >>> resume_settings(saved, {"epochs": 20}, "/runs/a")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gliomaseg.errors.GliomasegError: cannot resume /runs/a: epochs=20 (the run has 10) contradicts ...
    """
    run_dir = Path(run_dir).expanduser().resolve()
    conflicts = _conflicts(saved, given, run_dir)
    if conflicts:
        raise GliomasegError(
            f"cannot resume {run_dir}: {'; '.join(conflicts)} contradict{'s' if len(conflicts) == 1 else ''} "
            "its config.yaml. Leave them out (a resumed run keeps its own settings), or start a new run "
            "with --run-name NAME"
        )
    changes = {k: v for k, v in given.items() if k in ENVIRONMENT_SETTINGS and not _same(k, v, getattr(saved, k))}
    for key, value in changes.items():
        log.info("resuming with %s=%r (config.yaml: %r)", key, value, getattr(saved, key))
    if saved.run_dir.expanduser().resolve() != run_dir:
        changes.update(runs_dir=str(run_dir.parent), run_name=run_dir.name)
    return dataclasses.replace(saved, **changes)


def _runs_listing(runs_dir: Path) -> str:
    runs = sorted(p.name for p in runs_dir.iterdir() if (p / CONFIG_NAME).is_file()) if runs_dir.is_dir() else []
    return f"; runs in {runs_dir}: {', '.join(runs)}" if runs else ""


def find_run(resume: str | Path | None, default_run_dir: Path) -> tuple[Path, Path | None]:
    """The run folder and checkpoint that ``train --resume`` (None) or ``train --resume-from PATH`` means.

    Args:
        resume: a run folder, a Lightning checkpoint, or None/``""`` for ``default_run_dir``.
        default_run_dir: the run folder the other flags name.

    Returns:
        ``(run_dir, ckpt)``: ``ckpt`` is None for a run folder (its ``checkpoints/last.ckpt`` if any),
        the file for a checkpoint. A checkpoint inside ``<run>/checkpoints/`` of a run with a
        ``config.yaml`` belongs to that run; any other checkpoint resumes into ``default_run_dir``.

    Raises:
        GliomasegError: the path or the default run folder does not exist, or is not a run folder.
    """
    if not resume:
        if not default_run_dir.is_dir():
            raise GliomasegError(
                f"cannot resume: there is no run folder {default_run_dir}; pass the run folder itself "
                f"(--resume-from RUNS_DIR/NAME){_runs_listing(default_run_dir.parent)}"
            )
        return default_run_dir, None
    path = Path(resume).expanduser().resolve()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() and not (path / LAST_CKPT).is_file():
            raise GliomasegError(f"cannot resume: {path} is not a run folder (it has no {CONFIG_NAME})")
        return path, None
    if not path.is_file():
        raise GliomasegError(f"cannot resume: {resume} does not exist; pass a run folder or its {LAST_CKPT}")
    owner = path.parent.parent
    if path.parent.name == LAST_CKPT.parent.name and (owner / CONFIG_NAME).is_file():
        return owner, path
    return default_run_dir, path


def plan_run(
    cfg: TrainConfig, resume: str | Path | bool | None, overwrite: bool, *, main_process: bool = True
) -> RunPlan:
    """Decide what happens to ``cfg.run_dir`` before anything is created (see the module docstring).

    Args:
        cfg: the run's settings (paths absolute).
        resume: True for the folder's own ``checkpoints/last.ckpt``, a checkpoint path, or None.
        overwrite: replace an existing folder (ignored when resuming).
        main_process: False in the other processes of a multi-process run, which re-run the command
            after the main one has set the folder up: they only find the checkpoint.

    Raises:
        OutputExistsError: the folder exists and neither ``resume`` nor ``overwrite`` is given.
        GliomasegError: nothing to resume, or ``cfg`` contradicts the folder's ``config.yaml``.
    """
    run_dir = cfg.run_dir
    if not main_process:
        last = run_dir / LAST_CKPT if resume is True else (Path(resume) if resume else None)
        return RunPlan(run_dir, last if last is not None and last.is_file() else None, False, False)
    exists = run_dir.is_dir() and any(run_dir.iterdir())
    if not resume:
        if exists and not overwrite:
            raise OutputExistsError(
                f"run folder {run_dir} exists: pass --resume to continue it, --run-name for a new one, "
                "or --overwrite to replace it"
            )
        return RunPlan(run_dir, None, write_config=True, replace=exists)
    saved = saved_config(run_dir)
    if saved is not None:
        resume_settings(saved, cfg.to_dict(), run_dir)  # a library caller's cfg must match too
    if resume is not True:
        return RunPlan(run_dir, Path(resume), write_config=saved is None, replace=False)
    last = run_dir / LAST_CKPT
    if last.is_file():
        return RunPlan(run_dir, last, write_config=saved is None, replace=False)
    if saved is None:
        raise GliomasegError(f"cannot resume: {run_dir} has neither {LAST_CKPT} nor {CONFIG_NAME}; start a new run")
    log.info("%s has no checkpoint yet: starting the run again from epoch 0", run_dir)
    return RunPlan(run_dir, None, write_config=False, replace=False)


def start_run_folder(plan: RunPlan, cfg: TrainConfig, *, main_process: bool = True) -> None:
    """Create (or replace) the run folder and write ``config.yaml`` as planned; call after all checks."""
    if main_process and plan.replace:
        shutil.rmtree(plan.run_dir)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if main_process and plan.write_config:
        save_config(cfg, plan.run_dir / CONFIG_NAME)
