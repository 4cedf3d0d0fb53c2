"""The frozen CLIP ResNet trunk that produces the dense features of CLIPDenoiser.

Only the parts of open_clip's ``ModifiedResNet`` that the denoiser uses are kept: the three-conv stem and
``layer1..layer3``.  ``layer4`` and the attention pool are built by open_clip and dropped straight away, so
they are never computed and never stored.
"""

from collections.abc import Sequence

from typing import List

import torch
import torch.nn as nn
from open_clip import get_model_config
from open_clip.modified_resnet import ModifiedResNet

from ldct_clip.errors import LdctClipError

__all__ = ["CLIPResNetEncoder", "resnet_config"]


def resnet_config(name: str) -> tuple[list[int], int]:
    """Return ``(layers, width)`` of an open_clip ResNet model name such as ``"RN50"`` or ``"RN50x4"``."""
    cfg = get_model_config(name)
    vision = (cfg or {}).get("vision_cfg", {})
    layers = vision.get("layers")
    if not isinstance(layers, (list, tuple)):
        raise LdctClipError(
            f"{name!r} is not an open_clip ResNet model; use one of RN50, RN101, RN50x4, RN50x16, RN50x64, "
            "or give explicit `layers` and `width`."
        )
    return list(layers), int(vision["width"])


class CLIPResNetEncoder(nn.Module):
    """CLIP ModifiedResNet trunk returning multi-scale features.

    Args:
        layers: blocks per stage of the ResNet (four values, as open_clip; the fourth only shapes the
            checkpoint layout of the authors' files and is not built).
        width: stem width (64 for RN50).

    Input: ``(B, 3, H, W)`` float in [0, 1] (no CLIP mean/std normalisation), H and W multiples of 32.
    Output: ``[stem, layer1, layer2, layer3]`` with shapes
    ``(B, w, H/2, W/2)``, ``(B, 4w, H/4, W/4)``, ``(B, 8w, H/8, W/8)``, ``(B, 16w, H/16, W/16)``.
    """

    def __init__(self, layers: Sequence[int], width: int) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must have four values, got {list(layers)}")
        self.layers = [int(n) for n in layers]
        self.width = int(width)
        # open_clip builds the whole visual tower; adopt its trunk modules under the same names so the
        # state-dict keys match open_clip's and the authors' checkpoints (``encoder.conv1.weight``, ...).
        full = ModifiedResNet(
            layers=self.layers, output_dim=32 * self.width, heads=max(1, self.width // 2), image_size=32, width=self.width
        )
        for name in ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3", "avgpool"):
            setattr(self, name, getattr(full, name))
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3

    @property
    def feature_channels(self) -> tuple[int, int, int, int]:
        w = self.width
        return (w, 4 * w, 8 * w, 16 * w)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        stem = self.act3(self.bn3(self.conv3(x)))
        f1 = self.layer1(self.avgpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3]
