#!/usr/bin/env python
"""Image quality of the shipped demo weights against classical denoisers, on held-out phantoms.

The demo weights are *demo weights trained on synthetic data, not the paper's CLIP model*
(``ldct_clip/pretrained/demo_ct.json`` says how they were made).  Test data: phantoms of every body region
(:func:`ldct_clip.simulation.phantom.make_phantom`, seeds 9000+, never used in training, which saw seeds below 1200, or in
validation, 5000+), with a simulated dose pair (:func:`ldct_clip.simulation.phantom.make_low_dose_example`: normal dose with
projection-domain noise, low dose adding the missing variance) at 25 % and 10 % dose; and a water cylinder with
a dense rod for edge sharpness.  The reference of PSNR/SSIM, noise and bias is the noise-free phantom.

Rows: the noisy input; the demo model (the real path, :func:`ldct_clip.inference.denoise_volume`); non-local
means (``skimage.restoration.denoise_nl_means``, ``h = f * sigma`` with sigma from :func:`noise_sigma` of the
case and ``f`` chosen per case from a grid for the best abdomen-window PSNR against the reference, an oracle
tuning that favours NLM); correlated-noise BM3D (``bm3d`` package, ``pip install 'ldct-clip[bm3d]'``) where
installed, given the PSD of the simulator's noise (:func:`ldct_clip.evaluation.noise_psd.simulated_noise_psd`: the
same simulation at other seeds, inside the body; no tuning); a Gaussian filter (sigma tuned like NLM); the
normal-dose image for comparison.

Metrics: PSNR/SSIM under the paper protocol (full [-1024, 3072] HU, data range 4096) and the ldct-benchmark
abdomen window (C 50 / W 400); noise SD and mean HU bias (output minus truth) in uniform soft-tissue regions;
10-90 % edge width (mm) of the rod's radial edge profile.

    python scripts/benchmark_quality.py --json out/benchmark.json --figure out/benchmark.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ldct_clip.evaluation.classical import import_bm3d  # noqa: E402
from ldct_clip.simulation.phantom import REGIONS, make_low_dose_example, make_phantom  # noqa: E402
from ldct_clip.simulation.pairs import simulate_dose_pair  # noqa: E402
from ldct_clip.metrics import compute_metrics, find_uniform_roi  # noqa: E402

TEST_SEED = 9000
FLUX = 3e5  # make_low_dose_example's default: about 10 HU normal-dose noise at 256 x 256
NLM_FACTORS = (0.8, 1.2, 1.6, 2.2, 3.0)
GAUSS_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)
PSD_SEEDS = (7001, 7002, 7003)  # realisations of the simulator's noise for BM3D's PSD (not the test images')
TUNE_PROTOCOL = "ldct-benchmark-abdomen"
BM3D = "BM3D (noise PSD)"


# ----------------------------------------------------------------------------------------------------------
# test cases
# ----------------------------------------------------------------------------------------------------------


def anatomy_cases(size: int, slices: int, dose: float) -> list[dict]:
    """One held-out volume per region: ``{"name", "clean", "low", "normal", "rois"}`` (HU, (X, Y, Z))."""
    cases = []
    for r, region in enumerate(sorted(REGIONS)):
        seed = TEST_SEED + r
        shape = (size, size, slices)
        low, normal = make_low_dose_example(shape, dose, seed=seed, region=region, incident_flux=FLUX)
        clean = make_phantom(shape, region=region, seed=seed)
        roi = find_uniform_roi(clean, size=max(8, size // 24), hu_range=(-20.0, 120.0))
        # make_low_dose_example's simulation, at any seed
        simulate = partial(simulate_dose_pair, clean, dose, incident_flux=FLUX,
                           pixel_size_mm=REGIONS[region].fov_mm / size, filter_name="hann")
        cases.append({"name": region, "clean": clean, "low": low, "normal": normal, "rois": [roi],
                      "simulate": simulate})
    return cases


def rod_case(size: int, slices: int, dose: float) -> dict:
    """A 300 mm water cylinder with a 20 mm rod of +1000 HU off centre (edge width) and four water ROIs."""
    px = 400.0 / size
    c = (np.arange(size) - (size - 1) / 2.0) * px
    x, y = np.meshgrid(c, c, indexing="ij")
    ss = 4  # anti-aliased edges: supersampled coverage
    sub = (np.arange(ss) + 0.5) / ss - 0.5

    def disk(cx: float, cy: float, r: float) -> np.ndarray:
        acc = np.zeros_like(x)
        for dx in sub:
            for dy in sub:
                acc += ((x + dx * px - cx) ** 2 + (y + dy * px - cy) ** 2) <= r * r
        return acc / ss**2

    img = -1000.0 + 1000.0 * disk(0, 0, 150.0) + 1000.0 * disk(50.0, 0.0, 10.0)
    clean = np.repeat(img[:, :, None], slices, axis=2).astype(np.float32)
    simulate = partial(simulate_dose_pair, clean, dose, incident_flux=FLUX, pixel_size_mm=px, filter_name="hann")
    low, normal = simulate(seed=TEST_SEED + 99)
    k = max(8, size // 24)
    rois = []
    for cx, cy in ((-60.0, 0.0), (0.0, 60.0), (0.0, -60.0), (-20.0, -90.0)):
        i, j = int(round(cx / px + (size - 1) / 2)), int(round(cy / px + (size - 1) / 2))
        rois.append((slice(i - k // 2, i - k // 2 + k), slice(j - k // 2, j - k // 2 + k), slice(None)))
    return {"name": "rod", "clean": clean, "low": low, "normal": normal, "rois": rois, "simulate": simulate,
            "rod": (50.0 / px + (size - 1) / 2, (size - 1) / 2, 10.0 / px), "px": px}


def edge_width_mm(image: np.ndarray, centre: tuple[float, float, float], px: float) -> float:
    """10-90 % width (mm) of the radial edge profile of a rod, averaged over angles and slices.

    ``centre = (i, j, radius)`` in pixels. The profile is binned at 1/4 pixel from 0.4 to 1.6 radii; inside
    and outside levels are the means of its first and last fifth.
    """
    ci, cj, radius = centre
    i, j = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    r = np.hypot(i - ci, j - cj)
    sel = (r > 0.4 * radius) & (r < 1.6 * radius)
    bins = np.arange(0.4 * radius, 1.6 * radius + 0.25, 0.25)
    idx = np.digitize(r[sel], bins)
    prof = np.array([np.mean(image[sel][idx == b]) if np.any(idx == b) else np.nan
                     for b in range(1, len(bins))])
    rr = 0.5 * (bins[1:] + bins[:-1])
    ok = np.isfinite(prof)
    prof, rr = prof[ok], rr[ok]
    n = max(2, len(prof) // 5)
    hi, lo = float(np.mean(prof[:n])), float(np.mean(prof[-n:]))
    frac = (prof - lo) / (hi - lo)
    # the profile falls from 1 (rod) to 0 (water): first radius below 0.9 and below 0.1, interpolated
    def crossing(level: float) -> float:
        k = int(np.argmax(frac < level))
        if k == 0:
            return float(rr[0])
        return float(rr[k - 1] + (frac[k - 1] - level) / (frac[k - 1] - frac[k]) * (rr[k] - rr[k - 1]))

    return (crossing(0.1) - crossing(0.9)) * px


# ----------------------------------------------------------------------------------------------------------
# denoisers
# ----------------------------------------------------------------------------------------------------------


def per_slice(fn, vol: np.ndarray) -> np.ndarray:
    return np.stack([fn(vol[:, :, k]) for k in range(vol.shape[2])], axis=2).astype(np.float32)


def tuned(name: str, make, grid, noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, str]:
    """Run ``make(param)`` for every value of ``grid``; keep the output with the best tuning-protocol PSNR."""
    best = None
    for value in grid:
        out = make(value)
        score = compute_metrics(out, clean, TUNE_PROTOCOL)["psnr"]
        if best is None or score > best[0]:
            best = (score, out, value)
    return best[1], f"{name} {best[2]:g}"


def noise_sigma(noisy: np.ndarray) -> float:
    """The case's noise level (HU): ``skimage.restoration.estimate_sigma`` (wavelet MAD) per slice, averaged.

    Without PyWavelets (which ``estimate_sigma`` needs) the same estimator on the Haar diagonal detail band:
    ``median(|HH|) / 0.6745``.  Both see only the finest scale, where FBP noise has less power than white
    noise of the same SD, so the NLM strength factor is searched over a wide grid.
    """
    try:
        import pywt  # noqa: F401
        from skimage.restoration import estimate_sigma
    except ImportError:
        estimate_sigma = None
    values = []
    for k in range(noisy.shape[2]):
        s = noisy[:, :, k].astype(np.float64)
        if estimate_sigma is not None:
            values.append(float(estimate_sigma(s)))
        else:
            a = s[: s.shape[0] // 2 * 2, : s.shape[1] // 2 * 2]
            hh = (a[0::2, 0::2] - a[1::2, 0::2] - a[0::2, 1::2] + a[1::2, 1::2]) / 2.0
            values.append(float(np.median(np.abs(hh)) / 0.6745))
    return float(np.mean(values))


def nlm(noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, str]:
    from skimage.restoration import denoise_nl_means

    sigma = noise_sigma(noisy)

    def make(f: float) -> np.ndarray:
        return per_slice(lambda s: denoise_nl_means(s, h=f * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                                    fast_mode=True), noisy)

    out, how = tuned("h/sigma", make, NLM_FACTORS, noisy, clean)
    return out, f"{how}, sigma {sigma:.1f} HU"


def gaussian(noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, str]:
    from scipy import ndimage

    def make(s: float) -> np.ndarray:
        return per_slice(lambda a: ndimage.gaussian_filter(a, s), noisy)

    return tuned("sigma px", make, GAUSS_SIGMAS, noisy, clean)


def bm3d_filter(case: dict) -> tuple[np.ndarray, str] | None:
    """Correlated-noise BM3D given the PSD of the simulator's noise (other seeds), or ``None`` without bm3d."""
    from ldct_clip.evaluation.classical import denoise_bm3d
    from ldct_clip.evaluation.noise_psd import psd_sd, simulated_noise_psd
    from ldct_clip.errors import InputError

    try:
        import_bm3d()
    except InputError:
        return None
    psd = simulated_noise_psd(lambda s: case["simulate"](seed=s)[0], case["clean"], PSD_SEEDS)
    return denoise_bm3d(case["low"], noise_psd=psd), f"simulator's noise PSD, {psd_sd(psd):.1f} HU"


