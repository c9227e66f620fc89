"""Tests of the field-of-view window: the box around the head, crop/uncrop, and the segmenter's use of it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.data.normalise import shared_channel
from gliomaseg.inference import Segmenter
from gliomaseg.inference.field_of_view import HEAD_FRACTION, crop_to_box, uncrop_from_box, window_box, windowed
from gliomaseg.inference.predict import predict_inputs


def _head(canvas: int, top: int, left: int, rows: int = 60, cols: int = 50, slices: int = 4) -> np.ndarray:
    """``S x canvas x canvas x 3`` uint8: an elliptic 'head' of ``rows x cols`` at (top, left)."""
    r, c = np.ogrid[:rows, :cols]
    ellipse = ((r - rows / 2 + 0.5) / (rows / 2)) ** 2 + ((c - cols / 2 + 0.5) / (cols / 2)) ** 2 <= 1
    volume = np.zeros((slices, canvas, canvas, 3), np.uint8)
    volume[:, top : top + rows, left : left + cols][:, ellipse] = 180
    return volume


@pytest.mark.parametrize(
    ("canvas", "top", "left"),
    [(90, 2, 7), (160, 70, 30), (160, 0, 110), (200, 140, 3)],
    ids=["snug", "off-centre", "touching-the-edge", "corner"],
)
def test_window_is_a_square_around_the_head_sized_as_in_kaggle_3m(canvas: int, top: int, left: int):
    volume = _head(canvas, top, left)
    box = window_box(volume[..., 1])
    assert box is not None
    r0, c0, side, side2 = box
    assert side == side2
    # the head's largest extent (60 rows; head_box's smoothing adds up to ~2 px a side) fills 0.88 of it
    assert 60 / HEAD_FRACTION <= side <= 65 / HEAD_FRACTION
    assert r0 <= top and r0 + side >= top + 60 and c0 <= left and c0 + side >= left + 50  # the head is inside
    assert abs((r0 + side / 2) - (top + 30)) <= 2 and abs((c0 + side / 2) - (left + 25)) <= 2  # centred on it


@pytest.mark.parametrize(
    ("canvas", "windowed_expected"),
    [(64, False), (72, False), (84, True), (256, True)],
    ids=["fills-all", "fills-0.89", "fills-0.76", "fills-0.25"],
)
def test_a_head_framed_as_in_training_is_not_windowed(canvas: int, windowed_expected: bool):
    """At FRAMED_FRACTION (0.8) of the slice side or more the head is left as it is: no window, the slices
    themselves go to the network (head_box's smoothing adds ~2 px a side to the 60 rows)."""
    volume = _head(canvas, (canvas - 60) // 2, (canvas - 50) // 2)
    box = window_box(volume[..., 1])
    assert (box is not None) == windowed_expected
    seen = []
    windowed(lambda v: seen.append(v.shape) or np.zeros(v.shape[:3], np.float32), volume)
    assert (seen[0][1:3] != volume.shape[1:3]) == windowed_expected


@pytest.mark.parametrize(
    "box",
    [(5, 6, 20, 20), (-10, -4, 30, 30), (30, 35, 40, 40), (-8, -8, 60, 60), (-40, -40, 20, 20), (60, 70, 9, 9)],
    ids=[
        "inside",
        "over-the-top-left",
        "over-the-bottom-right",
        "larger-than-the-slice",
        "wholly-above",
        "wholly-below",
    ],
)
def test_uncrop_puts_back_what_crop_took(box: tuple[int, int, int, int]):
    data = np.random.default_rng(0).integers(1, 255, (3, 44, 48, 2), dtype=np.uint8)
    window = crop_to_box(data, box)
    assert window.shape == (3, box[2], box[3], 2)
    back = uncrop_from_box(window, box, data.shape[1:3])
    r0, c0, h, w = box
    inside = np.zeros(data.shape[1:3], bool)
    inside[max(r0, 0) : max(r0 + h, 0), max(c0, 0) : max(c0 + w, 0)] = True
    np.testing.assert_array_equal(back[:, inside], data[:, inside])
    assert not back[:, ~inside].any()
    assert (window == 0).sum() == (h * w - inside.sum()) * 3 * 2  # padding where the box leaves the slice


def test_windowed_runs_the_network_on_the_window_only():
    volume = _head(300, 200, 20)
    seen = []

    def proba(v: np.ndarray) -> np.ndarray:
        seen.append(v.shape)
        return (v[..., 1] > 0).astype(np.float32)

    out = windowed(proba, volume)
    assert seen[0][1] == seen[0][2] < 100 and out.shape == volume.shape[:3]
    np.testing.assert_array_equal(out > 0, volume[..., 1] > 0)  # back in the full slices, exactly where the head is


def test_segmenter_field_of_view_equals_the_network_on_the_crop(model_file):
    seg = Segmenter.from_checkpoint(model_file(randomise_bn=True), bf16=False)
    volume = _head(200, 120, 10)
    volume[..., 0] = volume[..., 1] // 2  # channels that differ, to catch a channel mix-up
    box = window_box(volume[..., 1])
    direct = uncrop_from_box(seg.predict_proba(crop_to_box(volume, box)), box, volume.shape[1:3])
    on = seg.with_field_of_view()
    assert (seg.field_of_view, on.field_of_view, on.with_postprocess(tta=True).field_of_view) == (False, True, True)
    np.testing.assert_allclose(on.predict_proba(volume), direct, atol=1e-5)
    assert not np.allclose(seg.predict_proba(volume), direct, atol=1e-3)  # the window changes what the net sees
    ensemble = Segmenter.ensemble([seg, seg]).with_field_of_view()
    np.testing.assert_allclose(ensemble.predict_proba(volume), direct, atol=1e-5)
    one_slice = ensemble.member_probas(volume[0])  # an H x W x 3 slice is a volume of one, as in predict_proba
    assert [p.shape for p in one_slice] == [(1, 200, 200)] * 2


def test_predict_windows_nifti_but_keeps_the_input_grid(model_file, tmp_path: Path):
    """The window is the network's view only: the mask has the input's shape and affine either way, and a
    constant 'all tumour' net marks exactly the window's voxels with it, every voxel without it."""
    flair = np.moveaxis(_head(160, 90, 8, slices=6)[..., 1], 0, 2)  # X x Y x Z, head off-centre
    affine = np.diag([-0.9, -0.9, 3.0, 1.0])
    nib.save(nib.Nifti1Image(flair, affine), tmp_path / "wide.nii.gz")
    model = model_file(bias=10.0)
    sizes = {}
    for fov in (True, False):
        out = tmp_path / f"fov{fov}"
        predict_inputs(model, [tmp_path / "wide.nii.gz"], out, field_of_view=fov)
        mask = nib.load(out / "wide_mask.nii.gz")
        assert mask.shape == flair.shape
        np.testing.assert_allclose(mask.affine, affine)
        sizes[fov] = int(np.asarray(mask.dataobj).astype(bool).sum())
    assert sizes[False] == flair.size
    assert 60 * 50 * 6 < sizes[True] < flair.size / 3  # the head's window (side ~68) on each of the 6 slices


def test_a_flair_broadcast_to_three_channels_is_windowed_like_three_copies():
    flair = np.random.default_rng(2).integers(0, 256, (3, 60, 50), dtype=np.uint8)
    shared = np.broadcast_to(flair[..., None], (*flair.shape, 3))
    for box in [(5, 4, 40, 40), (-6, -3, 70, 70)]:  # a crop, and a window reaching outside (padding)
        window = crop_to_box(shared, box)
        np.testing.assert_array_equal(window, crop_to_box(np.repeat(flair[..., None], 3, axis=-1), box))
        assert shared_channel(window) is not None  # still one channel for the normaliser
