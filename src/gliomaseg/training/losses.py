"""Loss registry: the only place that knows the loss names.

Every loss takes ``(logits, target)``, both ``B x 1 x H x W`` (``target`` float in {0, 1}),
applies the sigmoid itself and returns a scalar.

Choices shared by the overlap losses (``dice``, ``bce_dice``, ``tversky``, ``focal_tversky``):

- ``batch=True``: true/false positives are summed over the whole batch before the ratio is
  taken, so a slice without tumour (about 2/3 of ``kaggle_3m``) does not get its own ill-posed
  ratio; the per-slice alternative (``batch=False``) is noisy and pushes every empty slice to a
  loss near 1 for any faint false positive.
- ``smooth=1.0`` added to numerator and denominator (as in Buda et al.'s ``DiceLoss``). Over a
  batch of 256 x 256 slices the sums are in the thousands, so it hardly biases positive batches,
  while an all-empty batch gets ``1 - 1 / (1 + sum(p))``: ~0 when nothing is predicted and a
  gentle, bounded penalty ``sum(p) / (1 + sum(p))`` for false positives instead of 0/0.

Both can be overridden: ``create_loss("dice", batch=False, smooth=1e-5)``.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.losses import DiceCELoss, DiceLoss, FocalLoss, TverskyLoss
from torch import nn

from gliomaseg.errors import GliomasegError
from gliomaseg.training.registry import Registry

__all__ = ["LOSSES", "BinarySegmentationLoss", "FocalTverskyLoss", "create_loss", "list_losses"]

DEFAULT_SMOOTH = 1.0
DEFAULT_BATCH = True


class BinarySegmentationLoss(nn.Module):
    """Validates ``(logits, target)`` and delegates to a wrapped loss.

    Args:
        loss: module computing the loss from logits and a {0, 1} target of the same shape.

    Raises (in ``forward``):
        GliomasegError: shapes differ or are not ``B x C x H x W``, or ``target`` has values other
            than 0 and 1 (such as a 0/255 mask).
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args:
            logits: raw network output ``B x 1 x H x W``.
            target: ground truth ``B x 1 x H x W`` in {0, 1} (any dtype; cast to ``logits``' dtype).

        Returns:
            the scalar loss.
        """
        if logits.shape != target.shape or logits.dim() != 4:
            raise GliomasegError(
                f"logits and target must both be B x 1 x H x W with equal shapes, got logits "
                f"{tuple(logits.shape)} and target {tuple(target.shape)}."
            )
        # One elementwise pass: much cheaper than the network, and it catches 0/255 masks, which
        # would otherwise train silently on a loss without meaning.
        if ((target != 0) & (target != 1)).any():
            raise GliomasegError(
                f"target must contain only 0 and 1, got values in [{target.min().item()}, "
                f"{target.max().item()}]; normalise masks to {{0, 1}} (e.g. mask / 255 or mask > 0)."
            )
        return self.loss(logits, target.to(logits.dtype))

    def extra_repr(self) -> str:
        return "checks: shape match, target in {0, 1}"


class FocalTverskyLoss(nn.Module):
    """Focal Tversky loss ``(1 - TI) ** gamma`` of Abraham & Khan (2019), on MONAI's Tversky index.

    ``TI = (TP + s) / (TP + alpha * FP + beta * FN + s)`` with sigmoid probabilities; ``gamma < 1``
    boosts the gradient of examples that are already fairly good (small ``1 - TI``), which helps
    small lesions once training has converged on the large ones.

    Args:
        alpha: weight of false positives.
        beta: weight of false negatives.
        gamma: focal exponent (the paper's ``1 / gamma = 0.75``).
        smooth: added to numerator and denominator of ``TI``.
        batch: compute ``TI`` over the whole batch rather than per sample.
    """

    # (1 - TI) ** gamma has an infinite derivative at 0 for gamma < 1; flooring 1 - TI keeps
    # gradients finite on perfect predictions (minimum loss eps ** gamma ~ 3e-5).
    eps = 1e-6

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = DEFAULT_SMOOTH,
        batch: bool = DEFAULT_BATCH,
    ):
        super().__init__()
        if gamma <= 0:
            raise GliomasegError(f"gamma must be positive, got {gamma!r}.")
        self.gamma = gamma
        self.tversky = TverskyLoss(
            sigmoid=True,
            alpha=alpha,
            beta=beta,
            smooth_nr=smooth,
            smooth_dr=smooth,
            batch=batch,
            reduction="none",
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args:
            logits: raw network output ``B x 1 x H x W``.
            target: ground truth ``B x 1 x H x W`` in {0, 1}.

        Returns:
            the scalar loss (mean over samples, or a single value when ``batch=True``).
        """
        one_minus_ti = self.tversky(logits, target)
        return one_minus_ti.clamp_min(self.eps).pow(self.gamma).mean()


LOSSES: Registry[nn.Module] = Registry("loss")
"""The loss registry: the only list of loss names (options come from the builders' signatures)."""


@LOSSES.register("dice", "soft Dice on sigmoid probabilities (the seed's loss)")
def _dice(smooth: float = DEFAULT_SMOOTH, batch: bool = DEFAULT_BATCH) -> nn.Module:
    return DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth, batch=batch)


@LOSSES.register("bce", "binary cross-entropy with logits, mean over pixels")
def _bce(pos_weight: float | None = None) -> nn.Module:
    weight = None if pos_weight is None else torch.tensor([float(pos_weight)])
    return nn.BCEWithLogitsLoss(pos_weight=weight)


@LOSSES.register("bce_dice", "lambda_dice * dice + lambda_bce * bce")
def _bce_dice(
    smooth: float = DEFAULT_SMOOTH,
    batch: bool = DEFAULT_BATCH,
    lambda_dice: float = 1.0,
    lambda_bce: float = 1.0,
) -> nn.Module:
    # MONAI's DiceCELoss switches to BCE-with-logits for single-channel input, which is exactly
    # dice + bce here (checked in the loss tests).
    return DiceCELoss(
        sigmoid=True,
        smooth_nr=smooth,
        smooth_dr=smooth,
        batch=batch,
        lambda_dice=lambda_dice,
        lambda_ce=lambda_bce,
    )


@LOSSES.register("focal", "sigmoid focal loss (gamma 2), mean over pixels")
def _focal(gamma: float = 2.0, alpha: float | None = None) -> nn.Module:
    return FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)


