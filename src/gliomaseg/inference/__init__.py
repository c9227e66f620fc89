"""Inference stage: ``Segmenter`` and its backends, reading the user's inputs (NIfTI, DICOM, slices) with their
geometry, ``predict``, ONNX export.

Importing this package pulls in neither Lightning, scikit-learn nor Albumentations.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "Segmenter": "gliomaseg.inference.segmenter",
    "load_segmenter": "gliomaseg.inference.segmenter",
    "model_algorithm": "gliomaseg.inference.segmenter",
    "LoadedModel": "gliomaseg.inference.backends",
    "load_onnx": "gliomaseg.inference.backends",
    "load_torch": "gliomaseg.inference.backends",
    "LogitsFn": "gliomaseg.inference.fusion",
    "fold_batchnorm": "gliomaseg.inference.fusion",
    "graph_fused": "gliomaseg.inference.fusion",
    "NIFTI_SUFFIXES": "gliomaseg.inference.nifti",
    "SUPPORTED_INPUTS": "gliomaseg.inference.inputs",
    "Case": "gliomaseg.inference.inputs",
    "discover_inputs": "gliomaseg.inference.inputs",
    "nifti_decoded_size": "gliomaseg.inference.nifti",
    "nifti_spacing": "gliomaseg.inference.nifti",
    "nifti_spacing_known": "gliomaseg.inference.nifti",
    "DECODED_BYTES_PER_VOXEL": "gliomaseg.inference.limits",
    "DEFAULT_LIMITS": "gliomaseg.inference.limits",
    "LIMIT_FLAGS": "gliomaseg.inference.limits",
    "Limits": "gliomaseg.inference.limits",
    "check_case": "gliomaseg.inference.limits",
    "image_size": "gliomaseg.inference.limits",
    "nifti_stem": "gliomaseg.inference.nifti",
    "nifti_to_uint8": "gliomaseg.inference.nifti",
    "read_nifti": "gliomaseg.inference.nifti",
    "read_case": "gliomaseg.inference.inputs",
    "read_image": "gliomaseg.inference.inputs",
    "read_nifti_volume": "gliomaseg.inference.nifti",
    "Volume": "gliomaseg.inference.volume",
    "Frame": "gliomaseg.inference.orientation",
    "model_orientation": "gliomaseg.inference.orientation",
    "to_model_frame": "gliomaseg.inference.orientation",
    "from_model_frame": "gliomaseg.inference.orientation",
    "SeriesInfo": "gliomaseg.inference.dicom",
    "format_series_table": "gliomaseg.inference.dicom",
    "list_series": "gliomaseg.inference.dicom",
    "read_dicom": "gliomaseg.inference.dicom",
    "read_sequences": "gliomaseg.inference.sequences",
    "read_volume": "gliomaseg.inference.inputs",
    "predict_inputs": "gliomaseg.inference.predict",
    "CASES_COLUMNS": "gliomaseg.inference.outputs",
    "CASE_COMPONENT_COLUMNS": "gliomaseg.inference.outputs",
    "OutputOptions": "gliomaseg.inference.outputs",
    "case_row": "gliomaseg.inference.outputs",
    "case_targets": "gliomaseg.inference.outputs",
    "case_volume": "gliomaseg.inference.outputs",
    "finished_case": "gliomaseg.inference.outputs",
    "overlay": "gliomaseg.inference.outputs",
    "to_source": "gliomaseg.inference.outputs",
    "write_case": "gliomaseg.inference.outputs",
    "COMPONENT_COLUMNS": "gliomaseg.inference.measures",
    "MEASURE_COLUMNS": "gliomaseg.inference.measures",
    "components": "gliomaseg.inference.measures",
    "measure": "gliomaseg.inference.measures",
    "summarise": "gliomaseg.inference.measures",
    "OVERVIEW_SLICES": "gliomaseg.inference.overview",
    "overview_image": "gliomaseg.inference.overview",
    "overview_slices": "gliomaseg.inference.overview",
    "write_overview": "gliomaseg.inference.overview",
    "DICOM_DATASETS": "gliomaseg.inference.writers",
    "NIFTI_IMAGE": "gliomaseg.inference.writers",
    "SEGMENT_LABEL": "gliomaseg.inference.writers",
    "source_frames": "gliomaseg.inference.writers",
    "write_dicom_seg": "gliomaseg.inference.writers",
    "write_nifti_mask": "gliomaseg.inference.writers",
    "write_probabilities": "gliomaseg.inference.writers",
    "ONNX_FORMAT": "gliomaseg.inference.onnx_check",
    "check_onnx_model": "gliomaseg.inference.onnx_check",
    "AveragedProbabilities": "gliomaseg.inference.export",
    "ExportResult": "gliomaseg.inference.export",
    "export_onnx": "gliomaseg.inference.export",
    "BUNDLED": "gliomaseg.inference.pretrained",
    "BundledModel": "gliomaseg.inference.pretrained",
    "bundled_path": "gliomaseg.inference.pretrained",
    "model_card": "gliomaseg.inference.pretrained",
    "resolve_model": "gliomaseg.inference.pretrained",
    "BUNDLED_CALIBRATIONS": "gliomaseg.inference.quality_calibrations",
    "QUALITY_COLUMNS": "gliomaseg.inference.quality",
    "SIGNALS": "gliomaseg.inference.quality",
    "calibration_signals": "gliomaseg.inference.quality",
    "check_signals": "gliomaseg.inference.quality",
    "default_calibration": "gliomaseg.inference.quality_calibrations",
    "input_statistics": "gliomaseg.inference.quality",
    "probability_signals": "gliomaseg.inference.quality",
    "quality_calibration": "gliomaseg.inference.quality_calibrations",
    "quality_for_case": "gliomaseg.inference.quality",
    "quality_signals": "gliomaseg.inference.quality",
    "score_case": "gliomaseg.inference.quality",
    "score_signals": "gliomaseg.inference.quality",
    "unscored_reason": "gliomaseg.inference.quality",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.inference.backends import LoadedModel, load_onnx, load_torch
    from gliomaseg.inference.dicom import SeriesInfo, format_series_table, list_series, read_dicom
    from gliomaseg.inference.export import AveragedProbabilities, ExportResult, export_onnx
    from gliomaseg.inference.fusion import LogitsFn, fold_batchnorm, graph_fused
    from gliomaseg.inference.inputs import SUPPORTED_INPUTS, Case, discover_inputs, read_case, read_image, read_volume
    from gliomaseg.inference.limits import (
        DECODED_BYTES_PER_VOXEL,
        DEFAULT_LIMITS,
        LIMIT_FLAGS,
        Limits,
        check_case,
        image_size,
    )
    from gliomaseg.inference.measures import COMPONENT_COLUMNS, MEASURE_COLUMNS, components, measure, summarise
    from gliomaseg.inference.nifti import (
        NIFTI_SUFFIXES,
        nifti_decoded_size,
        nifti_spacing,
        nifti_spacing_known,
        nifti_stem,
        nifti_to_uint8,
        read_nifti,
        read_nifti_volume,
    )
    from gliomaseg.inference.onnx_check import ONNX_FORMAT, check_onnx_model
    from gliomaseg.inference.orientation import Frame, from_model_frame, model_orientation, to_model_frame
    from gliomaseg.inference.outputs import (
        CASE_COMPONENT_COLUMNS,
        CASES_COLUMNS,
        OutputOptions,
        case_row,
        case_targets,
        case_volume,
        finished_case,
        overlay,
        to_source,
        write_case,
    )
    from gliomaseg.inference.overview import OVERVIEW_SLICES, overview_image, overview_slices, write_overview
    from gliomaseg.inference.predict import predict_inputs
    from gliomaseg.inference.pretrained import BUNDLED, BundledModel, bundled_path, model_card, resolve_model
    from gliomaseg.inference.quality import (
        QUALITY_COLUMNS,
        SIGNALS,
        calibration_signals,
        check_signals,
        input_statistics,
        probability_signals,
        quality_for_case,
        quality_signals,
        score_case,
        score_signals,
        unscored_reason,
    )
    from gliomaseg.inference.quality_calibrations import BUNDLED_CALIBRATIONS, default_calibration, quality_calibration
    from gliomaseg.inference.segmenter import Segmenter, load_segmenter, model_algorithm
    from gliomaseg.inference.sequences import read_sequences
    from gliomaseg.inference.volume import Volume
    from gliomaseg.inference.writers import (
        DICOM_DATASETS,
        NIFTI_IMAGE,
        SEGMENT_LABEL,
        source_frames,
        write_dicom_seg,
        write_nifti_mask,
        write_probabilities,
    )
