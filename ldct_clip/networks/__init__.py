"""Networks of ldct-clip: nothing here knows about files or HU."""

from .clip_denoiser import CLIPDenoiser
from .encoder import CLIPResNetEncoder, resnet_config

__all__ = ["CLIPDenoiser", "CLIPResNetEncoder", "resnet_config"]
