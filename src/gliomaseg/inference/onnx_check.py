"""Checking an ONNX file before onnxruntime runs it: a valid graph of the shape gliomaseg exports.

An ``.onnx`` file may come from anywhere, so :func:`check_onnx_model` reads it without following
external-data references (a hostile file could point them at any file on the machine), runs
``onnx.checker``, and checks the graph's interface and the gliomaseg metadata that
:func:`gliomaseg.inference.export.export_onnx` writes (see that module for the format).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.postprocess import PostprocessConfig

__all__ = ["ONNX_FORMAT", "check_onnx_model"]

ONNX_FORMAT = "gliomaseg-onnx/1"
_FIX = "export the model again with `gliomaseg export --model MODEL --format onnx`"


def _dims(value_info: Any) -> list[int | str]:
    """The shape of a graph input/output: ints for fixed axes, names for symbolic ones."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _metadata(proto: Any, path: Path) -> dict[str, Any]:
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("format") != ONNX_FORMAT or "preprocess" not in props:
        raise GliomasegError(f"{path} has no gliomaseg metadata (format {ONNX_FORMAT!r}, preprocess); {_FIX}")
    meta: dict[str, Any] = {}
    for key, value in props.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    try:
        PreprocessConfig.from_dict(meta["preprocess"])
        PostprocessConfig.from_dict(meta.get("postprocess") or {})
    except (TypeError, ValueError) as err:
        raise GliomasegError(f"{path}: its stored pre-/post-processing settings are invalid ({err}); {_FIX}") from None
    return meta


def _check_interface(proto: Any, path: Path, preprocess: PreprocessConfig) -> None:
    """One ``image`` input of ``B x channels x size x size`` and one ``logits`` output of ``B x 1 x size x size``."""
    size = preprocess.size
    graph = proto.graph
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    shapes = {"input": [(i.name, _dims(i)) for i in inputs], "output": [(o.name, _dims(o)) for o in graph.output]}
    expected = {"input": ("image", preprocess.channels), "output": ("logits", 1)}
    for kind, found in shapes.items():
        name, channels = expected[kind]
        ok = len(found) == 1 and found[0][0] == name and len(found[0][1]) == 4
        ok = ok and found[0][1][1] == channels and found[0][1][2:] == [size, size]
        if not ok:
            raise GliomasegError(
                f"{path}: graph {kind}s {found} are not one {name!r} of shape B x {channels} x {size} x {size}; {_FIX}"
            )


def check_onnx_model(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """Validate an ONNX file as a gliomaseg export and return its bytes and metadata.

    Args:
        path: the ``.onnx`` file.

    Returns:
        ``(model_bytes, meta)``: the serialised model to hand to onnxruntime (so the file checked is
        the file run) and the metadata with JSON values decoded.

    Raises:
        GliomasegError: a missing or unparsable file, tensors stored outside the file, a graph that
            fails ``onnx.checker``, inputs/outputs other than ``image``/``logits`` of the stored size and
            channels (3, or ``3 (2K + 1)`` for ``context_slices = K``), or missing or invalid gliomaseg metadata.

    Example:
        >>> model_bytes, meta = check_onnx_model("runs/unet__bce_dice__fold0/best.onnx")  # doctest: +SKIP
        >>> meta["preprocess"]  # doctest: +SKIP
        {'size': 128, 'normalisation': 'zscore', 'context_slices': 0}
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    if not path.is_file():
        raise GliomasegError(f"ONNX model {path} does not exist")
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as err:  # noqa: BLE001 - protobuf raises its own DecodeError types
        raise GliomasegError(f"{path} is not an ONNX model ({type(err).__name__}); {_FIX}") from None
    if any(uses_external_data(t) for t in proto.graph.initializer):
        raise GliomasegError(f"{path} keeps tensors in external files, which gliomaseg exports never do; {_FIX}")
    try:
        onnx.checker.check_model(proto)
    except Exception as err:  # noqa: BLE001 - onnx.checker.ValidationError and protobuf errors
        reason = " ".join(str(err).split())
        raise GliomasegError(f"{path} is not a valid ONNX model ({reason}); {_FIX}") from None
    meta = _metadata(proto, path)
    _check_interface(proto, path, PreprocessConfig.from_dict(meta["preprocess"]))
    return data, meta
