#!/usr/bin/env python
"""Noise texture kept by a denoiser: NPS mean frequency of its output against the normal-dose image's.

A uniform 32 cm water cylinder (256 x 256 x 4 of 1.5 mm) gets a simulated dose pair
(:func:`ldct_clip.simulation.pairs.simulate_dose_pair`, flux 3e5, hann filter, seed 3); the low-dose image is
denoised with each model (:func:`ldct_clip.inference.denoise_volume`, fp32).  In 9 ROIs of 48 x 48 pixels in the
centre, the noise (image minus the noise-free cylinder) gives the NPS (:func:`ldct_clip.metrics.noise_power_spectrum`)
and its TG-233 mean frequency (:func:`ldct_clip.metrics.nps_summary`).  Over-smoothing shows as a mean frequency
well below the normal-dose image's (the #17 target: at least 70 % of it).  Also prints noise SD and bias (HU).

    python scripts/nps_texture.py demo runs/a/final.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZE, PIXEL_MM, RADIUS_MM = 256, 1.5, 160.0
ROI = 48


def water_cylinder() -> np.ndarray:
    """``(256, 256, 4)`` float32 HU: water (0) inside a 32 cm disc, air (-1000) outside."""
    x = (np.arange(SIZE) - (SIZE - 1) / 2) * PIXEL_MM
    r = np.hypot(*np.meshgrid(x, x, indexing="ij"))
    return np.where(r < RADIUS_MM, 0.0, -1000.0).astype(np.float32)[:, :, None].repeat(4, axis=2)


def texture(image: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Mean frequency (1/mm), noise SD and bias (HU) of ``image - clean`` in the central ROIs."""
    from ldct_clip.metrics import noise_power_spectrum, nps_summary

    c, h = SIZE // 2, ROI // 2
    noise = image - clean
    rois = [noise[c + dx - h : c + dx + h, c + dy - h : c + dy + h, z]
            for dx in (-40, 0, 40) for dy in (-40, 0, 40) for z in range(noise.shape[2])]
    summary = nps_summary(*noise_power_spectrum(np.stack(rois), PIXEL_MM))
    stack = np.stack(rois)
    return {"mean_frequency": summary["mean_frequency"], "noise_sd": float(stack.std()), "bias": float(stack.mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="+", help="'demo' or checkpoint files")
    p.add_argument("--doses", type=float, nargs="+", default=[0.25, 0.10])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.inference import denoise_volume
    from ldct_clip.simulation.pairs import simulate_dose_pair
    from ldct_clip.weights import resolve_weights

    torch.set_num_threads(args.threads)
    clean = water_cylinder()
    pairs = {d: simulate_dose_pair(clean, d, incident_flux=3e5, pixel_size_mm=PIXEL_MM, filter_name="hann", seed=3)
             for d in args.doses}
    for w in args.weights:
        model = load_checkpoint(resolve_weights(w)).eval()
        for dose, (low, normal) in pairs.items():
            with torch.no_grad():
                out = denoise_volume(low, model, precision="fp32")
            a, b = texture(out, clean), texture(normal, clean)
            print(f"{w} {dose:.0%}: mean frequency {a['mean_frequency']:.3f} / mm vs normal dose "
                  f"{b['mean_frequency']:.3f} ({a['mean_frequency'] / b['mean_frequency']:.0%}, target >= 70 %); "
                  f"noise SD {a['noise_sd']:.1f} HU (normal dose {b['noise_sd']:.1f}), bias {a['bias']:+.2f} HU",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
