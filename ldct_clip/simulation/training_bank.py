"""Training cases for the CT denoiser over the whole clinical noise range, and the crop stream that feeds them.

A case is one noise-free slice (:data:`CONTENTS`: the procedural phantoms, the textured bodies or natural
images mapped to HU) at a random pixel size (0.3-2 mm, log-uniform), reconstruction kernel (FBP filter from sharp ``ramp`` to
smooth ``hann``; in 70 % of cases the clean slice is blurred to the matching resolution, the others keep sharp
edges) and photon flux (5e4-1e6), and its
projection-domain noise (:func:`ldct_clip.simulation.low_dose.simulate_low_dose`, Poisson statistics, full dose),
stored *normalised to unit SD* inside the body.  Quantum noise scales as ``1 / sqrt(dose)``, so the crop stream
(:class:`ContentCrops`) rescales each slice's noise to an SD drawn log-uniformly from ``noise_sd`` (default
10-150 HU): one bank covers every dose of every flux, the noise keeping its FBP texture and its spatial
variation (more behind bone, in the body's centre).  A case's ``sd_full`` is its noise SD at full dose of its
flux: an SD ``s`` then stands for the dose fraction ``(sd_full / s) ** 2``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ldct_clip.ct.hu import hu_to_unit

__all__ = ["CONTENTS", "FILTER_BLUR_PX", "ContentCrops", "augmented_pair", "make_content_case"]

CONTENTS = ("phantom", "textured", "natural")
#: FBP filter -> Gaussian blur (pixels, SD) of the clean slice: the resolution that goes with the kernel.
FILTER_BLUR_PX = {"ramp": 0.35, "shepp-logan": 0.45, "cosine": 0.6, "hamming": 0.7, "hann": 0.75}
SIZES = (192, 256, 256, 320)
HU_WINDOW = (-1024.0, 3072.0)


def _clean_slice(content: str, n: int, px: float, rng: np.random.Generator, index: int) -> tuple[np.ndarray, dict]:
    if content == "phantom":
        from ldct_clip.simulation.phantom import REGIONS, make_phantom

        region = sorted(REGIONS)[index % len(REGIONS)]
        img = make_phantom((n, n), region=region, pixel_size_mm=px, texture_hu=float(rng.uniform(2.0, 8.0)),
                           slice_thickness_mm=float(rng.uniform(1.0, 5.0)), seed=index)
        return img, {"region": region}
    if content == "textured":
        from ldct_clip.simulation.textured_phantom import textured_body

        return textured_body((n, n), px, rng)
    if content == "natural":
        from ldct_clip.simulation.natural_content import natural_slice

        return natural_slice((n, n), px, rng)
    raise ValueError(f"content must be one of {CONTENTS}, got {content!r}")


def make_content_case(index: int, content: str, seed: int = 20261206,
                      pixel_mm: tuple[float, float] = (0.3, 2.0)) -> dict[str, np.ndarray]:
    """Training case ``index`` of ``content``: everything is fixed by ``(index, content, seed, pixel_mm)``;
    the pixel size is drawn log-uniformly from ``pixel_mm``.

    Returns ``clean`` int16 ``(1, n, n)`` HU (blurred to the kernel's resolution), ``noise_unit`` float16
    ``(1, n, n)`` (the full-dose noise divided by ``sd_full``), ``sd_full`` (HU, measured where the clean slice
    is soft tissue, -200..300 HU), and the case's parameters (``pixel_mm``, ``flux``, ``filter``, ``content``,
    ``info``).
    """
    from scipy import ndimage

    from ldct_clip.simulation.low_dose import simulate_low_dose

    rng = np.random.default_rng([index, CONTENTS.index(content), seed])
    n = int(rng.choice(SIZES))
    # 0.3-1 mm is the clinical range of real slices; up to 2 mm covers the coarse grids of the phantom benchmarks
    # (a model that only saw fine pixels softens the edges of a 2 mm-pixel image)
    px = float(math.exp(rng.uniform(math.log(pixel_mm[0]), math.log(pixel_mm[1]))))
    filt = str(rng.choice(list(FILTER_BLUR_PX)))
    flux = float(math.exp(rng.uniform(math.log(5e4), math.log(1e6))))
    clean, info = _clean_slice(content, n, px, rng, index)
    # 70 %: blurred to the kernel's resolution, as real slices; 30 %: the content's own partial-volume edges, as the
    # phantoms of the benchmarks (a model that never sees a sharp edge learns to soften every edge)
    blur = FILTER_BLUR_PX[filt] * rng.uniform(0.8, 1.25) if rng.random() < 0.7 else 0.0
    clean = (ndimage.gaussian_filter(clean, blur) if blur > 0 else clean).astype(np.float32)
    noisy = simulate_low_dose(clean, 1.0, noise_model="poisson", incident_flux=flux, pixel_size_mm=px,
                              filter_name=filt, seed=int(rng.integers(2**31)))
    noise = noisy - clean
    tissue = (clean > -200) & (clean < 300)
    if tissue.mean() < 0.05:
        tissue = clean > -900
    sd = float(noise[tissue].std()) if tissue.any() else float(noise.std())
    sd = max(sd, 1e-3)
    return {"clean": np.rint(np.clip(clean, -1024, 3071)).astype(np.int16)[None],
            "noise_unit": (noise / sd).astype(np.float16)[None], "sd_full": np.float32(sd),
            "pixel_mm": np.float32(px), "flux": np.float32(flux), "filter": np.array(filt),
            "content": np.array(content), "info": np.array(repr(info))}


class ContentCrops(torch.utils.data.IterableDataset):
    """An endless stream of random ``crop x crop`` (noisy, clean) pairs in [0, 1] from banks of
    :func:`make_content_case`.

    Each crop's noise is its slice's unit noise times an SD drawn log-uniformly from ``noise_sd`` (HU); random
    flips and 90-degree rotations; the network input is clipped to the [-1024, 3072] window as at inference.

    ``target_sd=None``: the label is the noise-free slice.  ``target_sd=(lo, hi)``: the label is a *normal-dose*
    image, the clean slice plus normal-dose noise of an SD drawn log-uniformly from ``target_sd`` (at most 0.95 of
    the input's), and the input is that same image plus the independent extra noise of the lower dose, as in real
    low-/normal-dose pairs (whose low-dose scan contains the normal-dose noise) and in the validation on real
    slices.  The network then learns to remove the extra noise only, keeping a normal-dose noise texture.  The
    extra noise is the slice's unit noise turned by 180 degrees about the slice's centre (parallel-beam FBP noise
    keeps its texture under that turn; its variance map is the point reflection's, close for a body that is
    roughly point-symmetric): an independent realisation at no extra simulation cost.
    Crops that are nearly all air are redrawn (up to 4 times).  Items: ``{"image": (1, crop, crop),
    "label": (1, crop, crop)}`` float32.
    """

    def __init__(self, files: list[str], crop: int, noise_sd: tuple[float, float] = (10.0, 150.0), seed: int = 0,
                 target_sd: tuple[float, float] | None = None) -> None:
        self.crop, self.seed = int(crop), int(seed)
        self.log_sd = (math.log(noise_sd[0]), math.log(noise_sd[1]))
        self.log_target = None if target_sd is None else (math.log(target_sd[0]), math.log(target_sd[1]))
        self.clean, self.noise = [], []
        for f in files:
            with np.load(f) as z:
                self.clean.extend(z["clean"])
                self.noise.extend(z["noise_unit"])
        if not self.clean:
            raise ValueError("no training cases")

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        lo, hi = HU_WINDOW
        while True:
            k = int(rng.integers(len(self.clean)))
            c0, u0 = self.clean[k], self.noise[k]
            for _ in range(5):
                i = int(rng.integers(c0.shape[0] - self.crop + 1))
                j = int(rng.integers(c0.shape[1] - self.crop + 1))
                c = c0[i:i + self.crop, j:j + self.crop]
                if (c > -900).mean() > 0.2:
                    break
            c = c.astype(np.float32)
            sd = math.exp(rng.uniform(*self.log_sd))
            u = u0[i:i + self.crop, j:j + self.crop].astype(np.float32)
            if self.log_target is None:
                n = c + sd * u
            else:
                sd_nd = min(math.exp(rng.uniform(*self.log_target)), 0.95 * sd)
                extra = u0[::-1, ::-1][i:i + self.crop, j:j + self.crop].astype(np.float32)
                c = c + sd_nd * u
                n = c + math.sqrt(sd * sd - sd_nd * sd_nd) * extra
            yield augmented_pair(n, c, rng, (lo, hi))


def augmented_pair(noisy: np.ndarray, clean: np.ndarray, rng: np.random.Generator,
                   hu_window: tuple[float, float]) -> dict[str, torch.Tensor]:
    """One training item from a ``(crop, crop)`` pair in HU: the same random 90-degree turn and flips for both
    (drawn from ``rng``), mapped to the network's [0, 1] over ``hu_window``.

    Returns ``{"image": (1, crop, crop), "label": (1, crop, crop)}`` float32 tensors.
    """
    rot, flip = int(rng.integers(4)), int(rng.integers(4))
    pair = []
    for a in (noisy, clean):
        a = np.rot90(a, rot)
        a = a[::-1] if flip & 1 else a
        a = a[:, ::-1] if flip & 2 else a
        pair.append(np.ascontiguousarray(a)[None])
    lo, hi = hu_window
    return {"image": torch.from_numpy(hu_to_unit(pair[0], lo, hi)), "label": torch.from_numpy(hu_to_unit(pair[1], lo, hi))}
