"""Research study stage: dataset exploration and cross-validated comparisons with statistics.

- :mod:`~gliomaseg.study.explore`: ``explore_dataset`` (figures, ``explore.md``, ``explore.html``).
- :mod:`~gliomaseg.study.grid`, :mod:`~gliomaseg.study.folder`, :mod:`~gliomaseg.study.runner`,
  :mod:`~gliomaseg.study.launchers`: a grid of configurations x folds, run here, in shards or as a
  SLURM job array, resumable.
- :mod:`~gliomaseg.study.stats`, :mod:`~gliomaseg.study.results`, :mod:`~gliomaseg.study.report`:
  per-configuration summaries, Friedman and Wilcoxon-Holm tests, tables, plots, ``report.html``.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "explore_dataset": "gliomaseg.study.explore",
    "ExploreResult": "gliomaseg.study.explore",
    "StudyConfig": "gliomaseg.study.grid",
    "RunSpec": "gliomaseg.study.grid",
    "load_study_config": "gliomaseg.study.grid",
    "Study": "gliomaseg.study.folder",
    "prepare_study": "gliomaseg.study.folder",
    "open_study": "gliomaseg.study.folder",
    "run_one": "gliomaseg.study.runner",
    "execute_run": "gliomaseg.study.runner",
    "run_local": "gliomaseg.study.launchers",
    "shard_runs": "gliomaseg.study.launchers",
    "submit_slurm": "gliomaseg.study.launchers",
    "wait_for_runs": "gliomaseg.study.launchers",
    "describe": "gliomaseg.study.stats",
    "friedman": "gliomaseg.study.stats",
    "holm": "gliomaseg.study.stats",
    "mean_ranks": "gliomaseg.study.stats",
    "pairwise_wilcoxon": "gliomaseg.study.stats",
    "rank_biserial": "gliomaseg.study.stats",
    "wide_table": "gliomaseg.study.stats",
    "gather_results": "gliomaseg.study.results",
    "summarise_results": "gliomaseg.study.results",
    "collect_study": "gliomaseg.study.report",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.study.explore import ExploreResult, explore_dataset
    from gliomaseg.study.folder import Study, open_study, prepare_study
    from gliomaseg.study.grid import RunSpec, StudyConfig, load_study_config
    from gliomaseg.study.launchers import run_local, shard_runs, submit_slurm, wait_for_runs
    from gliomaseg.study.report import collect_study
    from gliomaseg.study.results import gather_results, summarise_results
    from gliomaseg.study.runner import execute_run, run_one
    from gliomaseg.study.stats import (
        describe,
        friedman,
        holm,
        mean_ranks,
        pairwise_wilcoxon,
        rank_biserial,
        wide_table,
    )
