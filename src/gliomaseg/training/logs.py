"""The run folder's training log: Lightning's CSV log, one folder per (resumed) session.

Kept apart from :mod:`gliomaseg.training.trainer` so that reports read learning curves without
importing Lightning.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["csv_version", "log_session", "read_training_log"]


def read_training_log(run_dir: str | Path) -> pd.DataFrame:
    """The run's CSV log, joined across resumed sessions (``logs/csv``, ``logs/csv-resume1``, ...).

    A resumed session repeats the epoch that was cut short; its rows replace the earlier ones.

    Returns:
        One row per logged step/epoch (empty if the run has no CSV log).
    """
    logs = Path(run_dir) / "logs"
    parts = sorted(logs.glob("csv*/metrics.csv"), key=lambda p: log_session(p.parent.name))
    frames: list[pd.DataFrame] = []
    for path in parts:
        frame = pd.read_csv(path)
        if frames and "epoch" in frame and frame["epoch"].notna().any():
            first = frame["epoch"].min()
            frames = [f[~(f["epoch"] >= first)] for f in frames]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def log_session(name: str) -> int:
    return int(name.rpartition("resume")[2]) if "resume" in name else 0


def csv_version(run_dir: Path, resuming: bool) -> str:
    # Lightning's CSVLogger deletes an existing metrics.csv, so each resumed session logs beside it.
    if not resuming:
        return "csv"
    sessions = [log_session(p.name) for p in (run_dir / "logs").glob("csv*")]
    return f"csv-resume{max(sessions, default=0) + 1}"
