"""Cross-validated studies (``gliomaseg study``): a grid of configurations x folds, with statistics.

- :mod:`~gliomaseg.study.grid`, :mod:`~gliomaseg.study.folder`, :mod:`~gliomaseg.study.runner`,
  :mod:`~gliomaseg.study.launchers`: the grid, its folder, one run, and running them here, in
  shards or as a SLURM job array (resumable);
- :mod:`~gliomaseg.study.stats`, :mod:`~gliomaseg.study.results`, :mod:`~gliomaseg.study.report`,
  :mod:`~gliomaseg.study.markdown`: summaries, Friedman and Wilcoxon-Holm tests, tables, plots,
  ``results.md`` and ``report.html``;
- :mod:`~gliomaseg.study.masks` (the out-of-fold models of a study, which radiogenomics also
  uses) and :mod:`~gliomaseg.study.postprocess_sweep` (post-processing variants compared
  out of fold).

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "CHECKPOINTS": "gliomaseg.study.grid",
    "MANAGED_KEYS": "gliomaseg.study.grid",
    "METRICS": "gliomaseg.study.grid",
    "RunSpec": "gliomaseg.study.grid",
    "StudyConfig": "gliomaseg.study.grid",
    "load_study_config": "gliomaseg.study.grid",
    "STUDY_FORMAT": "gliomaseg.study.folder",
    "Study": "gliomaseg.study.folder",
    "default_folder": "gliomaseg.study.folder",
    "make_study_splits": "gliomaseg.study.folder",
    "open_study": "gliomaseg.study.folder",
    "prepare_study": "gliomaseg.study.folder",
    "settings_digest": "gliomaseg.study.folder",
    "PATIENT_COLUMNS": "gliomaseg.study.runner",
    "RESULT_FORMAT": "gliomaseg.study.runner",
    "TrainTimer": "gliomaseg.study.runner",
    "execute_run": "gliomaseg.study.runner",
    "run_one": "gliomaseg.study.runner",
    "run_status": "gliomaseg.study.runner",
    "parse_shard": "gliomaseg.study.launchers",
    "run_local": "gliomaseg.study.launchers",
    "shard_runs": "gliomaseg.study.launchers",
    "submit_slurm": "gliomaseg.study.launchers",
    "wait_for_runs": "gliomaseg.study.launchers",
    "LOWER_IS_BETTER": "gliomaseg.study.stats",
    "describe": "gliomaseg.study.stats",
    "friedman": "gliomaseg.study.stats",
    "holm": "gliomaseg.study.stats",
    "mean_ranks": "gliomaseg.study.stats",
    "pairwise_wilcoxon": "gliomaseg.study.stats",
    "rank_biserial": "gliomaseg.study.stats",
    "wide_table": "gliomaseg.study.stats",
    "StudyResults": "gliomaseg.study.results",
    "gather_results": "gliomaseg.study.results",
    "summarise_results": "gliomaseg.study.results",
    "CollectResult": "gliomaseg.study.report",
    "collect_study": "gliomaseg.study.report",
    "plot_scores": "gliomaseg.study.report",
    "VARIANTS": "gliomaseg.study.postprocess_sweep",
    "sweep_postprocess": "gliomaseg.study.postprocess_sweep",
    "OutOfFold": "gliomaseg.study.masks",
    "ensemble_predictor": "gliomaseg.study.masks",
    "out_of_fold_models": "gliomaseg.study.masks",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.study.folder import (
        STUDY_FORMAT,
        Study,
        default_folder,
        make_study_splits,
        open_study,
        prepare_study,
        settings_digest,
    )
    from gliomaseg.study.grid import (
        CHECKPOINTS,
        MANAGED_KEYS,
        METRICS,
        RunSpec,
        StudyConfig,
        load_study_config,
    )
    from gliomaseg.study.launchers import (
        parse_shard,
        run_local,
        shard_runs,
        submit_slurm,
        wait_for_runs,
    )
    from gliomaseg.study.masks import (
        OutOfFold,
        ensemble_predictor,
        out_of_fold_models,
    )
    from gliomaseg.study.postprocess_sweep import (
        VARIANTS,
        sweep_postprocess,
    )
    from gliomaseg.study.report import (
        CollectResult,
        collect_study,
        plot_scores,
    )
    from gliomaseg.study.results import (
        StudyResults,
        gather_results,
        summarise_results,
    )
    from gliomaseg.study.runner import (
        PATIENT_COLUMNS,
        RESULT_FORMAT,
        TrainTimer,
        execute_run,
        run_one,
        run_status,
    )
    from gliomaseg.study.stats import (
        LOWER_IS_BETTER,
        describe,
        friedman,
        holm,
        mean_ranks,
        pairwise_wilcoxon,
        rank_biserial,
        wide_table,
    )
