"""Camera noise for the sRGB task: signal-dependent raw noise between the inverse and forward camera pipeline
(:mod:`ldct_clip.rgb.isp`), as a function (:func:`synthesize_camera_noise`) and as MONAI random transforms
(:class:`RandCameraNoise`, :class:`RandCameraNoised`).

Images: sRGB float in [0, 1], channel-first ``(3, H, W)``, channel order R, G, B.

Raw noise (:func:`add_raw_noise`) has two models:

* ``"reference"`` (the default, what the paper's code and CBDNet's ``AddNoiseMosai`` do):
  ``raw_noisy = clip(raw + N1 * (sigma_s * raw) + N2 * sigma_c, 0, 1)`` with independent standard normals,
  i.e. noise variance ``(sigma_s * x)^2 + sigma_c^2`` (SD proportional to the signal).  The paper's fixed
  training level is ``sigma_s = 0.04, sigma_c = 0.03``: SD 0.036 at ``x = 0.5``.
* ``"poisson_gaussian"``: the heteroscedastic Poisson-Gaussian approximation of a real sensor (Foi et al.),
  ``raw_noisy = raw + sqrt(sigma_s * max(raw, 0) + sigma_c^2) * N(0, 1)``, variance ``sigma_s * x + sigma_c^2``
  (shot-noise variance linear in the signal), not clipped.  With the same numbers it is about four times
  noisier than the reference at ``x = 0.5`` (SD 0.145): it is *not* the paper's training noise.

Under ``"poisson_gaussian"`` nothing is clipped in the raw domain (noise statistics stay exactly as defined;
negative raw values are legal after black-level subtraction).  Under both models the developed linear image
is clipped to [0, 1] before the tone curve, which is the same as clipping the sRGB output to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import RandomizableTransform
from monai.utils import deprecated

from ldct_clip import __version__
from ldct_clip.errors import InputError
from ldct_clip.rgb.isp import (
    ISPParams,
    _camera_to_srgb,
    _check_rgb,
    _params,
    demosaic_malvar,
    mosaic,
    random_isp_params,
    srgb_to_camera,
)
from ldct_clip.rgb.arrays import ImageLike, RandNoised, SeedLike, make_rng, restore, to_numpy_image
from ldct_clip.rgb.noise import quantize_8bit

__all__ = [
    "RAW_NOISE_MODELS",
    "add_raw_noise",
    "synthesize_camera_noise",
    "RandCameraNoise",
    "RandCameraNoised",
    "SimulateCameraNoise",
    "SimulateCameraNoised",
]

#: Raw noise models of :func:`add_raw_noise` (see the module docstring); the first is the default.
RAW_NOISE_MODELS: tuple[str, ...] = ("reference", "poisson_gaussian")


def _check_sigma(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{name} must be finite and >= 0, got {value}.")
    return value


def _check_noise_model(noise_model: str) -> str:
    if noise_model not in RAW_NOISE_MODELS:
        raise InputError(f"noise_model must be one of {RAW_NOISE_MODELS}, got {noise_model!r}.")
    return noise_model


def add_raw_noise(
    raw: ImageLike, sigma_s: float, sigma_c: float, rng: SeedLike, noise_model: str = "reference"
) -> ImageLike:
    """Signal-dependent raw noise (see the module docstring for the two models).

    ``"reference"``: ``clip(raw + N1 * (sigma_s * raw) + N2 * sigma_c, 0, 1)``, variance
    ``(sigma_s * x)^2 + sigma_c^2`` before clipping -- the paper's and CBDNet's training noise.
    ``"poisson_gaussian"``: ``raw + sqrt(sigma_s * max(raw, 0) + sigma_c^2) * N(0, 1)``, variance
    ``sigma_s * x + sigma_c^2`` (negative signal has no shot noise), not clipped.

    Args:
        raw: raw image, any shape (usually a Bayer mosaic (H, W)), linear, nominally in [0, 1].
        sigma_s: ``"reference"``: shot-noise SD per unit signal; ``"poisson_gaussian"``: shot-noise variance
            per unit signal (>= 0).
        sigma_c: read-noise standard deviation (>= 0).
        rng: a ``np.random.Generator`` (consumed), an int seed, or None.
        noise_model: one of :data:`RAW_NOISE_MODELS`.

    Returns:
        The noisy raw image (in [0, 1] under ``"reference"``); same container and dtype as ``raw``.
    """
    sigma_s = _check_sigma("sigma_s", sigma_s)
    sigma_c = _check_sigma("sigma_c", sigma_c)
    noise_model = _check_noise_model(noise_model)
    x = to_numpy_image(raw, "raw", min_ndim=1)
    gen = make_rng(rng)
    if noise_model == "reference":
        shot, read = gen.standard_normal(x.shape), gen.standard_normal(x.shape)
        return restore(np.clip(x + shot * (sigma_s * x) + read * sigma_c, 0.0, 1.0), raw)
    sd = np.sqrt(sigma_s * np.maximum(x, 0.0) + sigma_c**2)
    return restore(x + sd * gen.standard_normal(x.shape), raw)


def _check_range(name: str, rng_: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng_)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a (low, high) pair of numbers, got {rng_!r}.") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
        raise InputError(f"{name} must satisfy 0 <= low <= high, got {rng_!r}.")
    return lo, hi


def synthesize_camera_noise(
    rgb: ImageLike,
    *,
    sigma_s: float = 0.04,
    sigma_c: float = 0.03,
    sample: bool = False,
    sigma_s_range: tuple[float, float] = (0.0, 0.08),
    sigma_c_range: tuple[float, float] = (0.0, 0.06),
    params: ISPParams | None = None,
    sample_isp: bool | None = None,
    seed: SeedLike = None,
    noise_model: str = "reference",
    quantize: bool = False,
) -> ImageLike:
    """Realistic camera noise on a clean sRGB image: inverse ISP, raw noise, forward ISP.

    Args:
        rgb: clean sRGB image (3, H, W), R-G-B channel-first, float in [0, 1] (numpy or torch).
        sigma_s, sigma_c: raw noise (see :func:`add_raw_noise`), used when ``sample`` is False.
            Defaults are the paper's training setting.
        sample: draw ``sigma_s`` and ``sigma_c`` uniformly from ``sigma_s_range`` / ``sigma_c_range``
            instead.  The default ranges are centred on the paper's values (0.04, 0.03) with the same
            lower bound 0, following CBDNet's uniform sampling from zero.
        params: camera to simulate; None: ``ISPParams()`` (or a random one, see ``sample_isp``).
        sample_isp: draw a random camera with :func:`random_isp_params` when ``params`` is None.
            Defaults to ``sample``.
        seed: int seed, ``np.random.Generator`` or None; all randomness comes from it.
        noise_model: raw noise model, one of :data:`RAW_NOISE_MODELS` (default: the paper's ``"reference"``).
        quantize: round the noisy image to the 8-bit grid (:func:`ldct_clip.rgb.noise.quantize_8bit`), as the
            paper's sRGB training data, which are noisy images saved as PNG.

    Returns:
        Noisy sRGB image (3, H, W) clipped to [0, 1] (quantised with ``quantize``); same container/dtype as ``rgb``.
    """
    x = to_numpy_image(rgb, "rgb")
    _check_rgb(x, "rgb")
    noise_model = _check_noise_model(noise_model)
    gen = make_rng(seed)
    if sample:
        lo_s, hi_s = _check_range("sigma_s_range", sigma_s_range)
        lo_c, hi_c = _check_range("sigma_c_range", sigma_c_range)
        s_s, s_c = float(gen.uniform(lo_s, hi_s)), float(gen.uniform(lo_c, hi_c))
    else:
        s_s, s_c = _check_sigma("sigma_s", sigma_s), _check_sigma("sigma_c", sigma_c)
    if params is None and (sample if sample_isp is None else sample_isp):
        p = random_isp_params(gen)
    else:
        p = _params(params)
    raw = mosaic(srgb_to_camera(x, p), p.bayer_pattern)
    noisy_raw = add_raw_noise(raw, s_s, s_c, gen, noise_model)
    noisy = _camera_to_srgb(demosaic_malvar(noisy_raw, p.bayer_pattern), p)
    return restore(quantize_8bit(noisy) if quantize else noisy, rgb)


# --------------------------------------------------------------------------------------------------
# MONAI transforms


class RandCameraNoise(RandomizableTransform):
    """Add simulated camera noise to a clean sRGB image (3, H, W) in [0, 1] (see :func:`synthesize_camera_noise`).

    Each call draws, from the transform's own ``self.R``, whether to apply (``prob``) and a seed for
    :func:`synthesize_camera_noise`; reproducible after ``set_random_state(seed)``.

    Args:
        sigma_s, sigma_c, sample, sigma_s_range, sigma_c_range, params, sample_isp, noise_model: as in
            :func:`synthesize_camera_noise`.
        prob: probability of adding noise; otherwise the image is returned unchanged.
        quantize: round the noisy image to the 8-bit grid (as :func:`synthesize_camera_noise`).
    """

    def __init__(
        self,
        sigma_s: float = 0.04,
        sigma_c: float = 0.03,
        sample: bool = False,
        sigma_s_range: Sequence[float] = (0.0, 0.08),
        sigma_c_range: Sequence[float] = (0.0, 0.06),
        params: ISPParams | None = None,
        sample_isp: bool | None = None,
        prob: float = 1.0,
        noise_model: str = "reference",
        quantize: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.quantize = bool(quantize)
        self.noise_model = _check_noise_model(noise_model)
        # Validate now, so a bad bundle config fails when it is parsed rather than mid-epoch.
        self.sigma_s = _check_sigma("sigma_s", sigma_s)
        self.sigma_c = _check_sigma("sigma_c", sigma_c)
        self.sigma_s_range = _check_range("sigma_s_range", sigma_s_range)
        self.sigma_c_range = _check_range("sigma_c_range", sigma_c_range)
        self.params = None if params is None else _params(params)
        self.sample = bool(sample)
        self.sample_isp = sample_isp
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img: ImageLike, randomize: bool = True) -> ImageLike:
        """Noisy copy of ``img`` (same type, shape, dtype), or ``img`` itself when not applied."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return synthesize_camera_noise(
            img,
            sigma_s=self.sigma_s,
            sigma_c=self.sigma_c,
            sample=self.sample,
            sigma_s_range=self.sigma_s_range,
            sigma_c_range=self.sigma_c_range,
            params=self.params,
            sample_isp=self.sample_isp,
            seed=self._seed,
            noise_model=self.noise_model,
            quantize=self.quantize,
        )


