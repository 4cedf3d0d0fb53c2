#!/usr/bin/env python
"""Throughput of the low-dose CT simulator: slices/s at 512 x 512 with 720 views, and a 400-slice volume.

Prints one line per method and device (CPU always; CUDA when a GPU is present).  The volume time is measured
on ``--volume-slices`` slices and extrapolated linearly to 400 (the work is per slice).

    python scripts/benchmark_simulation.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ldct_clip.phantom import make_phantom
from ldct_clip.simulation import simulate_low_dose


def rate(vol: np.ndarray, method: str, device: str, batch: int) -> float:
    simulate_low_dose(vol[:, :, :batch], 0.25, method=method, device=device, batch_size=batch, seed=0)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    simulate_low_dose(vol, 0.25, method=method, device=device, batch_size=batch, seed=1)
    if device == "cuda":
        torch.cuda.synchronize()
    return vol.shape[2] / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--slices", type=int, default=32, help="slices per timed run")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--projection-slices", type=int, default=2, help="slices of the slow CPU projection run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    vol = make_phantom((args.size, args.size, args.slices), seed=0)
    print(f"{args.size}x{args.size}, 720 views (default for 512), {args.threads} CPU threads")
    runs = [("sector", "cpu", args.slices), ("projection", "cpu", args.projection_slices),
            ("reference", "cpu", 1)]
    if torch.cuda.is_available():
        runs += [("projection", "cuda", args.slices), ("sector", "cuda", args.slices)]
    else:
        print("no CUDA GPU: CUDA figures skipped")
    for method, device, nz in runs:
        r = rate(vol[:, :, :nz], method, device, min(args.batch, nz))
        print(f"{method:<10} {device:<4}: {r:8.2f} slices/s   512x512x400 volume: {400 / r:8.1f} s "
              f"(extrapolated from {nz} slices)", flush=True)


if __name__ == "__main__":
    main()
