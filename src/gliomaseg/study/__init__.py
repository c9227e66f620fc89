"""Research stage: dataset exploration, cross-validated comparisons with statistics, radiogenomics.

- exploration: :mod:`~gliomaseg.study.explore` (``explore_dataset``: figures, ``explore.md``,
  ``explore.html``);
- studies: :mod:`~gliomaseg.study.grid`, :mod:`~gliomaseg.study.folder`,
  :mod:`~gliomaseg.study.runner`, :mod:`~gliomaseg.study.launchers` (a grid of configurations x
  folds, run here, in shards or as a SLURM job array, resumable), :mod:`~gliomaseg.study.stats`,
  :mod:`~gliomaseg.study.results`, :mod:`~gliomaseg.study.report` (summaries, Friedman and
  Wilcoxon-Holm tests, tables, plots, ``report.html``);
- radiogenomics: :mod:`~gliomaseg.study.shape` (shape features), :mod:`~gliomaseg.study.association`
  (Fisher, Kruskal-Wallis, AUC, agreement), :mod:`~gliomaseg.study.radiogenomics` (the analysis).

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "CHANNELS": "gliomaseg.study.explore",
    "ExploreResult": "gliomaseg.study.explore",
    "explore_dataset": "gliomaseg.study.explore",
    "head_mask": "gliomaseg.study.explore",
    "patient_table": "gliomaseg.study.explore",
    "read_volume_rows": "gliomaseg.study.explore",
    "scan_volumes": "gliomaseg.study.explore",
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
    "FEATURES": "gliomaseg.study.shape",
    "PAPER_FEATURES": "gliomaseg.study.shape",
    "Feature": "gliomaseg.study.shape",
    "angular_standard_deviation": "gliomaseg.study.shape",
    "bounding_ellipsoid_volume_ratio": "gliomaseg.study.shape",
    "margin_fluctuation": "gliomaseg.study.shape",
    "radial_profile": "gliomaseg.study.shape",
    "shape_features": "gliomaseg.study.shape",
    "MAX_TABLES": "gliomaseg.study.association",
    "Agreement": "gliomaseg.study.association",
    "agreement": "gliomaseg.study.association",
    "auc_with_ci": "gliomaseg.study.association",
    "correct": "gliomaseg.study.association",
    "fisher_exact_2xk": "gliomaseg.study.association",
    "fisher_median_split": "gliomaseg.study.association",
    "kruskal_wallis": "gliomaseg.study.association",
    "median_split_table": "gliomaseg.study.association",
    "OutOfFold": "gliomaseg.study.masks",
    "ensemble_predictor": "gliomaseg.study.masks",
    "out_of_fold_models": "gliomaseg.study.masks",
    "MASK_SOURCES": "gliomaseg.study.extract",
    "FoldPredictors": "gliomaseg.study.extract",
    "PredictorFor": "gliomaseg.study.extract",
    "SinglePredictor": "gliomaseg.study.extract",
    "extract_features": "gliomaseg.study.extract",
    "CLUSTER_COLUMNS": "gliomaseg.study.tables",
    "PAPER_FINDINGS": "gliomaseg.study.tables",
    "agreement_table": "gliomaseg.study.tables",
    "association_tables": "gliomaseg.study.tables",
    "clinical_table": "gliomaseg.study.tables",
    "missing_clusters": "gliomaseg.study.tables",
    "OUTPUTS": "gliomaseg.study.radiogenomics",
    "RADIOGENOMICS_FORMAT": "gliomaseg.study.radiogenomics",
    "RadiogenomicsResult": "gliomaseg.study.radiogenomics",
    "run_radiogenomics": "gliomaseg.study.radiogenomics",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.study.association import (
        MAX_TABLES,
        Agreement,
        agreement,
        auc_with_ci,
        correct,
        fisher_exact_2xk,
        fisher_median_split,
        kruskal_wallis,
        median_split_table,
    )
    from gliomaseg.study.explore import (
        CHANNELS,
        ExploreResult,
        explore_dataset,
        head_mask,
        patient_table,
        read_volume_rows,
        scan_volumes,
    )
    from gliomaseg.study.extract import MASK_SOURCES, FoldPredictors, PredictorFor, SinglePredictor, extract_features
    from gliomaseg.study.folder import (
        STUDY_FORMAT,
        Study,
        default_folder,
        make_study_splits,
        open_study,
        prepare_study,
        settings_digest,
    )
    from gliomaseg.study.grid import CHECKPOINTS, MANAGED_KEYS, METRICS, RunSpec, StudyConfig, load_study_config
    from gliomaseg.study.launchers import parse_shard, run_local, shard_runs, submit_slurm, wait_for_runs
    from gliomaseg.study.masks import OutOfFold, ensemble_predictor, out_of_fold_models
    from gliomaseg.study.postprocess_sweep import VARIANTS, sweep_postprocess
    from gliomaseg.study.radiogenomics import OUTPUTS, RADIOGENOMICS_FORMAT, RadiogenomicsResult, run_radiogenomics
    from gliomaseg.study.report import CollectResult, collect_study, plot_scores
    from gliomaseg.study.results import StudyResults, gather_results, summarise_results
    from gliomaseg.study.runner import PATIENT_COLUMNS, RESULT_FORMAT, TrainTimer, execute_run, run_one, run_status
    from gliomaseg.study.shape import (
        FEATURES,
        PAPER_FEATURES,
        Feature,
        angular_standard_deviation,
        bounding_ellipsoid_volume_ratio,
        margin_fluctuation,
        radial_profile,
        shape_features,
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
    from gliomaseg.study.tables import (
        CLUSTER_COLUMNS,
        PAPER_FINDINGS,
        agreement_table,
        association_tables,
        clinical_table,
        missing_clusters,
    )