@LOSSES.register("tversky", "1 - Tversky index; alpha 0.3 (FP) < beta 0.7 (FN) penalises missed tumour more")
def _tversky(
    alpha: float = 0.3, beta: float = 0.7, smooth: float = DEFAULT_SMOOTH, batch: bool = DEFAULT_BATCH
) -> nn.Module:
    return TverskyLoss(sigmoid=True, alpha=alpha, beta=beta, smooth_nr=smooth, smooth_dr=smooth, batch=batch)


@LOSSES.register("focal_tversky", "(1 - Tversky index) ** 0.75")
def _focal_tversky(
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    smooth: float = DEFAULT_SMOOTH,
    batch: bool = DEFAULT_BATCH,
) -> nn.Module:
    return FocalTverskyLoss(alpha=alpha, beta=beta, gamma=gamma, smooth=smooth, batch=batch)


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`, sorted.

    Returns:
        the registered loss names.
    """
    return LOSSES.names()


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a binary segmentation loss by name.

    Losses (``p = sigmoid(logits)``, sums over the batch unless ``batch=False``):

    - ``dice``: ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)``, ``s = smooth = 1``. Range [0, 1).
    - ``bce``: mean binary cross-entropy; optional ``pos_weight`` for the tumour class.
    - ``bce_dice``: ``dice + bce`` (``lambda_dice``, ``lambda_bce`` weight them).
    - ``focal``: mean of ``-(1 - p_t) ** gamma * log(p_t)``, ``gamma = 2``; optional ``alpha``.
    - ``tversky``: ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` with ``alpha = 0.3``,
      ``beta = 0.7``: a missed tumour pixel costs more than a false alarm, which favours recall
      on small lesions.
    - ``focal_tversky``: ``(1 - TI) ** gamma``, ``gamma = 0.75``, same ``alpha``/``beta``.

    With an empty target and an empty prediction the overlap losses are ~0 (thanks to the
    smoothing), ``bce`` and ``focal`` are ~0 too.

    Args:
        name: one of :func:`list_losses`.
        **kwargs: options of that loss (see above); e.g. ``smooth``, ``batch``, ``alpha``, ``gamma``.

    Returns:
        a module ``loss(logits, target) -> scalar`` for ``B x 1 x H x W`` inputs that rejects a
        target outside {0, 1} or a shape mismatch with ``ValueError``.

    Raises:
        GliomasegError: unknown ``name`` (the message lists valid names) or keyword arguments the
            loss does not accept (the message names them and lists the accepted ones).
    """
    return BinarySegmentationLoss(LOSSES.create(name, **kwargs))