# ----------------------------------------------------------------------------------------------------------


def measure(out: np.ndarray, case: dict) -> dict[str, float]:
    row: dict[str, float] = {}
    for protocol, tag in (("paper", "paper"), ("ldct-benchmark-abdomen", "abd")):
        m = compute_metrics(out, case["clean"], protocol)
        row[f"psnr_{tag}"], row[f"ssim_{tag}"] = m["psnr"], m["ssim"]
    diff = out.astype(np.float64) - case["clean"]
    row["noise_sd"] = float(np.mean([np.std(diff[roi], ddof=1) for roi in case["rois"]]))
    row["bias"] = float(np.mean([np.mean(diff[roi]) for roi in case["rois"]]))
    if "rod" in case:
        row["edge_mm"] = edge_width_mm(out, case["rod"], case["px"])
    return row


def run(args: argparse.Namespace) -> dict:
    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.inference import denoise_volume
    from ldct_clip.weights import resolve_weights, weights_label

    torch.set_num_threads(args.threads)
    weights = resolve_weights(args.weights)
    label = weights_label(weights) or str(weights)
    print(f"model: {weights} ({label})", flush=True)
    model = load_checkpoint(weights).eval()
    results: dict = {"weights": str(weights), "label": label, "size": args.size, "slices": args.slices, "doses": {}}
    figure = None
    for dose in args.doses:
        t0 = time.monotonic()
        cases = anatomy_cases(args.size, args.slices, dose) + [rod_case(args.size, args.slices, dose)]
        rows: dict[str, list[dict]] = {}
        notes: dict[str, list[str]] = {}
        for case in cases:
            outputs = {"noisy input": (case["low"], ""), "normal dose": (case["normal"], "")}
            outputs["demo model"] = (denoise_volume(case["low"], model, precision="fp32"), "")
            outputs["NLM (tuned)"] = nlm(case["low"], case["clean"])
            b = bm3d_filter(case) if not args.no_bm3d else None
            if b is not None:
                outputs[BM3D] = b
            outputs["Gaussian (tuned)"] = gaussian(case["low"], case["clean"])
            for method, (out, how) in outputs.items():
                m = measure(out, case)
                m["case"] = case["name"]
                rows.setdefault(method, []).append(m)
                if how:
                    notes.setdefault(method, []).append(f"{case['name']}: {how}")
            if dose == args.figure_dose and case["name"] == args.figure_region:
                figure = (case, outputs)
        results["doses"][str(dose)] = {"rows": rows, "tuning": notes, "seconds": round(time.monotonic() - t0, 1)}
        print(f"dose {dose:.0%}: {time.monotonic() - t0:.0f} s", flush=True)
    if args.figure and figure is not None:
        save_figure(args.figure, *figure)
        results["figure"] = str(args.figure)
    return results


