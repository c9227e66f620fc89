"""Model registry: the only place that knows the segmentation network names.

Every model maps an image ``B x in_channels x H x W`` to raw logits ``B x out_channels x H x W``
(no sigmoid: losses and post-processing apply it). All networks downsample four times by 2, so
``H`` and ``W`` must be divisible by :data:`SIZE_MULTIPLE` (16); use :func:`check_spatial_size`
before feeding arbitrary images (the 256 x 256 slices of ``kaggle_3m`` are fine).

Example::

    model = create_model("unet", in_channels=3, out_channels=1, features=32)
    logits = model(torch.zeros(2, 3, 256, 256))  # 2 x 1 x 256 x 256
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from monai.networks.layers import Norm
from monai.networks.nets import AttentionUnet, BasicUNetPlusPlus
from monai.networks.nets import UNet as MonaiUNet
from torch import nn

from gliomaseg.data.normalise import SIZE_MULTIPLE
from gliomaseg.errors import GliomasegError
from gliomaseg.training.registry import Registry

__all__ = [
    "MODELS",
    "SIZE_MULTIPLE",
    "BudaUNet",
    "UNetPlusPlus",
    "check_spatial_size",
    "count_parameters",
    "create_model",
    "list_models",
]


def _unet_block(in_channels: int, features: int, name: str) -> nn.Sequential:
    # Layer names follow mateuszbuda/brain-segmentation-pytorch so its published state dicts
    # (trained on this very dataset) load into BudaUNet unchanged.
    return nn.Sequential(
        OrderedDict(
            [
                (f"{name}conv1", nn.Conv2d(in_channels, features, kernel_size=3, padding=1, bias=False)),
                (f"{name}norm1", nn.BatchNorm2d(features)),
                (f"{name}relu1", nn.ReLU(inplace=True)),
                (f"{name}conv2", nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False)),
                (f"{name}norm2", nn.BatchNorm2d(features)),
                (f"{name}relu2", nn.ReLU(inplace=True)),
            ]
        )
    )


class BudaUNet(nn.Module):
    """The classic 2D U-Net of Buda et al. (2019), returning logits.

    Four levels of (3x3 conv + BatchNorm + ReLU) x 2 with 2x2 max-pooling, a bottleneck with
    ``16 * features`` channels, 2x2 stride-2 transposed convolutions up, skip concatenation and a
    final 1x1 convolution. It matches ``unet.py`` of mateuszbuda/brain-segmentation-pytorch
    (parameter names included) except that the final sigmoid is left out.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: channels of the first level; level ``k`` has ``features * 2**k``.
        dropout: probability of ``Dropout2d`` on the bottleneck output (0 disables it; it has
            no parameters, so state dicts stay compatible).

    Shapes:
        input ``B x in_channels x H x W``, output ``B x out_channels x H x W``, ``H, W`` divisible by 16.

    Reference:
        M. Buda, A. Saha, M. A. Mazurowski, "Association of genomic subtypes of lower-grade gliomas
        with shape features automatically extracted by a deep learning algorithm",
        Computers in Biology and Medicine, 2019.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, features: int = 32, dropout: float = 0.0):
        super().__init__()
        f = features
        self.encoder1 = _unet_block(in_channels, f, "enc1")
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder2 = _unet_block(f, 2 * f, "enc2")
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder3 = _unet_block(2 * f, 4 * f, "enc3")
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder4 = _unet_block(4 * f, 8 * f, "enc4")
        self.pool4 = nn.MaxPool2d(kernel_size=2, stride=2)

        self.bottleneck = _unet_block(8 * f, 16 * f, "bottleneck")
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

        self.upconv4 = nn.ConvTranspose2d(16 * f, 8 * f, kernel_size=2, stride=2)
        self.decoder4 = _unet_block(16 * f, 8 * f, "dec4")
        self.upconv3 = nn.ConvTranspose2d(8 * f, 4 * f, kernel_size=2, stride=2)
        self.decoder3 = _unet_block(8 * f, 4 * f, "dec3")
        self.upconv2 = nn.ConvTranspose2d(4 * f, 2 * f, kernel_size=2, stride=2)
        self.decoder2 = _unet_block(4 * f, 2 * f, "dec2")
        self.upconv1 = nn.ConvTranspose2d(2 * f, f, kernel_size=2, stride=2)
        self.decoder1 = _unet_block(2 * f, f, "dec1")

        self.conv = nn.Conv2d(f, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: image ``B x in_channels x H x W``.

        Returns:
            logits ``B x out_channels x H x W``.
        """
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(self.pool1(enc1))
        enc3 = self.encoder3(self.pool2(enc2))
        enc4 = self.encoder4(self.pool3(enc3))
        bottleneck = self.dropout(self.bottleneck(self.pool4(enc4)))

        dec4 = self.decoder4(torch.cat((self.upconv4(bottleneck), enc4), dim=1))
        dec3 = self.decoder3(torch.cat((self.upconv3(dec4), enc3), dim=1))
        dec2 = self.decoder2(torch.cat((self.upconv2(dec3), enc2), dim=1))
        dec1 = self.decoder1(torch.cat((self.upconv1(dec2), enc1), dim=1))
        return self.conv(dec1)


class UNetPlusPlus(nn.Module):
    """MONAI ``BasicUNetPlusPlus`` (2D, no deep supervision) returning one tensor instead of a list.

    MONAI returns ``[logits]``; a single tensor keeps the interface uniform with the other
    models and makes ONNX export produce one named output. The unused deep-supervision heads
    are replaced by ``nn.Identity`` so every parameter receives a gradient.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: base width ``f``; MONAI gets ``features=(f, f, 2f, 4f, 8f, f)``.
        **kwargs: forwarded to ``BasicUNetPlusPlus`` (``dropout``, ``act``, ``norm``, ``upsample``).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, features: int = 32, **kwargs: Any):
        super().__init__()
        f = features
        self.net = BasicUNetPlusPlus(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            features=(f, f, 2 * f, 4 * f, 8 * f, f),
            deep_supervision=False,
            **kwargs,
        )
        # MONAI builds and runs the deep-supervision heads even when their outputs are dropped;
        # as parameters they would never get gradients (confusing DDP and parameter counts).
        for head in ("final_conv_0_1", "final_conv_0_2", "final_conv_0_3"):
            setattr(self.net, head, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: image ``B x in_channels x H x W``.

        Returns:
            logits ``B x out_channels x H x W``.
        """
        # Without deep supervision MONAI's list holds only the final (full-resolution) output.
        return self.net(x)[0]


MODELS: Registry[nn.Module] = Registry("model", fixed=("in_channels", "out_channels", "features"))
"""The model registry: the only list of network names (options come from the builders' signatures)."""


def _levels(features: int) -> dict[str, tuple[int, ...]]:
    """Channels and strides of MONAI's encoder-decoder nets with the classic U-Net's 5 levels."""
    f = features
    return {"channels": (f, 2 * f, 4 * f, 8 * f, 16 * f), "strides": (2, 2, 2, 2)}


@MODELS.register("unet", "classic U-Net of Buda et al. 2019 (BatchNorm, ReLU)")
def _build_unet(in_channels: int, out_channels: int, features: int, dropout: float = 0.0) -> nn.Module:
    return BudaUNet(in_channels, out_channels, features, dropout=dropout)


@MODELS.register("resunet", "MONAI UNet with 2 residual units per level and BatchNorm")
def _build_resunet(
    in_channels: int,
    out_channels: int,
    features: int,
    dropout: float = 0.0,
    num_res_units: int = 2,
    act: tuple | str = "PRELU",
    norm: tuple | str = Norm.BATCH,
    kernel_size: int = 3,
    up_kernel_size: int = 3,
) -> nn.Module:
    return MonaiUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        **_levels(features),
        kernel_size=kernel_size,
        up_kernel_size=up_kernel_size,
        num_res_units=num_res_units,
        act=act,
        norm=norm,
        dropout=dropout,
    )


@MODELS.register("attention_unet", "MONAI AttentionUnet (attention-gated skips)")
def _build_attention_unet(
    in_channels: int,
    out_channels: int,
    features: int,
    dropout: float = 0.0,
    kernel_size: int = 3,
    up_kernel_size: int = 3,
) -> nn.Module:
    return AttentionUnet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        **_levels(features),
        kernel_size=kernel_size,
        up_kernel_size=up_kernel_size,
        dropout=dropout,
    )


