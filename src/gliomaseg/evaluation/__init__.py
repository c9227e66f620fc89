"""Evaluation stage: metrics, post-processing, ``evaluate()``, ``score_masks()``, figures and HTML reports.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "CASES": "gliomaseg.evaluation.metrics",
    "METRIC_KEYS": "gliomaseg.evaluation.metrics",
    "OVERLAP_METRICS": "gliomaseg.evaluation.metrics",
    "SUMMARY_COLUMNS": "gliomaseg.evaluation.metrics",
    "binary_metrics": "gliomaseg.evaluation.metrics",
    "case_from_counts": "gliomaseg.evaluation.metrics",
    "dice_from_counts": "gliomaseg.evaluation.metrics",
    "slice_metrics": "gliomaseg.evaluation.metrics",
    "summarise": "gliomaseg.evaluation.aggregate",
    "summarise_table": "gliomaseg.evaluation.aggregate",
    "COMPONENT_SCORES": "gliomaseg.evaluation.postprocess",
    "FLIPS": "gliomaseg.evaluation.postprocess",
    "PostprocessConfig": "gliomaseg.evaluation.postprocess",
    "binarise": "gliomaseg.evaluation.postprocess",
    "flip_tta": "gliomaseg.evaluation.postprocess",
    "keep_largest_component": "gliomaseg.evaluation.postprocess",
    "postprocess_volume": "gliomaseg.evaluation.postprocess",
    "remove_small_components": "gliomaseg.evaluation.postprocess",
    "OUTPUTS": "gliomaseg.evaluation.plan",
    "EvaluationPlan": "gliomaseg.evaluation.plan",
    "check_output_folder": "gliomaseg.evaluation.plan",
    "plan_evaluation": "gliomaseg.evaluation.plan",
    "prepare_output_folder": "gliomaseg.evaluation.plan",
    "split_matches": "gliomaseg.evaluation.plan",
    "Mask": "gliomaseg.evaluation.mask_files",
    "MaskFile": "gliomaseg.evaluation.mask_files",
    "align_pair": "gliomaseg.evaluation.mask_files",
    "case_name": "gliomaseg.evaluation.mask_files",
    "find_masks": "gliomaseg.evaluation.mask_files",
    "match_cases": "gliomaseg.evaluation.mask_files",
    "read_mask_file": "gliomaseg.evaluation.mask_files",
    "ScoreResult": "gliomaseg.evaluation.score",
    "score_masks": "gliomaseg.evaluation.score",
    "ensemble_summary": "gliomaseg.evaluation.ensemble",
    "member_dice": "gliomaseg.evaluation.ensemble",
    "EVAL_FORMAT": "gliomaseg.evaluation.evaluator",
    "EvaluationResult": "gliomaseg.evaluation.evaluator",
    "evaluate": "gliomaseg.evaluation.evaluator",
    "FLAIR": "gliomaseg.evaluation.figures",
    "outline": "gliomaseg.evaluation.figures",
    "overlay_frames": "gliomaseg.evaluation.figures",
    "plot_dice_distribution": "gliomaseg.evaluation.figures",
    "plot_learning_curves": "gliomaseg.evaluation.figures",
    "plot_patient_overlays": "gliomaseg.evaluation.figures",
    "save_gif": "gliomaseg.evaluation.figures",
    "select_slices": "gliomaseg.evaluation.figures",
    "data_uri": "gliomaseg.evaluation.html",
    "figure": "gliomaseg.evaluation.html",
    "fmt": "gliomaseg.evaluation.html",
    "html_table": "gliomaseg.evaluation.html",
    "page": "gliomaseg.evaluation.html",
    "write_report": "gliomaseg.evaluation.html",
    "md_table": "gliomaseg.evaluation.markdown",
    "SHIFTS": "gliomaseg.evaluation.shifts",
    "Shift": "gliomaseg.evaluation.shifts",
    "apply_shift": "gliomaseg.evaluation.shifts",
    "brain_mask": "gliomaseg.evaluation.shifts",
    "case_seed": "gliomaseg.evaluation.shifts",
    "resolve_shifts": "gliomaseg.evaluation.shifts",
    "shift_names": "gliomaseg.evaluation.shifts",
    "SHIFT_COLUMNS": "gliomaseg.evaluation.shift_eval",
    "score_shifts": "gliomaseg.evaluation.shift_eval",
    "shift_summary": "gliomaseg.evaluation.shift_eval",
    "empty_cases": "gliomaseg.evaluation.aggregate",
    "fit_quality": "gliomaseg.evaluation.quality_calibration",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.evaluation.aggregate import empty_cases, summarise, summarise_table
    from gliomaseg.evaluation.ensemble import ensemble_summary, member_dice
    from gliomaseg.evaluation.evaluator import EVAL_FORMAT, EvaluationResult, evaluate
    from gliomaseg.evaluation.figures import (
        FLAIR,
        outline,
        overlay_frames,
        plot_dice_distribution,
        plot_learning_curves,
        plot_patient_overlays,
        save_gif,
        select_slices,
    )
    from gliomaseg.evaluation.html import data_uri, figure, fmt, html_table, page, write_report
    from gliomaseg.evaluation.markdown import md_table
    from gliomaseg.evaluation.mask_files import (
        Mask,
        MaskFile,
        align_pair,
        case_name,
        find_masks,
        match_cases,
        read_mask_file,
    )
    from gliomaseg.evaluation.metrics import (
        CASES,
        METRIC_KEYS,
        OVERLAP_METRICS,
        SUMMARY_COLUMNS,
        binary_metrics,
        case_from_counts,
        dice_from_counts,
        slice_metrics,
    )
    from gliomaseg.evaluation.plan import (
        OUTPUTS,
        EvaluationPlan,
        check_output_folder,
        plan_evaluation,
        prepare_output_folder,
        split_matches,
    )
    from gliomaseg.evaluation.postprocess import (
        COMPONENT_SCORES,
        FLIPS,
        PostprocessConfig,
        binarise,
        flip_tta,
        keep_largest_component,
        postprocess_volume,
        remove_small_components,
    )
    from gliomaseg.evaluation.quality_calibration import fit_quality
    from gliomaseg.evaluation.score import ScoreResult, score_masks
    from gliomaseg.evaluation.shift_eval import SHIFT_COLUMNS, score_shifts, shift_summary
    from gliomaseg.evaluation.shifts import (
        SHIFTS,
        Shift,
        apply_shift,
        brain_mask,
        case_seed,
        resolve_shifts,
        shift_names,
    )
