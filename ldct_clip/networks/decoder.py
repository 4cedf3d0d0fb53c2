"""Building blocks of the learnable UNet-style decoder of CLIPDenoiser."""

from collections.abc import Sequence

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ConvBlock", "UpBlock", "build_up_path"]


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by LeakyReLU(0.2). Keys: ``block.0`` and ``block.2``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Optional bilinear x2 upsampling (``align_corners=True``), concatenation with a skip, then ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool, bias: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv_block = ConvBlock(in_channels, out_channels, bias=bias)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv_block(x)


def build_up_path(feature_channels: Sequence[int], image_channels: int, bias: bool = False) -> nn.ModuleList:
    """Build the five decoder blocks over ``[stem, layer1, layer2, layer3]`` features and the image.

    ``feature_channels`` are ``(w, 4w, 8w, 16w)``; block widths are ``8w, 4w, 2w, w, w``. Block 0 maps
    layer3 without upsampling; blocks 1-4 upsample and concatenate layer2, layer1, the stem and the image.
    """
    c_stem, c1, c2, c3 = (int(c) for c in feature_channels)
    widths = (8 * c_stem, 4 * c_stem, 2 * c_stem, c_stem, c_stem)
    skips = (c2, c1, c_stem, image_channels)
    blocks = [UpBlock(c3, widths[0], upsample=False, bias=bias)]
    for i, skip in enumerate(skips):
        blocks.append(UpBlock(widths[i] + skip, widths[i + 1], upsample=True, bias=bias))
    return nn.ModuleList(blocks)
