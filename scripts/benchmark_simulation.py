#!/usr/bin/env python
"""Throughput of the low-dose CT simulator: slices/s at 512 x 512 with 720 views, and a 400-slice volume.

Prints one line per method, device and CPU thread count (CPU always; CUDA when a GPU is present), with two
figures, because development machines are shared:

* ``wall``: slices per wall-clock second, as measured -- what a user on this machine got just now;
* ``cpu``: slices per CPU second of this process (``time.process_time``, all its threads), and
  ``uncontended ~ cpu x threads``, the wall-clock rate to expect when this process has its threads' cores to
  itself.  When the machine is busy ``wall`` drops while ``cpu`` barely moves; spinning OpenMP threads make
  ``cpu`` pessimistic for more than one thread, so the estimate is conservative there.

The load average is printed with the figures.  The volume time is extrapolated linearly from ``--slices``
slices to 400 (the work is per slice).

    python scripts/benchmark_simulation.py --threads 1 2
    python scripts/benchmark_simulation.py --figure monai_bundle/docs/simulation_noise.png --methods

``--figure`` also writes a PNG comparing one quarter-dose slice and its added noise from the scikit-image
reference and from the default fast path (same phantom, same dose), for the eye.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.simulation.low_dose import simulate_low_dose
from ldct_clip.reporting.figures import SOFT_TISSUE, save_panels


def rate(vol: np.ndarray, method: str, device: str, batch: int) -> tuple[float, float]:
    """(slices per wall second, slices per process CPU second) of one simulation of ``vol``."""
    simulate_low_dose(vol[:, :, :batch], 0.25, method=method, device=device, batch_size=batch, seed=0)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    simulate_low_dose(vol, 0.25, method=method, device=device, batch_size=batch, seed=1)
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return vol.shape[2] / wall, vol.shape[2] / max(cpu, 1e-9)


def figure(path: str, size: int = 256, pixel_mm: float = 1.5) -> None:
    """Reference vs fast path: a quarter-dose abdomen slice and the noise each added, side by side."""
    image = make_phantom((size, size, 1), seed=5)[:, :, 0]
    panels = []
    for method in ("reference", "auto"):
        low = simulate_low_dose(image, dose_fraction=0.25, seed=1, method=method, pixel_size_mm=pixel_mm)
        c = size // 2
        sd = float((low - image)[c - 28 : c + 28, c - 28 : c + 28].std())
        label = "reference (scikit-image)" if method == "reference" else "fast path (default)"
        panels += [(f"{label}, 25% dose", low, SOFT_TISSUE), (f"added noise, SD {sd:.0f} HU", low - image, (0.0, 300.0))]
    print(f"figure: {save_panels(path, panels)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to measure")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--slices", type=int, default=32, help="slices per timed run")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--projection-slices", type=int, default=2, help="slices of the slow CPU projection run")
    p.add_argument("--methods", nargs="*", default=["sector", "projection", "reference"],
                   choices=["sector", "projection", "reference"], help="CPU methods to measure")
    p.add_argument("--figure", help="also write a PNG comparing the reference and the fast path's noise")
    args = p.parse_args()
    if args.figure:
        figure(args.figure)
    vol = make_phantom((args.size, args.size, args.slices), seed=0)
    print(f"{args.size}x{args.size}, 720 views (default for 512), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} before the runs")
    runs = [(m, "cpu", t) for t in args.threads for m in args.methods]
    if torch.cuda.is_available():
        runs += [("projection", "cuda", 1), ("sector", "cuda", 1)]
    else:
        print("no CUDA GPU: CUDA figures skipped")
    for method, device, threads in runs:
        torch.set_num_threads(threads)
        nz = {"projection": args.projection_slices, "reference": 1}.get(method, args.slices) if device == "cpu" \
            else args.slices
        wall, cpu = rate(vol[:, :, :nz], method, device, min(args.batch, nz))
        what = f"{threads} thread{'s' if threads > 1 else ' '}" if device == "cpu" else "GPU      "
        line = f"{method:<10} {device:<4} {what}: wall {wall:8.2f} slices/s (400 slices: {400 / wall:7.1f} s)"
        if device == "cpu":
            est = cpu * threads
            line += f" | cpu {cpu:7.2f} slices/CPU-s, uncontended ~{est:7.2f} slices/s (400 slices: {400 / est:6.1f} s)"
        print(f"{line}  [{nz} slices, load {os.getloadavg()[0]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
