"""Synthetic noise for the natural-image task (Cheng, Liang, Tan, CVPR 2024).

The paper trains its natural-image model on i.i.d. Gaussian noise (sigma = 15/255) and evaluates
generalisation on *out-of-distribution* noise: Gaussian of other levels, spatially correlated
Gaussian, Poisson, speckle and salt-and-pepper.  This module generates all of them on images that
are float in [0, 1] ("8-bit scaled": a level of 15 means 15/255 on that scale).

Definitions (``x`` the clean image, ``y`` the noisy one, all noise independent per element, i.e.
per pixel *and* per channel, as in the colour benchmarks):

``gaussian``, level ``sigma`` (in 1/255 units)
    ``y = x + (sigma / 255) * n``, ``n ~ N(0, 1)``.

``correlated``, level ``sigma`` (in 1/255 units)
    ``y = x + box3x3(w)``, ``w ~ N(0, (sigma/255)^2)`` i.i.d.  The level is the SD of the white
    noise *before* the 3x3 box (mean) filter, following the paper's recipe ("i.i.d. Gaussian noise
    of level sigma, filtered with a 3x3 box filter").  The noise that reaches the image therefore has
    per-pixel SD ``sigma / (3 * 255)`` and correlation 6/9 with its 4-neighbours, 4/9 with its
    diagonal neighbours, 3/9 at distance 2 along an axis and 0 beyond distance 2.  The white noise
    is drawn on a field 2 pixels larger than the image and filtered with a *valid* convolution, so
    these statistics hold at the borders too (no padding artefacts).

``poisson``, level ``alpha``
    ``y = x + alpha * (P / 255 - x)``, ``P ~ Poisson(255 * x)``: the 8-bit intensity is taken as a
    photon count and the resulting shot noise is amplified ``alpha`` times, so ``E[y] = x`` and
    ``Var[y] = alpha^2 * x / 255``.  Larger ``alpha`` is stronger noise, which is how the paper's
    levels 2 < 2.5 < 3 < 3.5 are ordered (the Real-ESRGAN/BasicSR "poisson scale" convention,
    whose count scale is the number of grey levels, 256 for 8-bit images; we fix it at 255 so that
    the definition does not depend on the image content: variances differ by 0.4 %).  ``x`` must be
    non-negative.

``speckle``, level ``v`` (a variance)
    ``y = x + x * n``, ``n ~ N(0, v)``, so ``Var[y] = v * x^2``.

``salt_pepper``, level ``d`` (a fraction in [0, 1])
    Each element is independently replaced with probability ``d``: by 1 (salt) or 0 (pepper) with
    equal odds.

No clipping and no quantisation by default: the paper's synthetic protocol feeds the float noisy
image (with values outside [0, 1]) to the network.  ``clip=True`` clips to [0, 1];
``quantize=True`` clips and rounds to the 8-bit grid (what saving to a PNG would do).

:data:`NOISE_SUITE` lists the evaluation settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import RandomizableTransform
from monai.utils import deprecated, ensure_tuple

from ldct_clip import __version__
from ldct_clip.errors import InputError
from ldct_clip.rgb.arrays import ImageLike, RandNoised, SeedLike, make_rng, restore, to_numpy_image

__all__ = [
    "NOISE_KINDS",
    "NOISE_SUITE",
    "noise_suite_settings",
    "add_noise",
    "quantize_8bit",
    "RandNaturalNoise",
    "RandNaturalNoised",
    "AddNaturalNoise",
    "AddNaturalNoised",
]

#: Names accepted by :func:`add_noise`, with the meaning of ``level`` for each.
NOISE_KINDS: dict[str, str] = {
    "gaussian": "sigma in 1/255 units",
    "correlated": "sigma in 1/255 units of the white noise before the 3x3 box filter",
    "poisson": "alpha, amplification of 8-bit shot noise",
    "speckle": "variance v of the multiplicative factor",
    "salt_pepper": "fraction d of corrupted elements",
}

#: Evaluation settings of the natural-image task, ``kind -> levels``.
#:
#: ``gaussian``, ``correlated`` and ``poisson`` are the paper's.  The paper does not fix the speckle
#: and salt-and-pepper levels we can rely on; ours are chosen to span weak to strong corruption on
#: the same scale as the Gaussian ones: speckle variance 0.01 / 0.02 / 0.04 gives a noise SD of
#: 12.8 / 18.0 / 25.5 (1/255 units) at mid-grey (x = 0.5); salt-and-pepper fractions 1 % / 2 % / 5 %.
NOISE_SUITE: dict[str, tuple[float, ...]] = {
    "gaussian": (15.0, 25.0, 50.0),
    "correlated": (40.0, 45.0, 50.0, 55.0),
    "poisson": (2.0, 2.5, 3.0, 3.5),
    "speckle": (0.01, 0.02, 0.04),
    "salt_pepper": (0.01, 0.02, 0.05),
}


def noise_suite_settings() -> list[tuple[str, float]]:
    """All ``(kind, level)`` pairs of :data:`NOISE_SUITE`, in a fixed order."""
    return [(kind, level) for kind, levels in NOISE_SUITE.items() for level in levels]


def _check_level(kind: str, level: Any) -> float:
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise InputError(f"level for {kind!r} noise must be a number, got {type(level).__name__}.")
    level = float(level)
    if not np.isfinite(level) or level < 0:
        raise InputError(f"level for {kind!r} noise ({NOISE_KINDS[kind]}) must be finite and >= 0, got {level}.")
    if kind == "salt_pepper" and level > 1:
        raise InputError(f"level for 'salt_pepper' noise is a fraction in [0, 1], got {level}.")
    return level


# --------------------------------------------------------------------------------------------------
# noise generators (float64 numpy in, float64 numpy out)


def _box3x3_valid(field: np.ndarray) -> np.ndarray:
    """Mean over 3x3 windows of the last two axes, 'valid' mode: (..., H+2, W+2) -> (..., H, W)."""
    h, w = field.shape[-2] - 2, field.shape[-1] - 2
    acc = np.zeros(field.shape[:-2] + (h, w), dtype=field.dtype)
    for dy in range(3):
        for dx in range(3):
            acc += field[..., dy : dy + h, dx : dx + w]
    return acc / 9.0


def _noisy(x: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return x + (level / 255.0) * rng.standard_normal(x.shape)
    if kind == "correlated":
        # White noise on a field one pixel larger on every side, then a valid 3x3 mean: every output
        # pixel sees exactly nine white samples, so the statistics are stationary up to the border.
        padded_shape = x.shape[:-2] + (x.shape[-2] + 2, x.shape[-1] + 2)
        white = (level / 255.0) * rng.standard_normal(padded_shape)
        return x + _box3x3_valid(white)
    if kind == "poisson":
        if x.min() < 0:
            raise InputError(f"poisson noise needs a non-negative image (photon counts), got min {x.min():.4g}.")
        counts = rng.poisson(255.0 * x)
        return x + level * (counts / 255.0 - x)
    if kind == "speckle":
        return x + x * (np.sqrt(level) * rng.standard_normal(x.shape))
    if kind == "salt_pepper":
        u = rng.random(x.shape)
        y = x.copy()
        # u < d/2 -> pepper, d/2 <= u < d -> salt: each with probability d/2.
        y[u < level / 2.0] = 0.0
        y[(u >= level / 2.0) & (u < level)] = 1.0
        return y
    raise AssertionError(kind)  # unreachable: kind is validated by add_noise


def add_noise(
    image: ImageLike,
    kind: str,
    level: float,
    *,
    seed: SeedLike,
    clip: bool = False,
    quantize: bool = False,
) -> ImageLike:
    """Add one kind of synthetic noise to an image (see the module docstring for the definitions).

    Args:
        image: float image in [0, 1], numpy array or torch tensor of shape (..., H, W), typically
            (C, H, W) channel-first (C = 1 grey, C = 3 RGB).  Noise is independent per element, so
            the channel order does not matter.
        kind: one of :data:`NOISE_KINDS`: ``"gaussian"``, ``"correlated"``, ``"poisson"``,
            ``"speckle"``, ``"salt_pepper"``.
        level: strength, in the units of ``kind`` (sigma in 1/255 units for the Gaussian kinds,
            alpha for poisson, variance for speckle, fraction for salt_pepper).
        seed: int seed, a ``np.random.Generator`` (consumed), or None for fresh entropy.  Required
            by keyword so that every call site states its randomness.
        clip: clip the result to [0, 1].  Off by default: the paper keeps the noisy image unclipped.
        quantize: clip, then round to the 8-bit grid (k / 255).  Off by default.

    Returns:
        The noisy image, same shape, container (numpy / torch, device, MetaTensor metadata) and
        dtype as ``image``.  The input is not modified.

    Raises:
        InputError: unknown ``kind``, bad ``level``, non-float / non-finite / too-small ``image``,
            a negative ``image`` for poisson noise, or a bad ``seed``.
    """
    if kind not in NOISE_KINDS:
        raise InputError(f"unknown noise kind {kind!r}; choose one of {sorted(NOISE_KINDS)}.")
    level = _check_level(kind, level)
    x = to_numpy_image(image)
    rng = make_rng(seed)
    y = _noisy(x, kind, level, rng)
    if quantize:
        y = quantize_8bit(y)
    elif clip:
        y = np.clip(y, 0.0, 1.0)
    return restore(y, image)


def quantize_8bit(image: np.ndarray) -> np.ndarray:
    """Clip a float image to [0, 1] and round it to the 8-bit grid ``k / 255``: what saving it as an 8-bit PNG
    and reading it back does. Any shape; float in, float64 out."""
    return np.round(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0) / 255.0


# --------------------------------------------------------------------------------------------------
# MONAI transforms


def _check_levels(kind: str, level: float | Sequence[float]) -> tuple[float, ...]:
    levels = tuple(ensure_tuple(level))
    if not levels:
        raise InputError(f"level for {kind!r} noise must be a number or a non-empty sequence of numbers.")
    return tuple(_check_level(kind, lv) for lv in levels)


class RandNaturalNoise(RandomizableTransform):
    """Add synthetic natural-image noise to a float [0, 1] image of shape (C, H, W) (any (..., H, W)).

    Wraps :func:`add_noise`.  Each call draws, from the transform's own random state ``self.R``,
    whether to apply (``prob``), the level (uniformly among ``level`` when a sequence is given) and
    a seed for the noise field, so results are reproducible after ``set_random_state(seed)``.

    Args:
        noise: kind of noise, one of :data:`NOISE_KINDS`.
        level: one level, or a sequence of candidate levels picked uniformly per call.
        prob: probability of adding noise; otherwise the image is returned unchanged.
        clip: clip the noisy image to [0, 1] (off: the paper's protocol keeps it unclipped).
        quantize: clip and round to the 8-bit grid.
    """

    def __init__(
        self,
        noise: str = "gaussian",
        level: float | Sequence[float] = 15.0,
        prob: float = 1.0,
        clip: bool = False,
        quantize: bool = False,
    ) -> None:
        if noise not in NOISE_KINDS:
            raise InputError(f"unknown noise kind {noise!r}; choose one of {sorted(NOISE_KINDS)}.")
        RandomizableTransform.__init__(self, prob)
        self.noise = noise
        self.levels = _check_levels(noise, level)
        self.clip = clip
        self.quantize = quantize
        self._level = self.levels[0]
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self._level = self.levels[self.R.randint(len(self.levels))]
        # The noise field uses its own Generator seeded from self.R: one draw from self.R per call
        # keeps the transform's stream independent of the image size.
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img: ImageLike, randomize: bool = True) -> ImageLike:
        """Noisy copy of ``img`` (same type, shape, dtype), or ``img`` itself when not applied."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return add_noise(img, self.noise, self._level, seed=self._seed, clip=self.clip, quantize=self.quantize)


class RandNaturalNoised(RandNoised):
    """Dictionary version of :class:`RandNaturalNoise`.

    The same random draw (level and noise field) is used for every key of one call.

    Args:
        keys: keys of the images to corrupt, e.g. ``["image"]``.
        noise, level, prob, clip, quantize: as in :class:`RandNaturalNoise`.
        target_key: if given, a copy of each clean image is stored under this key before the noise is
            added (one target key per key, or a single one when ``keys`` has one key), e.g.
            ``keys=["image"], target_key="label"`` makes a denoising training pair.  The target is
            written whether or not the noise is applied this time.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        noise: str = "gaussian",
        level: float | Sequence[float] = 15.0,
        prob: float = 1.0,
        clip: bool = False,
        quantize: bool = False,
        target_key: str | Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, RandNaturalNoise(noise=noise, level=level, prob=1.0, clip=clip, quantize=quantize), prob,
            target_key, allow_missing_keys,
        )


@deprecated(since="0.1.0", removed="0.2.0", msg_suffix="Use RandNaturalNoise.", version_val=__version__)
class AddNaturalNoise(RandNaturalNoise):
    """Deprecated name of :class:`RandNaturalNoise` (MONAI names random transforms ``Rand...``)."""


@deprecated(since="0.1.0", removed="0.2.0", msg_suffix="Use RandNaturalNoised.", version_val=__version__)
class AddNaturalNoised(RandNaturalNoised):
    """Deprecated name of :class:`RandNaturalNoised` (MONAI names random transforms ``Rand...``)."""
