"""Tests for gliomaseg.training.losses: hand-computed values on tiny masks."""

from __future__ import annotations

import math

import pytest
import torch

from gliomaseg.training.losses import create_loss, list_losses

BIG = 20.0  # sigmoid(20) = 1 - 2e-9: a "certain" logit
ALL_LOSSES = ["bce", "bce_dice", "dice", "focal", "focal_tversky", "tversky"]
OVERLAP_LOSSES = ["dice", "tversky", "focal_tversky"]


def diagonal_2x2() -> torch.Tensor:
    return torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])


def checkerboard(n: int = 16) -> torch.Tensor:
    idx = torch.arange(n)
    return ((idx[:, None] + idx[None, :]) % 2).float().reshape(1, 1, n, n)


def certain_logits(target: torch.Tensor, correct: bool = True) -> torch.Tensor:
    sign = 1.0 if correct else -1.0
    return sign * BIG * (2 * target - 1)


def test_registry_lists_all_losses():
    assert list_losses() == ALL_LOSSES


def test_unknown_loss_lists_names():
    with pytest.raises(ValueError) as err:
        create_loss("iou")
    for name in ALL_LOSSES:
        assert name in str(err.value)


def test_unknown_kwarg_is_named():
    with pytest.raises(ValueError, match="'beta'"):
        create_loss("dice", beta=0.5)


# logits 0 -> p = 0.5 everywhere; target diag(1, 1): TP = FP = FN = 1, sum p = sum t = 2, smooth 1.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dice", 1 - (2 * 1 + 1) / (2 + 2 + 1)),  # 0.4
        ("bce", math.log(2)),
        ("bce_dice", 0.4 + math.log(2)),
        ("focal", 0.5**2 * math.log(2)),  # (1 - p_t)^gamma * -log p_t
        ("tversky", 1 - (1 + 1) / (1 + 0.3 * 1 + 0.7 * 1 + 1)),  # 1/3
        ("focal_tversky", (1 / 3) ** 0.75),
    ],
)
def test_hand_computed_value_at_half_probability(name, expected):
    target = diagonal_2x2()
    loss = create_loss(name)(torch.zeros_like(target), target)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_perfect_prediction_is_near_zero(name):
    target = checkerboard(8)
    loss = create_loss(name)(certain_logits(target), target)
    # focal_tversky floors 1 - TI at 1e-6 to keep gradients finite: minimum 1e-6 ** 0.75 ~ 3e-5.
    assert loss.item() == pytest.approx(0.0, abs=1e-4)


# 16 x 16 checkerboard predicted inverted: TP = 0, FP = FN = 128, sum p + sum t = 256.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dice", 1 - 1 / (256 + 1)),
        ("bce", BIG),
        ("bce_dice", 1 - 1 / 257 + BIG),
        ("focal", BIG),  # (1 - p_t)^2 ~ 1
        ("tversky", 1 - 1 / (0.3 * 128 + 0.7 * 128 + 1)),
        ("focal_tversky", (1 - 1 / 129) ** 0.75),
    ],
)
def test_all_wrong_prediction_gives_maximum(name, expected):
    target = checkerboard(16)
    loss = create_loss(name)(certain_logits(target, correct=False), target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_empty_target_and_empty_prediction_is_near_zero(name):
    target = torch.zeros(2, 1, 8, 8)
    loss = create_loss(name)(torch.full_like(target, -BIG), target)
    assert loss.item() == pytest.approx(0.0, abs=1e-4)


# Empty target, one confident false-positive pixel: the smoothing bounds the penalty.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dice", 1 - 1 / (1 + 1)),
        ("tversky", 1 - 1 / (0.3 * 1 + 1)),
        ("focal_tversky", (0.3 / 1.3) ** 0.75),
    ],
)
def test_empty_target_single_false_positive(name, expected):
    target = torch.zeros(1, 1, 4, 4)
    logits = torch.full_like(target, -BIG)
    logits[0, 0, 1, 2] = BIG
    assert create_loss(name)(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_dice_is_computed_over_the_batch_by_default():
    # Sample 0: all-tumour 2x2, predicted perfectly. Sample 1: empty, one false positive.
    target = torch.zeros(2, 1, 2, 2)
    target[0] = 1
    logits = certain_logits(target)
    logits[1, 0, 0, 0] = BIG
    # Batch sums: TP = 4, sum p = 5, sum t = 4 -> 1 - (8 + 1) / (9 + 1).
    assert create_loss("dice")(logits, target).item() == pytest.approx(0.1, abs=1e-6)
    # Per sample: mean(0, 1 - 1 / 2).
    assert create_loss("dice", batch=False)(logits, target).item() == pytest.approx(0.25, abs=1e-6)


def test_tversky_penalises_false_negatives_more():
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    missed = torch.tensor([[[[BIG, -BIG], [-BIG, -BIG]]]])  # one FN
    false_alarm = torch.tensor([[[[BIG, BIG], [BIG, -BIG]]]])  # one FP
    loss = create_loss("tversky")
    assert loss(missed, target).item() == pytest.approx(1 - 2 / (1 + 0.7 + 1), abs=1e-6)
    assert loss(false_alarm, target).item() == pytest.approx(1 - 3 / (2 + 0.3 + 1), abs=1e-6)
    assert loss(missed, target) > loss(false_alarm, target)


def test_bce_dice_is_sum_of_bce_and_dice():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=gen)
    target = (torch.rand(2, 1, 8, 8, generator=gen) > 0.7).float()
    expected = create_loss("dice")(logits, target) + create_loss("bce")(logits, target)
    assert create_loss("bce_dice")(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradients_are_finite_even_on_perfect_prediction(name):
    target = checkerboard(4).repeat(2, 1, 1, 1)
    for logits in (certain_logits(target), torch.zeros_like(target)):
        logits = logits.clone().requires_grad_(True)
        create_loss(name)(logits, target).backward()
        assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_rejects_0_255_mask(name):
    target = diagonal_2x2() * 255
    with pytest.raises(ValueError, match=r"normalise masks to \{0, 1\}"):
        create_loss(name)(torch.zeros_like(target), target)


def test_accepts_integer_0_1_mask():
    target = diagonal_2x2()
    loss = create_loss("dice")(torch.zeros_like(target), target.to(torch.uint8))
    assert loss.item() == pytest.approx(0.4, abs=1e-6)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_shape_mismatch_names_both_shapes(name):
    with pytest.raises(ValueError) as err:
        create_loss(name)(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 8))
    assert "(2, 1, 4, 4)" in str(err.value)
    assert "(2, 1, 4, 8)" in str(err.value)