def save_figure(path: Path, case: dict, outputs: dict) -> None:
    from ldct_clip.reporting.figures import SOFT_TISSUE, save_panels

    k = case["low"].shape[2] // 2
    low, demo, nlm_out = case["low"][:, :, k], outputs["demo model"][0][:, :, k], outputs["NLM (tuned)"][0][:, :, k]
    panels = [("input (simulated low dose)", low, SOFT_TISSUE), ("demo weights", demo, SOFT_TISSUE),
              ("NLM (tuned)", nlm_out, SOFT_TISSUE)]
    if BM3D in outputs:
        panels.append(("BM3D (noise PSD)", outputs[BM3D][0][:, :, k], SOFT_TISSUE))
    panels += [("input - demo", low - demo, (0.0, 200.0)), ("noise-free truth", case["clean"][:, :, k], SOFT_TISSUE)]
    save_panels(path, panels)


def table(results: dict) -> str:
    """Markdown tables: means over the anatomy cases (PSNR/SSIM, noise, bias) and the rod (edge width)."""
    lines = []
    cols = ["PSNR paper", "SSIM paper", "PSNR abd", "SSIM abd", "noise SD (HU)", "bias (HU)", "edge 10-90% (mm)"]
    for dose, block in results["doses"].items():
        lines.append(f"\n**{float(dose):.0%} dose** (mean over {', '.join(sorted(REGIONS))}; edge from the rod case)\n")
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for method, rs in block["rows"].items():
            anat = [r for r in rs if r["case"] != "rod"]
            rod = [r for r in rs if r["case"] == "rod"][0]
            mean = lambda key: float(np.mean([r[key] for r in anat]))  # noqa: E731
            noise = float(np.mean([r["noise_sd"] for r in rs]))
            bias = float(np.mean([abs(r["bias"]) for r in rs]))
            lines.append(f"| {method} | {mean('psnr_paper'):.2f} | {mean('ssim_paper'):.4f} | {mean('psnr_abd'):.2f} | "
                         f"{mean('ssim_abd'):.4f} | {noise:.1f} | {bias:.1f} | {rod['edge_mm']:.2f} |")
        lines.append("")
        lines.append("| method | " + " | ".join(f"PSNR abd {r}" for r in sorted(REGIONS)) + " |")
        lines.append("|---" * (len(REGIONS) + 1) + "|")
        for method, rs in block["rows"].items():
            by = {r["case"]: r for r in rs}
            lines.append(f"| {method} | " + " | ".join(f"{by[r]['psnr_abd']:.2f}" for r in sorted(REGIONS)) + " |")
    return "\n".join(lines)


