#!/usr/bin/env python
"""Seconds per 512 x 512 slice of the shipped demo weights through ``denoise_volume``, at several noise levels.

The demo weights carry a noise expert that is run only above their noise gate, so their speed depends on the
input's noise: below the gate one network runs, above it two. The input is an abdomen phantom with white noise of
each SD; precision ``auto`` (the bundle's default).

    python scripts/benchmark_demo_speed.py --noise-sd 5 150 --slices 8 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.inference import denoise_volume
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.weights import resolve_weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="demo", help="shipped weights name or checkpoint file")
    p.add_argument("--noise-sd", type=float, nargs="+", default=[5.0, 150.0], help="white noise SD (HU) per run")
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_checkpoint(resolve_weights(args.weights)).eval()
    hu = make_phantom((512, 512, 1), region="abdomen", seed=3)[:, :, 0].astype(np.float32)
    rng = np.random.default_rng(0)
    for sd in args.noise_sd:
        vol = np.repeat((hu + rng.normal(0.0, sd, hu.shape))[:, :, None], args.slices, axis=2).astype(np.float32)
        denoise_volume(vol[:, :, :2], model)  # warm-up: allocator, autocast caches
        start = time.perf_counter()
        denoise_volume(vol, model)
        per_slice = (time.perf_counter() - start) / args.slices
        print(f"noise SD {sd:g} HU: {per_slice:.3f} s per 512x512 slice ({args.slices} slices, precision auto, "
              f"{args.threads} threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
