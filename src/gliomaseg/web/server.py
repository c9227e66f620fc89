"""``serve``: load a model, make the examples, run the page on a local address, clean up afterwards.

Everything the server writes (Gradio's upload cache, unpacked zips, downloads, the examples) lives
in one temp folder, removed when the server stops (Ctrl-C, SIGTERM or normal exit). The page makes
no outbound connection: Gradio's analytics are off, no share link is made (that would download a
tunnel binary), and server-side rendering (which needs Node) is off.
"""

from __future__ import annotations

import atexit
import importlib.util
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gliomaseg.errors import GliomasegError
from gliomaseg.inference.limits import DEFAULT_LIMITS, Limits
from gliomaseg.inference.pretrained import resolve_model

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ModelResolver", "no_login_warning", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

#: Turns the MODEL argument into a model file (default: a path, or a bundled model's name).
ModelResolver = Callable[[str], Path]

# Gradio and huggingface_hub read these when imported: no telemetry, no hub look-ups.
_OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "GRADIO_SSR_MODE": "False",
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def no_login_warning(host: str) -> str | None:
    """The warning for an address other machines can reach (the page has no login), or None for loopback."""
    if _is_loopback(host):
        return None
    return (
        f"gliomaseg serve: warning: --host {host} lets anyone who can reach this machine on the network use the "
        "page: it has no login, so they can upload scans and see the results; bind to 127.0.0.1 (the default) "
        "unless the network is trusted"
    )


def _start_message(model: str, host: str, port: int, tmp_root: Path, max_upload_mb: float) -> str:
    shown = f"[{host}]" if ":" in host else host
    reach = (
        "loopback only, other machines cannot connect; --host 0.0.0.0 would allow that"
        if _is_loopback(host)
        else f"bound to {host}: reachable from other machines on the network, with no login"
    )
    return (
        f"gliomaseg serve: {model} on http://{shown}:{port} ({reach}); uploads up to {max_upload_mb:g} MB "
        f"kept in {tmp_root} (removed on exit); Ctrl-C stops"
    )


def _cleanup_on_exit(tmp_root: Path) -> Callable[[], None]:
    def cleanup() -> None:
        shutil.rmtree(tmp_root, ignore_errors=True)

    atexit.register(cleanup)

    # SIGTERM would otherwise end the process without running atexit handlers or finally blocks.
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, on_term)
    return cleanup


def serve(
    model: str | Sequence[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_upload_mb: float = 200.0,
    device: str = "auto",
    resolver: ModelResolver = resolve_model,
    limits: Limits = DEFAULT_LIMITS,
    calibration: str | Path | None = None,
) -> None:
    """Run the web viewer until interrupted.

    Args:
        model: the model, as understood by ``resolver`` (by default a ``.pt``/``.onnx`` path or a
            bundled model's name, e.g. ``lgg-unet``), or several: an ensemble averaging their probabilities.
        host: address to bind; the loopback default keeps the page on this machine.
        port: TCP port.
        max_upload_mb: refuse uploads (all files of one upload together) larger than this.
        device: PyTorch device for ``.pt`` models (``auto``, ``cpu``, ``cuda``...; ``auto`` with an ``.onnx``).
        resolver: maps ``model`` to a model file.
        limits: the decoded-size budget of one upload (pixels per slice, voxels, slices).
        calibration: the quality flag's calibration, a bundled name (``flip``) or a JSON file
            (None: the model's own, else the bundled default).

    Raises:
        GliomasegError: Gradio not installed, a missing or unusable model or calibration, or a bad
            limit or port.

    Example:
        >>> serve("runs/unet__bce_dice__fold0/best.pt", port=7860)  # doctest: +SKIP
    """
    if max_upload_mb <= 0:
        raise GliomasegError(f"--max-upload-mb {max_upload_mb:g}: must be > 0")
    if not 0 < port < 65536:
        raise GliomasegError(f"--port {port}: must be in 1..65535")
    if importlib.util.find_spec("gradio") is None:
        raise GliomasegError("the web viewer needs Gradio: install the extra with pip install -e '.[web]'")
    from gliomaseg.inference.quality_calibrations import quality_calibration

    chosen = quality_calibration(None, calibration) if calibration is not None else None  # refused before loading
    paths = [resolver(m) for m in ([model] if isinstance(model, str) else model)]
    from gliomaseg.inference.segmenter import load_segmenter

    onnx = any(p.suffix.lower() == ".onnx" for p in paths)
    segmenter = load_segmenter(paths if len(paths) > 1 else paths[0], device="auto" if onnx else device)
    if chosen is not None:  # the page scores with the model's calibration (Segmenter.meta["quality"])
        segmenter.meta["quality"] = chosen
    name = " + ".join(p.name for p in paths)
    tmp_root = Path(tempfile.mkdtemp(prefix="gliomaseg-web-")).resolve()
    cleanup = _cleanup_on_exit(tmp_root)
    app = None
    try:
        os.environ.update(_OFFLINE_ENV)
        # Before importing Gradio: it reads its cache folder from here, so uploads land in tmp_root.
        os.environ["GRADIO_TEMP_DIR"] = str(tmp_root / "uploads")
        from gliomaseg.web.app import CSS, build_app
        from gliomaseg.web.examples import make_examples
        from gliomaseg.web.handlers import Viewer

        examples = make_examples(tmp_root / "examples", size=segmenter.preprocess.size)
        max_bytes = int(max_upload_mb * 1024 * 1024)
        viewer = Viewer(segmenter, tmp_root, max_bytes, examples, limits=limits)
        app = build_app(segmenter, viewer, model_name=name, examples=examples)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests to itself
        print(_start_message(", ".join(map(str, paths)), host, port, tmp_root, max_upload_mb), flush=True)
        warning = no_login_warning(host)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        app.queue(default_concurrency_limit=1)
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            ssr_mode=False,
            mcp_server=False,
            inbrowser=False,
            quiet=True,
            max_file_size=max_bytes,
            show_error=False,
            footer_links=[],
            css=CSS,
            # Our own wait below: Gradio's reports any stop (SIGTERM too) as a "Keyboard interruption".
            prevent_thread_lock=True,
        )
        while app.is_running:
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see _cleanup_on_exit): the operator's stop, not an error
        if app is not None:
            app.close()
        print("gliomaseg serve: stopped", flush=True)
    finally:
        cleanup()
