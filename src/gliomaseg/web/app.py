"""The page: a Gradio ``Blocks`` layout wired to the :class:`~gliomaseg.web.handlers.Viewer` handlers.

Left: the uploads (scan, optional ground truth), the examples and the post-processing settings.
Right: the overlay and probability map of one slice, the slice slider, the numbers, the per-slice
table and the downloads. Elements that tests and users look for have ``elem_id`` values.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable, Sequence
from typing import Any

from gliomaseg.inference.segmenter import Segmenter
from gliomaseg.web.examples import Example
from gliomaseg.web.handlers import Viewer, discard
from gliomaseg.web.sessions import return_memory_to_os

__all__ = ["CSS", "build_app"]

#: Page styles (passed to ``launch``): the error box, the numbers table.
CSS = """
.gs-error { border: 2px solid #d33; background: #fff1f1; color: #611; padding: 0.6em 0.8em; border-radius: 6px; }
.gs-summary table { border-collapse: collapse; margin-top: 0.3em; border: none !important; }
.gs-summary tr, .gs-summary th, .gs-summary td { border: none !important; background: none !important; }
.gs-summary th, .gs-summary td { padding: 0.15em 1.2em 0.15em 0; }
.gs-summary th { text-align: left; font-weight: 600; }
.gs-summary .gs-value { font-weight: 700; font-size: 1.1em; }
.gs-case { color: #666; margin: 0; }
.gs-flag-ok { color: #176117; font-weight: 600; }
.gs-flag-check { color: #fff; background: #c0392b; font-weight: 700; padding: 0 0.35em; border-radius: 3px; }
"""
_SESSION_TTL_S = 2 * 3600


def _in_session(viewer: Viewer, handler: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """``handler`` with the scan it returns kept in ``viewer.sessions`` under the caller's session id."""
    import gradio as gr

    def run(request: Any, *args: Any) -> tuple[Any, ...]:
        view = handler(*args)
        viewer.sessions.keep(request.session_hash, view[0])
        return_memory_to_os()  # the request's temporaries are freed: give their pages back
        return view

    # Gradio passes the request to a parameter annotated gr.Request; set as an object, because this
    # module's string annotations cannot name gradio (imported only here, when the page is built).
    # The name is copied (not functools.wraps, whose __wrapped__ would hide `request` from Gradio):
    # Gradio names the API endpoint after it (/new_scan).
    run.__annotations__ = {"request": gr.Request}
    run.__name__ = run.__qualname__ = getattr(handler, "__name__", "run")
    return run


def _on_unload(viewer: Viewer) -> Callable[..., None]:
    import gradio as gr

    def drop(request: Any) -> None:
        viewer.sessions.drop(request.session_hash)

    drop.__annotations__ = {"request": gr.Request}
    return drop


def _intro(segmenter: Segmenter, model_name: str) -> str:
    meta = segmenter.meta
    model = (meta.get("model") or {}).get("name", "?")
    post = segmenter.postprocess
    return (
        "# gliomaseg: lower-grade glioma segmentation\n"
        f"Model **{html.escape(model_name)}** ({html.escape(str(model))}, trained at {segmenter.preprocess.size} px, "
        f"{html.escape(segmenter.backend)}; stored threshold {post.threshold:g}). "
        "Upload a scan, or click an example. Research software: not for diagnosis."
    )


def _accepted(max_bytes: int) -> str:
    return (
        "Accepted: one slice (TIFF, PNG or JPEG; 3-channel or FLAIR-only), several slices of one patient "
        "(named like `P1_1.tif`, `P1_2.tif`, ...), a zip of one kaggle_3m patient folder, a zip of one DICOM series "
        f"(`.dcm` or bare DICOM files), or a NIfTI volume (`.nii`, `.nii.gz`, any orientation); up to "
        f"{max_bytes / 2**20:.3g} MB per upload. Volumes are measured in mL from the header's voxel size."
    )


def _settings_controls(segmenter: Segmenter) -> list[Any]:
    import gradio as gr

    post = segmenter.postprocess
    return [
        gr.Slider(0.05, 0.95, value=post.threshold, step=0.01, label="Threshold", elem_id="threshold"),
        gr.Number(
            value=post.min_size,
            precision=0,
            minimum=0,
            label="Remove 3D components smaller than (voxels)",
            elem_id="min-size",
        ),
        gr.Checkbox(value=post.largest_component, label="Keep the largest 3D component only", elem_id="largest"),
        gr.Checkbox(value=post.fill_holes, label="Fill holes in each slice", elem_id="fill-holes"),
        gr.Checkbox(value=post.tta, label="Flip test-time augmentation (runs the network again)", elem_id="tta"),
    ]


def build_app(
    segmenter: Segmenter,
    viewer: Viewer,
    *,
    model_name: str = "model",
    examples: Sequence[Example] = (),
) -> Any:
    """The Gradio ``Blocks`` of the viewer (not launched).

    Args:
        segmenter: the model (its stored post-processing fills the settings).
        viewer: the handlers (holds the same segmenter, the temp folder and the upload limit).
        model_name: shown in the page header.
        examples: one button per example.

    Returns:
        A ``gradio.Blocks``; launch it with ``css=CSS`` (see :func:`gliomaseg.web.server.serve`).

    Example:
        >>> from gliomaseg.inference import load_segmenter
        >>> seg = load_segmenter("best.pt")  # doctest: +SKIP
        >>> build_app(seg, Viewer(seg, tmp_root, 200 * 2**20)).launch(css=CSS)  # doctest: +SKIP
    """
    import gradio as gr

    # Gradio keeps every upload and every picture served in its cache; a long-running server would
    # fill its disk, so files older than a session's lifetime are deleted every half hour.
    delete_cache = (_SESSION_TTL_S // 4, _SESSION_TTL_S)
    with gr.Blocks(title="gliomaseg viewer", analytics_enabled=False, delete_cache=delete_cache) as app:
        gr.Markdown(_intro(segmenter, model_name))
        state = gr.State(None, time_to_live=_SESSION_TTL_S, delete_callback=discard)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                scan_files = gr.File(label="Scan", file_count="multiple", elem_id="scan-upload")
                gr.Markdown(_accepted(viewer.max_bytes))
                truth_files = gr.File(
                    label="Ground truth (optional): mask images or a NIfTI mask",
                    file_count="multiple",
                    elem_id="truth-upload",
                )
                with gr.Row():
                    buttons = {e.key: gr.Button(e.label, size="sm", elem_id=f"example-{e.key}") for e in examples}
                settings = _settings_controls(segmenter)
            with gr.Column(scale=2):
                status = gr.HTML("", elem_id="status")
                with gr.Row():
                    overlay = gr.Image(
                        label="FLAIR: prediction red, truth green", format="png", interactive=False, elem_id="overlay"
                    )
                    probability = gr.Image(
                        label="Tumour probability (black 0, yellow 1)",
                        format="png",
                        interactive=False,
                        elem_id="probability",
                    )
                slice_slider = gr.Slider(1, 2, value=1, step=1, label="Slice", visible=False, elem_id="slice")
                summary = gr.HTML("", elem_id="summary")
                table = gr.Dataframe(
                    label="Per slice", interactive=False, elem_id="slices", max_height=300, visible=False
                )
                downloads = gr.File(
                    label="Downloads: mask (input's format), overlay PNG",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
        view = [state, status, overlay, probability, slice_slider, summary, table, downloads]
        common = [state, slice_slider, *settings]
        # One queue for every event: a session's handlers never run at the same time (they share its
        # Analysis), and users take turns on the CPU rather than competing for it.
        queue = {"concurrency_id": "gliomaseg", "concurrency_limit": 1}
        bound = functools.partial(_in_session, viewer)
        scan_files.upload(bound(viewer.new_scan), [*common, scan_files, truth_files], view, **queue)
        clear = bound(lambda old: (discard(old), *viewer.view(None))[1:])
        scan_files.clear(clear, [state], view, **queue)
        truth_files.upload(bound(viewer.new_truth), [*common, truth_files], view, **queue)
        truth_files.clear(bound(viewer.new_truth), [*common, truth_files], view, **queue)
        gr.on([s.change for s in settings], bound(viewer.settle), common, view, **queue)
        slice_slider.change(bound(viewer.show_slice), common, view, **queue)
        for key, button in buttons.items():
            button.click(bound(viewer.example(key)), common, [*view, scan_files, truth_files], **queue)
        # The tab closed (or a client's heartbeat ended): free its scan now, not when Gradio's state expires.
        app.unload(_on_unload(viewer))
    return app
