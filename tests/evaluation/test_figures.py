"""Figures: outlines, overlays, slice choice, GIFs, overlays per patient, Dice distribution, curves."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from gliomaseg.evaluation.figures import (
    outline,
    overlay_frames,
    plot_dice_distribution,
    plot_learning_curves,
    plot_patient_overlays,
    save_gif,
    select_slices,
)

GREEN, RED, YELLOW = [0, 255, 0], [255, 0, 0], [255, 255, 0]


def _square(size, lo, hi):
    m = np.zeros((size, size), dtype=bool)
    m[lo:hi, lo:hi] = True
    return m


def test_outline_of_a_square_is_its_ring():
    ring = outline(_square(5, 1, 4))
    expected = _square(5, 1, 4)
    expected[2, 2] = False
    np.testing.assert_array_equal(ring, expected)
    # a mask touching the image border is outlined there too; slices of a stack are separate
    full = np.ones((2, 3, 3), dtype=bool)
    got = outline(full)
    assert got[:, 1, 1].tolist() == [False, False]
    assert got.sum() == 2 * 8


def test_overlay_colours_and_downscaling():
    images = np.full((1, 8, 8, 3), 7, dtype=np.uint8)
    images[..., 1] = 100  # FLAIR is the grey background
    truth = _square(8, 0, 4)[None]
    pred = _square(8, 2, 6)[None]
    frame = overlay_frames(images, truth, pred, max_size=None)[0]
    assert frame.shape == (8, 8, 3)
    assert frame[7, 7].tolist() == [100, 100, 100]
    assert frame[0, 0].tolist() == GREEN  # truth outline only
    assert frame[5, 5].tolist() == RED  # prediction outline only
    assert frame[3, 2].tolist() == YELLOW  # both outlines cross here
    assert frame[3, 3].tolist() == GREEN  # inside the prediction, on the truth outline
    small = overlay_frames(np.zeros((3, 256, 256, 3), np.uint8), np.zeros((3, 256, 256)), np.zeros((3, 256, 256)))
    assert small.shape == (3, 128, 128, 3)
    # a one-pixel outline survives a 2x downscale
    tiny = overlay_frames(images, truth, np.zeros_like(truth), max_size=4)[0]
    assert tiny.shape == (4, 4, 3)
    assert tiny[0, 0].tolist() == GREEN and tiny[3, 3].tolist() == [100, 100, 100]


def test_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="S x H x W"):
        overlay_frames(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8)), np.zeros((1, 8, 8)))


@pytest.mark.parametrize(
    ("truth_px", "pred_px", "n", "expected"),
    [
        ([1, 2, 3, 9, 2, 1, 1, 0], [0] * 8, 2, [3, 5]),  # spread over the tumour, with its largest slice
        ([1, 2, 3, 9, 2, 1, 1, 0], [0] * 8, 3, [1, 3, 5]),
        ([0, 5, 3, 0, 0], [0, 0, 0, 7, 0], 2, [1, 2]),  # tumour slices first
        ([0, 5, 3, 0, 0], [0, 0, 0, 7, 0], 3, [1, 2, 3]),  # then false positives
        ([0, 5, 3, 0, 0], [0, 0, 0, 7, 0], 4, [0, 1, 2, 3]),  # then evenly spaced
        ([0, 0, 0], [0, 0, 0], 5, [0, 1, 2]),  # never more than there are
    ],
)
def test_select_slices(truth_px, pred_px, n, expected):
    def stack(counts):
        m = np.zeros((len(counts), 4, 4), dtype=bool)
        for i, c in enumerate(counts):
            m[i].flat[:c] = True
        return m

    assert select_slices(stack(truth_px), stack(pred_px), n) == expected


def test_gif_has_one_small_frame_per_slice(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    truth = np.zeros((5, 64, 64), bool)
    truth[:, 20:40, 20:40] = True
    path = save_gif(tmp_path / "p.gif", images, truth, np.roll(truth, 5, axis=2), max_size=32)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (5, 32, 32)


def test_patient_overlays_and_dice_distribution_write_pngs(tmp_path):
    images = np.zeros((4, 32, 32, 3), np.uint8)
    truth = np.zeros((4, 32, 32), bool)
    truth[1:3, 10:20, 10:20] = True
    path = plot_patient_overlays(tmp_path / "o.png", images, truth, truth, title="P (Dice 1.000)", n=3)
    assert iio.imread(path).ndim == 3
    path = plot_dice_distribution(tmp_path / "d.png", [0.2, 0.8, np.nan, 0.9])
    assert path.stat().st_size > 0


def test_learning_curves(tmp_path):
    assert plot_learning_curves(tmp_path / "lc.png", pd.DataFrame()) is None
    assert plot_learning_curves(tmp_path / "lc.png", pd.DataFrame({"step": [1], "foo": [2]})) is None
    log = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1],
            "train/loss_epoch": [0.9, np.nan, 0.7, np.nan],
            "val/loss": [np.nan, 0.8, np.nan, 0.6],
            "val/dice_patient": [np.nan, 0.2, np.nan, 0.5],
        }
    )
    path = plot_learning_curves(tmp_path / "lc.png", log, best_epoch=1)
    assert path == tmp_path / "lc.png" and path.is_file()
