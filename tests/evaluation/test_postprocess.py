"""Tests for gliomaseg.evaluation.postprocess: config, 3D connected components, flip TTA with real conv nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gliomaseg.evaluation.boxes import bounding_box
from gliomaseg.evaluation.postprocess import (
    PostprocessConfig,
    binarise,
    flip_tta,
    keep_largest_component,
    postprocess_volume,
    remove_small_components,
)

# --------------------------------------------------------------------------- config


def test_config_round_trip() -> None:
    cfg = PostprocessConfig(threshold=0.4, min_size=10, largest_component=True, tta=True)
    assert cfg.to_dict() == {
        "threshold": 0.4,
        "min_size": 10,
        "largest_component": True,
        "tta": True,
        "fill_holes": False,
        "component_score": "voxels",
    }
    assert PostprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert PostprocessConfig.from_dict({}) == PostprocessConfig()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threshold": 0.0}, ValueError, "0.0"),
        ({"threshold": 1.0}, ValueError, "1.0"),
        ({"threshold": 1.5}, ValueError, "1.5"),
        ({"threshold": "0.5"}, TypeError, "'0.5'"),
        ({"min_size": -1}, ValueError, "-1"),
        ({"min_size": 2.5}, ValueError, "2.5"),
        ({"largest_component": "yes"}, TypeError, "'yes'"),
    ],
)
def test_config_rejects(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        PostprocessConfig(**kwargs)


def test_config_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match="treshold"):
        PostprocessConfig.from_dict({"treshold": 0.5})


# --------------------------------------------------------------------------- binarise


def test_binarise_threshold_inclusive() -> None:
    prob = np.array([0.0, 0.49, 0.5, 0.51, 1.0])
    np.testing.assert_array_equal(binarise(prob, 0.5), [False, False, True, True, True])
    np.testing.assert_array_equal(binarise(torch.tensor(prob), 0.9), [False, False, False, False, True])


@pytest.mark.parametrize(("prob", "threshold", "match"), [([-2.0, 3.0], 0.5, "logits"), ([0.2], 1.0, "threshold")])
def test_binarise_rejects(prob: list, threshold: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binarise(np.array(prob), threshold)


# --------------------------------------------------------------------------- components


def hand_volume() -> np.ndarray:
    """4 x 8 x 8 volume with three components (26-connectivity):

    A: 3 voxels in slice 0 and 3 voxels right below in slice 1 -> one 3D component of 6 voxels.
    C: 5 voxels in a row in slice 3 (the largest *per slice*).
    D: a single voxel in slice 2, far from the others.
    """
    v = np.zeros((4, 8, 8), bool)
    v[0, 1, 1:4] = True
    v[1, 1, 1:4] = True
    v[3, 6, 1:6] = True
    v[2, 4, 7] = True
    return v


def test_remove_small_components_counts_3d_components() -> None:
    v = hand_volume()
    out = remove_small_components(v, min_size=5)
    expected = v.copy()
    expected[2, 4, 7] = False  # D (1 voxel) goes; A survives only because it is 3D (3 + 3 voxels)
    np.testing.assert_array_equal(out, expected)
    expected[3] = False  # C has 5 voxels
    np.testing.assert_array_equal(remove_small_components(v, min_size=6), expected)


@pytest.mark.parametrize("min_size", [0, 1])
def test_remove_small_components_off(min_size: int) -> None:
    v = hand_volume()
    out = remove_small_components(v, min_size)
    np.testing.assert_array_equal(out, v)
    assert out is not v


@pytest.mark.parametrize(("connectivity", "kept"), [(None, 2), (3, 2), (2, 0), (1, 0)])
def test_corner_contact_depends_on_connectivity(connectivity: int | None, kept: int) -> None:
    v = np.zeros((3, 3, 3), bool)
    v[0, 0, 0] = v[1, 1, 1] = True  # touch at a corner only: one component for 26-connectivity (default)
    kwargs = {} if connectivity is None else {"connectivity": connectivity}
    assert remove_small_components(v, 2, **kwargs).sum() == kept
    assert keep_largest_component(v, **kwargs).sum() == (2 if kept else 1)


def test_keep_largest_component_is_3d() -> None:
    v = hand_volume()
    expected = np.zeros_like(v)
    expected[0, 1, 1:4] = expected[1, 1, 1:4] = True  # A (6 voxels) beats C (5 voxels in one slice)
    np.testing.assert_array_equal(keep_largest_component(v), expected)
    only_c = np.zeros_like(v)
    only_c[3, 6, 1:6] = True
    # A is 3+3 face-connected too, so it still wins with 6-connectivity.
    np.testing.assert_array_equal(keep_largest_component(v, connectivity=1), expected)
    assert keep_largest_component(v & ~expected).sum() == 5
    np.testing.assert_array_equal(keep_largest_component(v & ~expected), only_c)


@pytest.mark.parametrize(
    "fn",
    [keep_largest_component, lambda m: remove_small_components(m, 3), lambda m: postprocess_volume(m * 1.0)],
)
def test_empty_volume_stays_empty(fn) -> None:
    out = fn(np.zeros((3, 5, 5), bool))
    assert out.shape == (3, 5, 5) and out.dtype == bool and not out.any()


def test_component_input_checks() -> None:
    with pytest.raises(TypeError, match="bool"):
        keep_largest_component(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="connectivity"):
        remove_small_components(np.zeros((2, 3, 3), bool), 2, connectivity=4)
    with pytest.raises(ValueError, match="min_size"):
        remove_small_components(np.zeros((2, 3, 3), bool), -3)


def test_postprocess_volume_steps() -> None:
    v = hand_volume()
    prob = np.where(v, 0.8, 0.1)
    prob[0, 1, 1] = 0.3  # below threshold: A loses a voxel (5 left, ties with C)
    base = postprocess_volume(prob, PostprocessConfig())
    np.testing.assert_array_equal(base, v & (prob >= 0.5))
    small = postprocess_volume(prob, PostprocessConfig(min_size=2))
    np.testing.assert_array_equal(small, base & ~(np.arange(8) == 7)[None, None, :])
    largest = postprocess_volume(torch.from_numpy(prob), PostprocessConfig(threshold=0.25, largest_component=True))
    expected = np.zeros_like(v)
    expected[0, 1, 1:4] = expected[1, 1, 1:4] = True  # the 0.3 voxel is back in at threshold 0.25
    np.testing.assert_array_equal(largest, expected)
    with pytest.raises(ValueError, match="S x H x W"):
        postprocess_volume(prob[0])


# --------------------------------------------------------------------------- TTA


def symmetric_net() -> nn.Module:
    """A random conv net whose kernels are symmetric under h and v flips, hence flip-equivariant."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                w = layer.weight
                w.copy_((w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4)
    return net.eval()


def test_tta_equals_plain_prediction_for_equivariant_net() -> None:
    net = symmetric_net()
    x = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(1))
    plain = torch.sigmoid(net(x)).detach()
    assert plain.std() > 1e-3  # not a constant output
    out = flip_tta(net, x)
    assert out.shape == (2, 1, 8, 10)
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)


