"""Tests for gliomaseg.training.models: every registered model, tiny widths."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gliomaseg.training.models import (
    SIZE_MULTIPLE,
    check_spatial_size,
    count_parameters,
    create_model,
    list_models,
)

FEATURES = 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_names():
    assert list_models() == ["attention_unet", "resunet", "unet", "unetpp"]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [(32, 32), (64, 48)])
def test_forward_backward_keeps_size(name, size):
    model = create_model(name, in_channels=3, out_channels=1, features=FEATURES)
    x = torch.randn(2, 3, *size)
    logits = model(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, 1, *size)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_channels_are_configurable(name):
    model = create_model(name, in_channels=1, out_channels=2, features=FEATURES).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("name", list_models())
def test_torchscript_matches_eager(name):
    model = create_model(name, features=FEATURES).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))


@pytest.mark.parametrize("name", list_models())
def test_onnx_export_dynamic_batch_matches_torch(name, tmp_path):
    model = create_model(name, features=FEATURES).eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings from MONAI blocks
        torch.onnx.export(
            model,
            (torch.randn(1, 3, 64, 48),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 48)  # batch differs from the export batch
    (onnx_out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert onnx_out.shape == (3, 1, 64, 48)
    np.testing.assert_allclose(onnx_out, expected, atol=1e-4, rtol=0)


def test_unet_matches_buda_reference_size_and_names():
    model = create_model("unet")  # features 32 as in Buda et al.
    assert count_parameters(model) == 7_763_041
    keys = model.state_dict().keys()
    assert "encoder1.enc1conv1.weight" in keys
    assert "bottleneck.bottlenecknorm2.running_var" in keys
    assert model.bottleneck[0].out_channels == 16 * 32
    assert model.encoder1[0].bias is None


def test_count_parameters_trainable_only():
    model = create_model("unet", features=FEATURES)
    total = count_parameters(model)
    model.conv.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.conv.weight.numel()
    assert count_parameters(model, trainable_only=False) == total


@pytest.mark.parametrize("name", list_models())
def test_dropout_is_forwarded(name):
    model = create_model(name, features=FEATURES, dropout=0.2)
    assert any(isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d) and m.p == 0.2 for m in model.modules())


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        create_model("segformer")
    for name in list_models():
        assert name in str(err.value)


@pytest.mark.parametrize("name", list_models())
def test_unknown_kwargs_are_named(name):
    with pytest.raises(ValueError, match="'wibble'"):
        create_model(name, wibble=1)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("in_channels", 0),
        ("out_channels", -1),
        ("features", 0),
        ("features", 8.0),
        ("in_channels", "3"),
        ("features", True),
    ],
)
def test_bad_sizes_raise(argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be a positive integer, got {value!r}"):
        create_model("unet", **{argument: value})


@pytest.mark.parametrize(("height", "width", "ok"), [(256, 256, True), (64, 48, True), (250, 256, False)])
def test_check_spatial_size(height, width, ok):
    if ok:
        check_spatial_size(height, width)
    else:
        with pytest.raises(ValueError, match=f"multiple of {SIZE_MULTIPLE}.*256"):
            check_spatial_size(height, width)
