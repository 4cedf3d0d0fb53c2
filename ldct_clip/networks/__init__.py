"""Networks of ldct-clip: nothing here knows about files or HU."""

from ldct_clip.networks.clip_denoiser import CLIPDenoiser
from ldct_clip.networks.encoder import CLIPResNetEncoder, resnet_config

__all__ = ["CLIPDenoiser", "CLIPResNetEncoder", "resnet_config"]
