"""The page's event handlers: plain functions of the inputs that return the whole view.

Every handler takes ``(analysis, slice_number, threshold, min_size, largest_component, fill_holes,
tta, ...)`` and returns :data:`VIEW` values in order. A problem with an upload or a setting becomes
an error box on the page (the handler never raises), so one user's bad file leaves the server
serving everyone else.
"""

from __future__ import annotations

import functools
import logging
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gliomaseg.data.io import write_image
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference.limits import DEFAULT_LIMITS, Limits
from gliomaseg.inference.segmenter import Segmenter, model_algorithm
from gliomaseg.web.analysis import Analysis
from gliomaseg.web.downloads import write_downloads
from gliomaseg.web.examples import Example
from gliomaseg.web.render import error_html, overlay_image, probability_image, summary_html, upscale
from gliomaseg.web.sessions import SessionStore, release
from gliomaseg.web.truth import read_truth
from gliomaseg.web.uploads import load_upload

__all__ = ["VIEW", "Viewer", "discard"]

log = logging.getLogger(__name__)

#: What every handler returns, in order.
VIEW = ("analysis", "status", "overlay", "probability", "slice", "summary", "table", "downloads")
_TABLE_HEADERS = {
    "slice": "slice",
    "tumour_px": "tumour (px)",
    "tumour_mm2": "tumour (mm²)",
    "truth_px": "truth (px)",
    "dice": "Dice",
}


def discard(analysis: Analysis | None) -> None:
    """Free a scan: remove its private folder (uploads unpacked, downloads written) and drop its arrays."""
    release(analysis)


def _live(analysis: Analysis | None) -> Analysis | None:
    """``analysis``, unless the server released it (its session ended or the memory was needed elsewhere)."""
    if analysis is not None and analysis.released:
        raise GliomasegError(
            "this scan was cleared from the server to free memory for other users (or its session ended); "
            "upload it again"
        )
    return analysis


def _settings(
    threshold: float, min_size: float | None, largest: bool, fill_holes: bool, tta: bool
) -> PostprocessConfig:
    if min_size is None or min_size < 0 or int(min_size) != min_size:
        raise GliomasegError(f"minimum component size {min_size!r}: enter a whole number of voxels >= 0 (0 = off)")
    return PostprocessConfig(
        threshold=float(threshold),
        min_size=int(min_size),
        largest_component=bool(largest),
        tta=bool(tta),
        fill_holes=bool(fill_holes),
    )


def _png(image: Any, analysis: Analysis, name: str) -> str:
    """The picture as a PNG file in the scan's folder, for Gradio to serve.

    Gradio caches an array by rewriting a file named after its content in place, so when two
    sessions show the same picture, one download can be cut short (found by
    benchmarks/load_web.py); a file is copied into its cache atomically instead.
    """
    return str(write_image(analysis.scan.work / "view" / f"{name}.png", image, overwrite=True))


def _paths(files: Any) -> list[Path]:
    if files is None:
        return []
    items = files if isinstance(files, list | tuple) else [files]
    return [Path(getattr(f, "name", f)) for f in items]


