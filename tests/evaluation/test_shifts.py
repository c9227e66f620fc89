"""The shift registry: every named shift on a phantom head, seeded, with the mask moved consistently."""

from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.shifts import SHIFTS, apply_shift, brain_mask, case_seed, resolve_shifts, shift_names

RANDOM = [n for n in shift_names() if n != "flair_only"]  # flair_only has nothing to draw


@pytest.fixture(scope="module")
def head() -> tuple[np.ndarray, np.ndarray]:
    image, mask = synthesise_volume(np.random.default_rng(3), 6, size=96)
    return image, mask


@pytest.mark.parametrize("name", shift_names())
def test_shape_dtype_and_inputs_untouched(head, name):
    image, mask = head
    before = image.copy(), mask.copy()
    out, out_mask = apply_shift(name, image, mask, seed=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out_mask.shape == mask.shape and out_mask.dtype == bool
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(mask, before[1])
    assert not np.array_equal(out, image)  # a shift always changes the volume


@pytest.mark.parametrize("name", shift_names())
def test_same_seed_same_volume(head, name):
    a = apply_shift(name, *head, seed=7)
    b = apply_shift(name, *head, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name", RANDOM)
def test_another_seed_another_volume(head, name):
    assert not np.array_equal(apply_shift(name, *head, seed=1)[0], apply_shift(name, *head, seed=2)[0])


@pytest.mark.parametrize("name", ["rotation", "scale"])
def test_geometric_shifts_move_the_mask_with_the_tumour(head, name):
    image, mask = head
    out, out_mask = apply_shift(name, image, mask, seed=0)
    assert not np.array_equal(out_mask, mask > 0)  # the mask moved
    # the phantom's tumour is brighter than its surroundings in FLAIR: still so under the moved mask
    flair = out[..., 1].astype(float)
    ring = np.zeros_like(out_mask)
    for k, m in enumerate(out_mask):
        from scipy import ndimage

        ring[k] = ndimage.binary_dilation(m, iterations=4) & ~m
    assert flair[out_mask].mean() > flair[ring].mean() + 10


@pytest.mark.parametrize("name", ["resolution", "bias_field", "gamma", "noise", "flair_only", "raw_intensities"])
def test_intensity_shifts_keep_the_mask(head, name):
    image, mask = head
    np.testing.assert_array_equal(apply_shift(name, image, mask, seed=0)[1], mask > 0)


def test_flair_only_copies_flair():
    image, mask = synthesise_volume(np.random.default_rng(0), 3, size=64)
    out, _ = apply_shift("flair_only", image, mask)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], image[..., 1])


def test_brain_mask_strips_a_bright_ring():
    """A disc of 'brain' inside a bright ring of 'scalp' 6 px thick: erosion removes the ring."""
    yy, xx = np.mgrid[:96, :96]
    r = np.hypot(yy - 48, xx - 48)
    volume = np.zeros((3, 96, 96, 3), np.uint8)
    volume[(r < 40)[None].repeat(3, 0)] = 120
    volume[((r >= 34) & (r < 40))[None].repeat(3, 0)] = 250
    brain = brain_mask(volume, erosion_px=6)
    assert brain[:, 48, 48].all()
    assert not (brain & (r >= 35)[None]).any()  # the ring (34-40) is gone, up to a pixel of rounding
    assert brain[0].sum() > 0.8 * np.pi * 28**2


def test_skull_strip_zeroes_outside_the_brain_and_cuts_the_mask(head):
    image, mask = head
    out, out_mask = apply_shift("skull_strip", image, mask, seed=0)
    assert (out[~out_mask.any(axis=0)[None].repeat(len(out), 0)] >= 0).all()
    assert (out_mask <= (mask > 0)).all()
    assert (out.sum(axis=-1) == 0).mean() > (image.sum(axis=-1) == 0).mean()


def test_raw_intensities_go_through_the_nifti_scaling(head):
    image, _ = head
    out, _ = apply_shift("raw_intensities", image, None, seed=0)
    for c in range(3):
        assert np.corrcoef(out[..., c].ravel(), image[..., c].ravel())[0, 1] > 0.95
    assert out.max() == 255  # the 99.5th percentile maps to 255


def test_registry_names_and_errors():
    assert shift_names() == list(SHIFTS) and "combined" in SHIFTS and "all" not in SHIFTS
    assert resolve_shifts(["all"]) == shift_names()
    assert resolve_shifts(["gamma", "rotation", "gamma"]) == ["gamma", "rotation"]
    with pytest.raises(GliomasegError, match="choose from .*rotation"):
        resolve_shifts(["rotate"])
    with pytest.raises(GliomasegError, match="unknown shift 'blur'.*resolution"):
        apply_shift("blur", np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(GliomasegError, match="uint8"):
        apply_shift("gamma", np.zeros((1, 32, 32, 3), np.float32))
    assert case_seed(0, "gamma", "P1") == case_seed(0, "gamma", "P1") != case_seed(0, "gamma", "P2")