class RandCameraNoised(RandNoised):
    """Dictionary version of :class:`RandCameraNoise`; one random draw per call, shared by all keys.

    Args:
        keys: keys of the clean sRGB images, e.g. ``["image"]``.
        target_key: if given, the clean image is copied under this key first (one per key), e.g.
            ``keys=["image"], target_key="label"``; written whether or not the noise is applied.
        allow_missing_keys: do not raise if a key is missing.
        other arguments: as in :class:`RandCameraNoise`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        sigma_s: float = 0.04,
        sigma_c: float = 0.03,
        sample: bool = False,
        sigma_s_range: Sequence[float] = (0.0, 0.08),
        sigma_c_range: Sequence[float] = (0.0, 0.06),
        params: ISPParams | None = None,
        sample_isp: bool | None = None,
        prob: float = 1.0,
        target_key: str | Sequence[str] | None = None,
        allow_missing_keys: bool = False,
        noise_model: str = "reference",
        quantize: bool = False,
    ) -> None:
        simulator = RandCameraNoise(
            noise_model=noise_model,
            quantize=quantize,
            sigma_s=sigma_s,
            sigma_c=sigma_c,
            sample=sample,
            sigma_s_range=sigma_s_range,
            sigma_c_range=sigma_c_range,
            params=params,
            sample_isp=sample_isp,
            prob=1.0,
        )
        super().__init__(keys, simulator, prob, target_key, allow_missing_keys)


@deprecated(since="0.1.0", removed="0.2.0", msg_suffix="Use RandCameraNoise.", version_val=__version__)
class SimulateCameraNoise(RandCameraNoise):
    """Deprecated name of :class:`RandCameraNoise` (MONAI names random transforms ``Rand...``)."""


@deprecated(since="0.1.0", removed="0.2.0", msg_suffix="Use RandCameraNoised.", version_val=__version__)
class SimulateCameraNoised(RandCameraNoised):
    """Deprecated name of :class:`RandCameraNoised` (MONAI names random transforms ``Rand...``)."""
