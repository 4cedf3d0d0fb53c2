"""The paper's online CT training noise as MONAI transforms: Gaussian noise on the [0, 1] image (MONAI's
``RandGaussianNoise`` in HU), or realistic low-dose noise inserted in the projection domain
(:mod:`ldct_clip.simulation.low_dose`, :mod:`ldct_clip.simulation.noise_bank`).

``CTNoise`` is the former name of :class:`RandCTNoise`, kept for one release (it warns when used).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import TransformBackends, convert_to_dst_type, deprecated

from ldct_clip import __version__
from ldct_clip.ct.hu import DEFAULT_HU_WINDOW, window_from
from ldct_clip.errors import InputError
from ldct_clip.simulation.gaussian import gaussian_training_noise
from ldct_clip.simulation.low_dose import simulate_low_dose_torch
from ldct_clip.simulation.noise_bank import NoiseBank
from ldct_clip.simulation.protocol import ScanProtocol, dose_range

__all__ = ["CTNoise", "RandCTNoise", "RandCTNoised", "sigma_for_slice_thickness"]

log = logging.getLogger("ldct_clip")

NoiseKind = Literal["gaussian", "projection", "projection_bank"]


def sigma_for_slice_thickness(sigma_1mm: float = 5.0, slice_thickness_mm: float = 1.0, reference_thickness_mm: float = 1.0) -> float:
    """Scale a training noise level given for ``reference_thickness_mm`` slices to ``slice_thickness_mm``.

    At a fixed dose the quantum noise variance of a CT slice falls as 1 / thickness (more photons per voxel),
    so the SD scales as ``sqrt(reference / thickness)``: the paper's 5/255 for 1 mm slices becomes about
    2.9/255 for 3 mm slices (the authors advise a smaller sigma for 3 mm data; this is the usual rule).
    """
    for name, v in (("sigma", sigma_1mm), ("slice_thickness_mm", slice_thickness_mm),
                    ("reference_thickness_mm", reference_thickness_mm)):
        if not (math.isfinite(float(v)) and float(v) >= (0 if name == "sigma" else 1e-6)):
            raise InputError(f"{name} must be a positive finite number, got {v}.")
    return float(sigma_1mm) * math.sqrt(float(reference_thickness_mm) / float(slice_thickness_mm))


class RandCTNoise(Randomizable, Transform):
    """Add training noise to a normal-dose CT image in HU (a new realisation on every call).

    Args:
        noise: ``"gaussian"`` -- the paper's i.i.d. Gaussian noise of ``sigma / 255`` on the image normalised to
            [0, 1] over ``hu_window``, drawn by MONAI's ``RandGaussianNoise`` in HU
            (:func:`ldct_clip.simulation.gaussian.gaussian_training_noise`; 5/255 on [-1024, 3072] is about 80 HU), or
            ``"projection"`` -- the projection-domain low-dose simulator
            (:func:`ldct_clip.simulation.low_dose.simulate_low_dose_torch`, the fast batched path, at ``dose_fraction``):
            correlated FBP-textured noise, all planes of a call in one batch on the input's device (CPU in
            DataLoader workers, or CUDA when applied to a batch on the GPU), or ``"projection_bank"`` -- one of
            the realisations precomputed for this slice in ``noise_bank`` (:mod:`ldct_clip.simulation.noise_bank`), drawn at
            random; the call then needs the slice's ``source=(name, slice)``.
        sigma: Gaussian noise level in 1/255 of the [0, 1] window, for ``slice_thickness_mm`` thick slices.
        slice_thickness_mm: thickness of the training slices; with ``reference_thickness_mm`` the effective
            level is :func:`sigma_for_slice_thickness` (``sigma`` as given when both are 1 mm).
        reference_thickness_mm: the thickness ``sigma`` is stated for (the paper's 5/255 is for 1 mm).
        hu_window: ``(hu_min, hu_max)`` of the [0, 1] normalisation.
        dose_fraction: ``"projection"`` only: simulated dose relative to the input's, or a range ``[lo, hi]``
            from which each plane draws its own dose uniformly (one model for several dose levels).
        simulation_kwargs: ``"projection"`` only: fields of the
            :class:`~ldct_clip.simulation.protocol.ScanProtocol` (``pixel_size_mm``, ``incident_flux``, ``geometry``,
            ``method``...), checked on construction.
        noise_bank: ``"projection_bank"`` only: the :class:`~ldct_clip.simulation.noise_bank.NoiseBank` to draw from.
        device: ``"projection"`` only: where the noise is drawn (default: the input's device). ``"cuda"`` draws it
            on the GPU from a DataLoader without worker processes; the output is then a tensor on that device.

    Input and output: ``(C, X, Y)`` or ``(X, Y)`` array or tensor in HU; the output has the input's type and
    device (``device``'s, when given), float32, unclipped (the paper feeds the unclipped noisy image to the network).
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        noise: NoiseKind = "gaussian",
        sigma: float = 5.0,
        slice_thickness_mm: float = 1.0,
        reference_thickness_mm: float = 1.0,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        dose_fraction: float | Sequence[float] = 0.25,
        simulation_kwargs: Mapping[str, Any] | None = None,
        noise_bank: NoiseBank | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if noise not in ("gaussian", "projection", "projection_bank"):
            raise InputError(
                f"noise must be 'gaussian' (the paper's), 'projection' (simulated low dose, online) or "
                f"'projection_bank' (simulated low dose, precomputed), got {noise!r}."
            )
        if noise == "projection_bank" and noise_bank is None:
            raise InputError("noise 'projection_bank' needs a noise bank: build one with "
                             "ldct_clip.simulation.noise_bank.build_noise_bank (train.json does it from noise_bank_dir).")
        self.noise = noise
        self.sigma = sigma_for_slice_thickness(sigma, slice_thickness_mm, reference_thickness_mm)
        self.hu_window = window_from(hu_window)
        self.dose_range = dose_range(dose_fraction) if noise == "projection" else (0.25, 0.25)
        self.simulation_kwargs = dict(simulation_kwargs or {})
        self.protocol = ScanProtocol.of(None, self.simulation_kwargs) if noise == "projection" else None
        self.gaussian = gaussian_training_noise(self.sigma, self.hu_window)
        self.noise_bank = noise_bank
        self.device = torch.device(device) if device is not None else None
        self._seed = 0

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCTNoise:
        super().set_random_state(seed, state)
        self.gaussian.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        # one integer seed per call: the simulators draw their noise from np.random.default_rng(seed)
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(
        self, img: np.ndarray | torch.Tensor, randomize: bool = True, source: tuple[str, int] | None = None
    ) -> np.ndarray | torch.Tensor:
        """``source``: ``(name, slice)`` of the image as :class:`TrainingSlices` names it (``"projection_bank"``)."""
        if self.noise == "gaussian":
            out = self.gaussian(img if isinstance(img, torch.Tensor) else np.asarray(img), randomize=randomize)
            out_t, *_ = convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)
            return out_t
        if randomize:
            self.randomize()
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if self.noise == "projection_bank":
            if source is None:
                raise InputError("noise 'projection_bank' needs the slice's (name, slice): use RandCTNoised on "
                                 "TrainingSlices items, which carry them.")
            noise = self.noise_bank.draw(source[0], source[1], np.random.default_rng(self._seed))  # type: ignore[union-attr]
            if noise.shape != arr.shape[-2:]:
                raise InputError(f"the noise bank's realisations of {source} are {noise.shape}, the image is "
                                 f"{arr.shape[-2:]}: rebuild the bank from the training data.")
            out = arr.astype(np.float32) + noise
        else:
            # all planes in one batch, on the input's device (a CUDA batch gets its noise on the GPU)
            x = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.asarray(arr, dtype=np.float32))
            if self.device is not None:
                x = torch.as_tensor(x, device=self.device)
            planes = x.detach().reshape((-1,) + tuple(x.shape[-2:]))
            rng = np.random.default_rng(self._seed)
            lo, hi = self.dose_range
            doses = torch.as_tensor(rng.uniform(lo, hi, len(planes)) if hi > lo else np.full(len(planes), lo))
            seeds = [int(v) for v in rng.integers(0, 2**62, len(planes))]
            out = simulate_low_dose_torch(planes, doses, self.protocol, seeds=seeds).reshape(x.shape)
            return out if isinstance(img, torch.Tensor) or self.device is not None else out.numpy()
        out_t, *_ = convert_to_dst_type(out.astype(np.float32), img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)
        return out_t


class RandCTNoised(Randomizable, MapTransform):
    """Dictionary version of :class:`RandCTNoise`: replaces ``d[key]`` (HU) by a noisy copy for every key.

    The usual training pipeline copies the clean ``"label"`` into ``"image"`` first
    (``CopyItemsd(keys="label", names="image")``) and adds noise to ``"image"`` only. Keys get independent
    noise. Arguments are those of :class:`RandCTNoise`; with ``noise="projection_bank"`` the slice is identified by
    ``d[name_key]`` and ``d[slice_key]`` (the ``"name"`` and ``"slice"`` of :class:`TrainingSlices` items).
    """

    backend = RandCTNoise.backend

    def __init__(
        self,
        keys: KeysCollection,
        noise: NoiseKind = "gaussian",
        sigma: float = 5.0,
        slice_thickness_mm: float = 1.0,
        reference_thickness_mm: float = 1.0,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        dose_fraction: float | Sequence[float] = 0.25,
        simulation_kwargs: Mapping[str, Any] | None = None,
        noise_bank: NoiseBank | None = None,
        device: str | torch.device | None = None,
        name_key: str = "name",
        slice_key: str = "slice",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = RandCTNoise(noise, sigma, slice_thickness_mm, reference_thickness_mm, hu_window, dose_fraction,
                                 simulation_kwargs, noise_bank, device)
        self.name_key, self.slice_key = name_key, slice_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCTNoised:
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.transform.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = None
        if self.transform.noise == "projection_bank":
            source = (str(d[self.name_key]), int(d[self.slice_key]))
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=True, source=source)
        return d


@deprecated(since="0.1.0", removed="0.2.0", msg_suffix="Use ldct_clip.transforms.RandCTNoise (MONAI's Rand prefix).",
            version_val=__version__)
class CTNoise(RandCTNoise):
    """Deprecated name of :class:`RandCTNoise` (same arguments); warns on construction, removed in 0.2.0."""
