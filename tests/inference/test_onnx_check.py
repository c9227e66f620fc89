"""An ONNX file is checked before onnxruntime runs it: graph, interface, metadata, no external data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.external_data_helper import convert_model_to_external_data

from gliomaseg.errors import GliomasegError
from gliomaseg.inference import Segmenter
from gliomaseg.inference.onnx_check import check_onnx_model


def _drop_metadata(proto: onnx.ModelProto) -> None:
    del proto.metadata_props[:]


def _bad_preprocess(proto: onnx.ModelProto) -> None:
    next(p for p in proto.metadata_props if p.key == "preprocess").value = '{"size": 100}'


def _rename_input(proto: onnx.ModelProto) -> None:
    proto.graph.input[0].name = "x"
    for node in proto.graph.node:
        node.input[:] = ["x" if name == "image" else name for name in node.input]


def _unknown_op(proto: onnx.ModelProto) -> None:
    proto.graph.node[0].op_type = "NoSuchOp"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_drop_metadata, r"has no gliomaseg metadata"),
        (_bad_preprocess, r"stored pre-/post-processing settings are invalid \(size=100"),
        (_rename_input, r"graph inputs \[\('x'.*are not one 'image' of shape B x 3 x 32 x 32"),
        (_unknown_op, r"is not a valid ONNX model .*NoSuchOp"),
    ],
    ids=["no-metadata", "bad-metadata", "renamed-input", "unknown-op"],
)
def test_a_changed_export_is_refused_before_onnxruntime_runs_it(
    onnx_file: Path, tmp_path: Path, change: Callable[[onnx.ModelProto], None], expected: str
) -> None:
    proto = onnx.load(onnx_file)
    change(proto)
    path = tmp_path / "changed.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(GliomasegError, match=r"changed\.onnx.*" + expected + r".*gliomaseg export"):
        Segmenter.from_onnx(path)


def test_external_data_is_never_followed(onnx_file: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 64)
    proto = onnx.load(onnx_file)
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="secret.bin", size_threshold=0)
    path = tmp_path / "external.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(GliomasegError, match=r"external\.onnx keeps tensors in external files"):
        check_onnx_model(path)


def test_garbage_and_a_good_export(onnx_file: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x08junk" * 10)
    with pytest.raises(GliomasegError, match=r"junk\.onnx is not (an|a valid) ONNX model"):
        check_onnx_model(tmp_path / "junk.onnx")
    data, meta = check_onnx_model(onnx_file)
    assert data == onnx_file.read_bytes() and meta["preprocess"]["size"] == 32
    mask = Segmenter.from_onnx(onnx_file).predict_volume(np.zeros((1, 32, 32, 3), np.uint8))
    assert mask.shape == (1, 32, 32)
