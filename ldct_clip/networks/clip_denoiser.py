"""CLIPDenoiser: frozen CLIP ResNet features + learnable UNet-style decoder (Cheng, Liang, Tan, CVPR 2024)."""

from collections.abc import Iterator, Sequence

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ldct_clip.networks.decoder import build_up_path
from ldct_clip.networks.encoder import CLIPResNetEncoder, resnet_config
from ldct_clip.networks.noise_level import NoiseLevelFiLM, estimate_noise_level, gate_openness, gate_tensor

__all__ = ["CLIPDenoiser"]


class CLIPDenoiser(nn.Module):
    """Denoise an image with dense features of a frozen CLIP ResNet.

    Args:
        in_channels: 1 (CT; a learnable 1x1 conv maps the image to 3 channels) or 3 (RGB).
        out_channels: output channels, usually ``in_channels``.
        encoder: open_clip ResNet name (``"RN50"``, ``"RN101"``, ``"RN50x4"``, ...). Ignored when
            ``layers`` and ``width`` are given (small test models).
        layers: ResNet blocks per stage, four values.
        width: ResNet stem width.
        encoder_weights: ``None`` (random init), an open_clip pretrained tag such as ``"openai"``, or a
            local file (OpenAI TorchScript ``RN50.pt`` or a state dict with ``visual.`` keys); resolved by
            :func:`ldct_clip.weights.load_encoder_weights`.
        bias: conv biases in the decoder and the adapter (``False`` for the released CT models).
        aug_level: progressive feature augmentation; in training mode encoder feature ``i = 1..4`` is
            multiplied by ``1 + N(0, (i * aug_level)^2)``. 0 disables it.
        encoder_bn: ``"train"`` (as the reference: the frozen encoder's BatchNorm uses batch statistics and
            updates its running statistics in training mode) or ``"frozen"`` (always eval mode).
        head_precision: what runs in float32 under autocast (bf16/fp16). The output is a full-range image, so
            rounding it, or the image skip that carries it, to 8 mantissa bits costs several HU:
            ``"split"`` (default) runs the 64-channel half of the first full-resolution conv in the autocast
            dtype and keeps the 1 -> 3 adapter, the image-skip half of that conv, the second full-resolution
            conv and the last conv in float32 (rounding the second conv's output to bf16 costs ~10 HU);
            ``"fp32"`` keeps the whole full-resolution block in float32; ``"autocast"`` leaves everything to
            autocast (fastest, several HU of error).
        noise_conditioning: scale and shift the decoder blocks 0-3 by the input's noise level, estimated from
            the image itself (:class:`~ldct_clip.networks.noise_level.NoiseLevelFiLM`, keys ``noise_film.*``;
            not in the paper: an extension for one model over a wide noise range). Starts as an identity.
        noise_gate: ``(low, high)`` scale-1 noise levels, in input units, below which the conditioning is an
            identity and above which it acts fully (``NoiseLevelFiLM``'s ``gate``; saved with the weights).
        noise_expert: constructor arguments of a second ``CLIPDenoiser``, trained for noisier input, that takes over
            above ``noise_expert_gate`` (keys ``noise_expert.*``): the output is ``y + g * (expert(x) - y)`` with
            ``g`` the gate's openness at the input's scale-1 noise level (:func:`gate_openness`), so below the gate
            the expert is not run and the model is exactly this one. The expert is a fixed, trained model: it is
            never trained with this one. Not in the paper: one model over a wide noise range from two.
        noise_expert_gate: ``(low, high)`` scale-1 noise levels, in input units (buffer ``noise_expert_gate``,
            saved with the weights).

    Input ``(B, in_channels, H, W)`` float in [0, 1], any H and W (reflect-padded to a multiple of 32
    and cropped back). Output ``(B, out_channels, H, W)`` in the same units.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        encoder: str = "RN50",
        layers: Optional[Sequence[int]] = None,
        width: Optional[int] = None,
        encoder_weights: Optional[str] = None,
        bias: bool = False,
        aug_level: float = 0.0,
        encoder_bn: str = "train",
        head_precision: str = "split",
        noise_conditioning: bool = False,
        noise_gate: Sequence[float] = (0.0, 0.0),
        noise_expert: Optional[Dict[str, Any]] = None,
        noise_expert_gate: Sequence[float] = (0.0, 0.0),
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (CT) or 3 (RGB), got {in_channels}")
        if head_precision not in ("split", "fp32", "autocast"):
            raise ValueError(f"head_precision must be 'split', 'fp32' or 'autocast', got {head_precision!r}")
        if encoder_bn not in ("train", "frozen"):
            raise ValueError(f"encoder_bn must be 'train' or 'frozen', got {encoder_bn!r}")
        if (layers is None) != (width is None):
            raise ValueError("give both `layers` and `width`, or neither (then `encoder` names the ResNet)")
        if layers is None:
            layers, width = resnet_config(encoder)
            self.encoder_name = encoder
        else:
            self.encoder_name = "custom"
        self.in_channels = in_channels
        self.pad_multiple = 32  # the trunk's total stride is 16; the reference pads to 32
        self.out_channels = out_channels
        self.aug_level = float(aug_level)
        self.encoder_bn = encoder_bn
        self.head_precision = head_precision

        self.first = nn.Conv2d(1, 3, 1, bias=bias) if in_channels == 1 else None
        self.encoder = CLIPResNetEncoder(layers, int(width))  # type: ignore[arg-type]
        # decoder modules sit at the top level (`up_path.*`, `last.*`): the authors' checkpoint layout
        self.up_path = build_up_path(self.encoder.feature_channels, image_channels=3, bias=bias)
        self.last = nn.Conv2d(self.encoder.width, out_channels, 3, padding=1, bias=bias)
        c = int(self.encoder.feature_channels[0])
        self.noise_film = NoiseLevelFiLM((8 * c, 4 * c, 2 * c, c), gate=noise_gate) if noise_conditioning else None
        expert_gate = gate_tensor(noise_expert_gate, "noise_expert_gate")
        self.noise_expert: Optional[CLIPDenoiser] = None
        if noise_expert is not None:
            self.noise_expert = CLIPDenoiser(**noise_expert).requires_grad_(False).eval()
        self.register_buffer("noise_expert_gate", expert_gate, persistent=noise_expert is not None)

        if encoder_weights is not None:
            from ldct_clip.weights import load_encoder_weights

            load_encoder_weights(self.encoder, encoder_weights, model_name=self.encoder_name)
        self.freeze_encoder()

    # -- training helpers -------------------------------------------------------------------------------

    def freeze_encoder(self) -> None:
        """Stop gradients into the CLIP encoder (BatchNorm statistics follow ``encoder_bn``)."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters an optimizer should see: the adapter and the decoder, never the encoder."""
        return (p for n, p in self.named_parameters() if not n.startswith("encoder.") and p.requires_grad)

    def train(self, mode: bool = True) -> "CLIPDenoiser":
        super().train(mode)
        if self.encoder_bn == "frozen":
            self.encoder.eval()
        if self.noise_expert is not None:
            self.noise_expert.eval()
        return self

    # -- forward ------------------------------------------------------------------------------------------

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        # the padded size as a multiple of m (not h + (m - h % m) % m): torch.export and the ONNX exporter can
        # then prove that every feature map lines up with its skip for any symbolic H and W. Padding by 0 is
        # not skipped, so that no branch depends on the input size (a guard in export, a warning in tracing).
        ph = (h + m - 1) // m * m - h
        pw = (w + m - 1) // m * m - w
        # reflect needs the pad to be smaller than the side, which every side from m up has (pad < m); smaller
        # images fall back to edge replication. A traced graph (TorchScript/ONNX by tracing) is for sides >= m:
        # the size test would be frozen into it with a warning.
        if not torch.jit.is_tracing() and min(h, w) < m:
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        return F.pad(x, (0, pw, 0, ph), mode="reflect")

    def _augment(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        for i, f in enumerate(features):
            sigma = (i + 1) * self.aug_level
            out.append(f * (1.0 + sigma * torch.randn_like(f)))
        return out

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        first = self.first
        return x if first is None else first(x)

    # Precision-critical parts under autocast. TorchScript (ckpt_export) never takes these paths.
    @torch.jit.unused
    def _adapt_fp32(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._adapt(x.float())

    @torch.jit.unused
    def _head_fp32(self, y: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=y.device.type, enabled=False):
            return self._head(y.float(), image.float())

    @torch.jit.unused
    def _head_split(self, y: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Block 4 + last conv with the first conv split by input: ``conv(cat(u, image))`` is
        ``conv_u(u) + conv_image(image)``; the 64-channel ``conv_u`` runs in the autocast dtype, everything that
        carries the full-range image (the image part, the sum, the second conv, the last conv) in float32.
        """
        block = self.up_path[4].conv_block.block
        conv0, act0, conv1, act1 = block[0], block[1], block[2], block[3]
        u = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=True)
        c = u.shape[1]
        h = F.conv2d(u, conv0.weight[:, :c], None, padding=1)
        with torch.autocast(device_type=y.device.type, enabled=False):
            h = h.float() + F.conv2d(image.float(), conv0.weight[:, c:].float(), conv0.bias, padding=1)
            return self.last(act1(conv1(act0(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._denoise(x)
        expert = self.noise_expert
        if expert is not None:
            g = gate_openness(estimate_noise_level(x, [1])[:, 0], self.noise_expert_gate)
            # below the gate the expert is not run (a trace records both, so that it holds at every level)
            if torch.jit.is_tracing() or bool((g > 0).any()):
                y = y + g[:, None, None, None].to(y.dtype) * (expert(x) - y)
        return y

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        noise_film = self.noise_film
        film: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
        if noise_film is not None:
            film = noise_film(x)  # measured on the input itself, before padding repeats part of it
        x = self._pad(x)
        mixed = False
        if not torch.jit.is_scripting():
            mixed = self.head_precision != "autocast" and torch.is_autocast_enabled(x.device.type)
        image = self._adapt_fp32(x) if mixed else self._adapt(x)
        features = self.encoder(image)
        if self.training and self.aug_level > 0:
            features = self._augment(features)
        y = self._decode(features, film)
        if mixed:
            y = self._head_split(y, image) if self.head_precision == "split" else self._head_fp32(y, image)
        else:
            y = self._head(y, image)
        return y[..., :h, :w]

    def _decode(
        self, features: List[torch.Tensor], film: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
    ) -> torch.Tensor:
        """Blocks 0-3: ``[stem, f1, f2, f3]`` -> ``(B, w, H/2, W/2)``; each block's output scaled and shifted
        by ``film`` when the network is noise-conditioned."""
        x = features[3]
        for i, block in enumerate(self.up_path):
            if i == 0:
                x = block(x, None)
            elif i < 4:
                x = block(x, features[3 - i])
            if film is not None and i < 4:
                scale, shift = film[i]
                x = x * (1.0 + scale.to(x.dtype)) + shift.to(x.dtype)
        return x

    def _head(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The full-resolution block 4 with the image skip, then the last conv."""
        return self.last(self.up_path[4](x, image))
