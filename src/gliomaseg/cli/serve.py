"""Web viewer sub-command: ``serve``."""

from __future__ import annotations

import argparse

from gliomaseg.cli._common import (
    add_command,
    add_device_flags,
    add_limit_flags,
    add_model_flag,
    add_quality_calibration_flag,
)

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> None:
    from gliomaseg.cli._common import limits_from
    from gliomaseg.web.server import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        device=args.device,
        limits=limits_from(args, "serve"),
        calibration=args.quality_calibration,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to ``sub``."""
    p = add_command(
        sub,
        "serve",
        help="web viewer: segment uploaded scans in the browser (local Gradio page)",
        example="gliomaseg serve --model lgg-unet --port 7860",
    )
    add_model_flag(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; the page has no login, so another address "
        "lets anyone on the network use it)",
    )
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    p.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="refuse uploads larger than this many MB (default 200)"
    )
    add_device_flags(p, bf16=False, what=".pt models only")
    add_limit_flags(p)
    add_quality_calibration_flag(p)
    p.set_defaults(func=_cmd_serve)