def targets(results: dict) -> list[str]:
    """The issue's targets, each with its measured value and whether it is met."""
    out = []
    for dose, block in results["doses"].items():
        rows = block["rows"]
        anat = {m: [r for r in rs if r["case"] != "rod"] for m, rs in rows.items()}
        mean = lambda m, key: float(np.mean([r[key] for r in anat[m]]))  # noqa: E731
        gain = mean("demo model", "psnr_abd") - mean("noisy input", "psnr_abd")
        d = f"{float(dose):.0%}"
        if math.isclose(float(dose), 0.25):
            out.append(f"{d}: PSNR gain (abdomen window) {gain:+.2f} dB (target >= 4): {'met' if gain >= 4 else 'NOT met'}")
        for key, name in (("psnr_abd", "PSNR abd"), ("ssim_abd", "SSIM abd"), ("psnr_paper", "PSNR paper"), ("ssim_paper", "SSIM paper")):
            a, b = mean("demo model", key), mean("NLM (tuned)", key)
            out.append(f"{d}: {name} demo {a:.4g} vs tuned NLM {b:.4g}: {'better' if a > b else 'NOT better'}")
            if BM3D in anat:
                c = mean(BM3D, key)
                out.append(f"{d}: {name} demo {a:.4g} vs BM3D (noise PSD) {c:.4g}: distance {a - c:+.4g}")
        worst = max(abs(r["bias"]) for r in rows["demo model"])
        out.append(f"{d}: largest |bias| of the demo model {worst:.2f} HU (target <= 3): {'met' if worst <= 3 else 'NOT met'}")
        e_demo = [r for r in rows["demo model"] if r["case"] == "rod"][0]["edge_mm"]
        e_nd = [r for r in rows["normal dose"] if r["case"] == "rod"][0]["edge_mm"]
        ratio = e_demo / e_nd
        out.append(f"{d}: edge width demo {e_demo:.2f} mm vs normal dose {e_nd:.2f} mm ({ratio - 1:+.0%}; target within 20%): "
                   f"{'met' if abs(ratio - 1) <= 0.2 else 'NOT met'}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="demo", help="shipped weights name or a checkpoint file")
    p.add_argument("--doses", type=float, nargs="+", default=[0.25, 0.10])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--slices", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bm3d", action="store_true")
    p.add_argument("--json", type=Path, help="write all numbers here")
    p.add_argument("--figure", type=Path, help="PNG: input / demo / NLM / difference / truth")
    p.add_argument("--figure-dose", type=float, default=0.25)
    p.add_argument("--figure-region", default="abdomen")
    p.add_argument("--provenance", type=Path, help="also record the results in this provenance JSON")
    args = p.parse_args(argv)
    results = run(args)
    text = table(results)
    checks = targets(results)
    results["table_markdown"] = text
    results["targets"] = checks
    results["bm3d"] = "installed" if any(BM3D in b["rows"] for b in results["doses"].values()) else "not installed"
    print(text)
    print()
    print(f"BM3D: {results['bm3d']}")
    for line in checks:
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.provenance:
        from ldct_clip.cli import config_default

        prov = json.loads(args.provenance.read_text())
        prov["benchmark"] = {"command": "python scripts/benchmark_quality.py " + " ".join(argv or sys.argv[1:]),
                             "table_markdown": text, "targets": checks, "bm3d": results["bm3d"],
                             # the demo rows are the bundle's whole chain, noise retention included
                             "noise_retention": config_default("noise_retention"),
                             "noise_retention_max_sd": config_default("noise_retention_max_sd")}
        args.provenance.write_text(json.dumps(prov, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
