"""Tests of the augmentation settings and pipelines (alignment with the mask is tested through the dataset)."""

from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.data.augment import AugmentConfig, build_augmentation

NO_AUG = AugmentConfig(enabled=False)
FLIPS = AugmentConfig(hflip_p=0.5, vflip_p=0.5, affine_p=0.0, brightness_contrast_p=0.0)


def test_brightness_contrast_does_not_clip_zscores() -> None:
    cfg = AugmentConfig(hflip_p=0.0, vflip_p=0.0, affine_p=0.0, brightness_contrast_p=1.0)
    aug = build_augmentation(cfg, seed=0)
    img = np.linspace(-3, 5, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    out = aug(image=img, mask=np.zeros((8, 8), np.uint8))["image"]
    assert out.dtype == np.float32 and out.min() < -2 and out.max() > 4
    # out = alpha * img + beta with alpha in [0.8, 1.2], beta in [-0.2, 0.2]
    alpha = (out.ravel()[-1] - out.ravel()[0]) / (img.ravel()[-1] - img.ravel()[0])
    beta = out.ravel()[0] - alpha * img.ravel()[0]
    assert 0.8 <= alpha <= 1.2 and -0.2 <= beta <= 0.2
    np.testing.assert_allclose(out, alpha * img + beta, atol=1e-5)


def test_missing_sequence_copies_flair_into_pre_post_or_both() -> None:
    cfg = AugmentConfig(hflip_p=0.0, vflip_p=0.0, affine_p=0.0, brightness_contrast_p=0.0, missing_sequence_p=1.0)
    aug = build_augmentation(cfg, seed=0)
    img = np.stack([np.full((4, 4), c, np.float32) for c in (10.0, 20.0, 30.0)], axis=-1)
    mask = np.eye(4, dtype=np.uint8)
    seen = set()
    for _ in range(40):
        out = aug(image=img, mask=mask)
        np.testing.assert_array_equal(out["mask"], mask)
        assert out["image"][..., 1].max() == 20.0  # FLAIR itself never changes
        seen.add(tuple(out["image"][0, 0]))
    assert seen == {(20.0, 20.0, 30.0), (10.0, 20.0, 20.0), (20.0, 20.0, 20.0)}
    assert img[0, 0, 0] == 10.0  # the input is not modified in place


def test_no_augmentation_pipeline() -> None:
    assert build_augmentation(None) is None
    assert build_augmentation(NO_AUG) is None
    off = AugmentConfig(hflip_p=0.0, vflip_p=0.0, affine_p=0.0, brightness_contrast_p=0.0)
    assert build_augmentation(off) is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"hflip_p": 1.5}, "hflip_p=1.5"),
        ({"rotate_deg": -1.0}, "rotate_deg=-1.0"),
        ({"scale": 2.0}, "scale=2.0"),
    ],
)
def test_augment_config_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AugmentConfig(**kwargs)


def test_augment_config_roundtrip() -> None:
    assert AugmentConfig.from_dict(FLIPS.to_dict()) == FLIPS
    with pytest.raises(ValueError, match="jitter"):
        AugmentConfig.from_dict({"jitter": 1})