@MODELS.register("unetpp", "MONAI BasicUNetPlusPlus (nested dense skips), final output only")
def _build_unetpp(
    in_channels: int,
    out_channels: int,
    features: int,
    dropout: float = 0.0,
    act: tuple | str = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
    norm: tuple | str = ("instance", {"affine": True}),
    upsample: str = "deconv",
) -> nn.Module:
    return UNetPlusPlus(in_channels, out_channels, features, dropout=dropout, act=act, norm=norm, upsample=upsample)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted.

    Returns:
        the registered model names.
    """
    return MODELS.names()


def _check_positive_int(value: Any, what: str) -> None:
    # bool is an int subclass, but `features=True` is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GliomasegError(f"{what} must be a positive integer, got {value!r}.")


def create_model(
    name: str, in_channels: int = 3, out_channels: int = 1, features: int = 32, **kwargs: Any
) -> nn.Module:
    """Build a 2D segmentation network by name.

    Args:
        name: one of :func:`list_models` (``attention_unet``, ``resunet``, ``unet``, ``unetpp``).
        in_channels: image channels (3 for pre-contrast, FLAIR, post-contrast).
        out_channels: output channels (1 for binary tumour segmentation).
        features: width of the first level; deeper levels double it (bottleneck ``16 * features``
            for ``unet``/``resunet``/``attention_unet``, ``8 * features`` for ``unetpp``).
        **kwargs: extra model options: the keyword parameters of the model's builder
            (``MODELS.options(name)``; e.g. ``dropout`` for every model, ``num_res_units`` for
            ``resunet``).

    Returns:
        a module mapping ``B x in_channels x H x W`` to logits ``B x out_channels x H x W``;
        ``H`` and ``W`` must be divisible by :data:`SIZE_MULTIPLE` (16).

    Raises:
        GliomasegError: unknown ``name`` (the message lists valid names), ``in_channels``,
            ``out_channels`` or ``features`` not a positive integer, or keyword arguments the
            model does not accept (the message names them and lists the accepted ones).

    Example:
        >>> import torch
        >>> model = create_model("unet", in_channels=3, out_channels=1, features=8)
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """
    MODELS.options(name)  # an unknown name is reported before the sizes
    _check_positive_int(in_channels, "in_channels")
    _check_positive_int(out_channels, "out_channels")
    _check_positive_int(features, "features")
    return MODELS.create(name, in_channels, out_channels, features, **kwargs)


def check_spatial_size(height: int, width: int) -> None:
    """Check that an input size suits the four stride-2 downsamplings of every model.

    Args:
        height: image height in pixels.
        width: image width in pixels.

    Raises:
        GliomasegError: if either side is not a positive multiple of :data:`SIZE_MULTIPLE`; the
            message suggests the nearest valid size to resize or pad to.
    """
    for side, value in (("height", height), ("width", width)):
        if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
            valid = max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
            raise GliomasegError(
                f"Image {side} {value} is not a multiple of {SIZE_MULTIPLE}; "
                f"resize or pad to e.g. {valid} (the slices of kaggle_3m are 256 x 256)."
            )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model``.

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        the total number of scalar parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