def shift_net(axis: str) -> nn.Module:
    """Conv that shifts the image by +1 pixel along W (axis "h") or H (axis "v"), zero fill."""
    kernel = (1, 3) if axis == "h" else (3, 1)
    conv = nn.Conv2d(1, 1, kernel, padding=(0, 1) if axis == "h" else (1, 0), bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight.view(-1)[0] = 1.0  # out[j] = x[j - 1]
    return conv.eval()


@pytest.mark.parametrize("axis", ["h", "v"])
def test_tta_unflips_a_non_equivariant_net(axis: str) -> None:
    a, b, c, d = 1.0, -2.0, 3.0, 0.5
    shape = (1, 1, 1, 4) if axis == "h" else (1, 1, 4, 1)
    x = torch.tensor([a, b, c, d]).reshape(shape)
    net = shift_net(axis)
    np.testing.assert_allclose(net(x).detach().flatten(), [0, a, b, c])
    # Flipped input [d, c, b, a] shifts to [0, d, c, b]; flipped back: [b, c, d, 0].
    s = torch.sigmoid
    expected = (s(torch.tensor([0, a, b, c])) + s(torch.tensor([b, c, d, 0]))) / 2
    out = flip_tta(net, x, flips=("none", axis))
    torch.testing.assert_close(out.flatten(), expected)


def test_tta_all_flips_average_by_hand() -> None:
    net = shift_net("h")
    x = torch.randn(2, 1, 3, 5, generator=torch.Generator().manual_seed(2))
    zeros = torch.zeros_like(x[..., :1])
    right = torch.cat([zeros, x[..., :-1]], dim=-1)  # plain and "v" (a vertical flip commutes)
    left = torch.cat([x[..., 1:], zeros], dim=-1)  # "h" and "hv"
    expected = (torch.sigmoid(right) + torch.sigmoid(left)) / 2
    torch.testing.assert_close(flip_tta(net, x), expected)


@pytest.mark.parametrize(
    ("images", "flips", "match"),
    [
        (torch.zeros(1, 1, 4, 4), ("none", "d"), "'d'"),
        (torch.zeros(1, 1, 4, 4), (), "non-empty"),
        (torch.zeros(1, 1, 4, 4), ("h", "h"), "distinct"),
        (torch.zeros(1, 1, 4, 4), "h", "string"),
        (torch.zeros(1, 4, 4), ("none",), "B x C x H x W"),
    ],
)
def test_tta_rejects(images: torch.Tensor, flips, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        flip_tta(shift_net("h"), images, flips=flips)


def test_fill_holes_per_slice_fills_enclosed_cores_only():
    from gliomaseg.evaluation.postprocess import PostprocessConfig, fill_holes_per_slice, postprocess_volume

    ring = np.zeros((2, 9, 9), bool)
    ring[0, 2:7, 2:7] = True
    ring[0, 4, 4] = False  # enclosed core
    ring[1, 2:7, 2:7] = True
    ring[1, 4, 2:5] = False  # a notch open to the outside is not a hole
    filled = fill_holes_per_slice(ring)
    assert filled[0, 4, 4] and filled[0].sum() == 25
    np.testing.assert_array_equal(filled[1], ring[1])
    prob = ring.astype(np.float32)
    assert postprocess_volume(prob, PostprocessConfig(fill_holes=True))[0, 4, 4]
    assert not postprocess_volume(prob, PostprocessConfig())[0, 4, 4]
    with pytest.raises(TypeError, match="fill_holes"):
        PostprocessConfig(fill_holes="yes")


def test_component_score_probability_keeps_the_confident_small_component() -> None:
    # A larger faint blob (27 voxels at 0.55, sum 14.85) and a smaller confident one (20 voxels at
    # 0.99, sum 19.8): by size the faint one is kept, by summed probability the confident one.
    prob = np.zeros((6, 12, 12), np.float32)
    prob[0:3, 0:3, 0:3] = 0.55  # 27 voxels, sum 14.85
    prob[3:5, 6:11, 6:8] = 0.99  # 20 voxels, sum 19.8
    by_size = postprocess_volume(prob, PostprocessConfig(largest_component=True))
    by_prob = postprocess_volume(prob, PostprocessConfig(largest_component=True, component_score="probability"))
    assert by_size.sum() == 27 and by_size[0, 0, 0]
    assert by_prob.sum() == 20 and by_prob[3, 6, 6]


def test_component_score_must_be_known() -> None:
    with pytest.raises(ValueError, match="component_score='mean'"):
        PostprocessConfig(component_score="mean")


def test_bounding_box_is_the_extent_of_the_true_voxels_in_any_memory_layout():
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = np.zeros((12, 20, 16), bool)
        mask[tuple(rng.integers(0, n, 3) for n in mask.shape)] = True
        # a transposed, flipped view, as a mask put back into a scan's own geometry is
        view = np.flip(mask.transpose(rng.permutation(3)), axis=tuple(np.flatnonzero(rng.integers(0, 2, 3))))
        hits = np.nonzero(view)
        expected = tuple(slice(int(h.min()), int(h.max()) + 1) for h in hits)
        assert bounding_box(view) == expected
        assert view[expected].sum() == view.sum()
    assert bounding_box(np.zeros((4, 5, 6), bool)) is None