class Viewer:
    """The handlers, bound to one model and one server temp folder.

    Args:
        segmenter: the model, shared by all sessions.
        tmp_root: the server's temp folder; each scan gets a private ``work/<id>`` folder below it.
        max_bytes: the upload size limit.
        examples: the bundled examples, by key.
        limits: the decoded-size budget of one upload (checked before decoding).
        sessions: the scans held per session (freed when a session ends; bounded across sessions).
    """

    def __init__(
        self,
        segmenter: Segmenter,
        tmp_root: Path,
        max_bytes: int,
        examples: Sequence[Example] = (),
        *,
        limits: Limits = DEFAULT_LIMITS,
        sessions: SessionStore | None = None,
    ) -> None:
        self.segmenter = segmenter
        self.tmp_root = Path(tmp_root)
        self.max_bytes = max_bytes
        self.examples = {e.key: e for e in examples}
        self.limits = limits
        self.sessions = sessions if sessions is not None else SessionStore()

    # ------------------------------------------------------------------ views
    def view(self, analysis: Analysis | None, z: int = 0, status: str = "") -> tuple[Any, ...]:
        """The :data:`VIEW` values for ``analysis`` shown at slice ``z`` (blank without a result)."""
        import gradio as gr

        if analysis is None or analysis.result is None or analysis.released:
            return (analysis, status, None, None, gr.Slider(visible=False), "", gr.Dataframe(visible=False), None)
        result = analysis.result
        n_slices = result.mask.shape[0]
        z = min(max(z, 0), n_slices - 1)
        table = result.per_slice.round({"tumour_mm2": 1, "dice": 3}).rename(columns=_TABLE_HEADERS)
        slider = gr.Slider(minimum=1, maximum=max(n_slices, 2), value=z + 1, step=1, visible=n_slices > 1)
        return (
            analysis,
            status,
            _png(upscale(overlay_image(analysis, z)), analysis, "overlay"),
            _png(upscale(probability_image(result, z)), analysis, "probability"),
            slider,
            summary_html(analysis, z),
            gr.Dataframe(table, visible=True),
            [str(p) for p in write_downloads(analysis, z, model_algorithm(self.segmenter))],
        )

    def _failed(self, err: Exception, analysis: Analysis | None, z: int) -> tuple[Any, ...]:
        if isinstance(err, GliomasegError):
            message = str(err)
        else:
            log.exception("gliomaseg serve: unexpected error")
            message = f"internal error ({type(err).__name__}: {err}); the server log has the details"
        return self.view(analysis, z, error_html(message, self.tmp_root))

    # ------------------------------------------------------------------ handlers
    def new_scan(self, old: Analysis | None, _slice: int, *settings_and_files: Any) -> tuple[Any, ...]:
        """A new scan upload (and optional ground truth): read, segment, open on the most tumorous slice."""
        *settings, files, truth_files = settings_and_files
        discard(old)
        analysis = None
        work = self.tmp_root / "work" / uuid.uuid4().hex
        try:
            analysis = Analysis(load_upload(_paths(files), work, max_bytes=self.max_bytes, limits=self.limits))
            if _paths(truth_files):
                analysis.truth = read_truth(_paths(truth_files), analysis.scan, max_bytes=self.max_bytes)
            result = analysis.update(self.segmenter, _settings(*settings))
            return self.view(analysis, result.best_slice)
        except Exception as err:  # noqa: BLE001 - shown on the page; the server keeps serving
            if analysis is None or analysis.result is None:
                shutil.rmtree(work, ignore_errors=True)  # a refused upload keeps nothing on the server
                analysis = None
            return self._failed(err, analysis, 0)

    def new_truth(self, analysis: Analysis | None, slice_no: int, *settings_and_files: Any) -> tuple[Any, ...]:
        """A ground-truth upload (or its removal) for the current scan."""
        *settings, truth_files = settings_and_files
        z = int(slice_no) - 1
        try:
            if _live(analysis) is None:
                raise GliomasegError("upload a scan first, then its ground truth")
            files = _paths(truth_files)
            truth = read_truth(files, analysis.scan, max_bytes=self.max_bytes) if files else analysis.scan.truth
            analysis.truth = truth
            analysis.update(self.segmenter, _settings(*settings))
            return self.view(analysis, z)
        except Exception as err:  # noqa: BLE001 - shown on the page
            return self._failed(err, analysis, z)

    def settle(self, analysis: Analysis | None, slice_no: int, *settings: Any) -> tuple[Any, ...]:
        """New threshold or post-processing: recompute the mask from the cached probabilities."""
        z = int(slice_no) - 1
        if analysis is None:
            return self.view(None)
        try:
            _live(analysis)
            analysis.update(self.segmenter, _settings(*settings))
            return self.view(analysis, z)
        except Exception as err:  # noqa: BLE001 - shown on the page
            return self._failed(err, analysis, z)

    def show_slice(self, analysis: Analysis | None, slice_no: int, *_settings: Any) -> tuple[Any, ...]:
        """Another slice of the same result (the slider itself is left as the user set it)."""
        import gradio as gr

        try:
            _live(analysis)
        except GliomasegError as err:
            return self._failed(err, analysis, 0)
        view = list(self.view(analysis, int(slice_no) - 1))
        view[VIEW.index("slice")] = gr.skip()
        return tuple(view)

    def example(self, key: str) -> Callable[..., tuple[Any, ...]]:
        """A handler that loads example ``key`` as if uploaded; it also fills the two upload boxes."""
        example = self.examples[key]

        @functools.wraps(self.new_scan)
        def load(old: Analysis | None, slice_no: int, *settings: Any) -> tuple[Any, ...]:
            scan, truth = [str(p) for p in example.scan], [str(p) for p in example.truth]
            view = self.new_scan(old, slice_no, *settings, scan, truth)
            return (*view, scan, truth or None)

        return load
