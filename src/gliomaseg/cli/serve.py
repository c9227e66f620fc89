"""Web viewer sub-command: ``serve``."""

from __future__ import annotations

import argparse

from gliomaseg.cli._common import add_limit_flags

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> None:
    from gliomaseg.cli._common import limits_from
    from gliomaseg.errors import GliomasegError
    from gliomaseg.web.server import serve

    if (args.model is None) == (args.model_option is None):
        raise GliomasegError("give the model once: MODEL (a file) or --model NAME|FILE (e.g. --model lgg-unet)")
    model = args.model or args.model_option
    serve(
        model,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        device=args.device,
        limits=limits_from(args, "serve"),
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to ``sub``."""
    p = sub.add_parser("serve", help="web viewer: segment uploaded scans in the browser (local Gradio page)")
    p.add_argument("model", nargs="?", metavar="MODEL", help="model file (best.pt) or ONNX export (.onnx)")
    p.add_argument(
        "--model",
        dest="model_option",
        metavar="NAME|FILE",
        help="a bundled model (`gliomaseg models`; e.g. lgg-unet) or a model file, instead of MODEL",
    )
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (.pt models only)")
    add_limit_flags(p)
    p.set_defaults(func=_cmd_serve)
