"""The network, :class:`CLIPDenoiser`: the frozen CLIP ResNet trunk (:mod:`~ldct_clip.networks.encoder`) and the
learnable UNet-style decoder (:mod:`~ldct_clip.networks.decoder`).  Tensors in, tensors out: nothing here knows
about files or HU."""

from ldct_clip.networks.clip_denoiser import CLIPDenoiser
from ldct_clip.networks.encoder import CLIPResNetEncoder, resnet_config
from ldct_clip.networks.noise_level import NoiseLevelFiLM, estimate_noise_level, gate_openness, gate_tensor

__all__ = ["CLIPDenoiser", "CLIPResNetEncoder", "NoiseLevelFiLM", "estimate_noise_level", "gate_openness",
           "gate_tensor", "resnet_config"]
