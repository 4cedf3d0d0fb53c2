#!/usr/bin/env python
"""Validation of a model on real CT: the two validation slices, simulated low dose, against NLM and BM3D.

Exactly two real CT slices, for validation and model selection only (never training or tuning data):

* ``bad_sequence.dcm`` of pydicom-data (neck, 512 x 512, 0.29 mm pixels, 1 mm slice, Siemens B30s kernel);
* ``CT_small.dcm`` of pydicom's test files (128 x 128, 0.66 mm pixels, 5 mm slice).

Every other CT image of those packages stays off limits, so that the model is checked on real CT content
it has not seen.  Each slice is read with pydicom and converted to HU explicitly (``RescaleSlope``,
``RescaleIntercept``); the real slice is the reference.  Low dose at 10, 25 and 50 % of the slice's dose is
simulated with the project's projection-domain simulator (:func:`ldct_clip.simulation.low_dose.simulate_low_dose`:
variance-matched noise insertion, 720-view parallel beam, the slice's pixel size, a Hann-windowed FBP filter
for the soft B30s and STANDARD kernels), ``--realisations`` noise realisations per dose at fixed seeds.  The
simulator's photon count ``I0`` is calibrated per slice so that its full-dose noise has the SD of the slice's own
noise in its most uniform water-like region (:func:`calibrate_flux`): the noise of dose ``k`` is then the real
noise times ``1/sqrt(k)``, whatever the pixel size and kernel (the defaults of ``ldct-clip simulate``, ``I0 = 1e5``
and a ramp filter, give the 0.29 mm neck slice about 5 times the noise of this calibration).  Rows:

* ``input``: the simulated low-dose slice;
* ``demo`` (or ``--weights``): the network through :func:`ldct_clip.inference.denoise_volume`, the bundle's
  steps (HU window [-1024, 3072], 512 x 512 sliding window, fp32);
* ``NLM (tuned)``: :func:`ldct_clip.evaluation.classical.denoise_nlm` given the true SD of the added noise, with
  ``h = f * SD`` and ``f`` chosen per slice, dose and realisation from a grid for the best abdomen-window
  PSNR against the reference (an oracle tuning that favours NLM);
* ``BM3D (noise PSD)``: :func:`ldct_clip.evaluation.classical.denoise_bm3d` (correlated-noise BM3D, ``pip install
  'ldct-clip[bm3d]'``) given the PSD of the simulator's noise (:func:`ldct_clip.evaluation.noise_psd.simulated_noise_psd`:
  other seeds of the same simulation, inside the body); no tuning.

Scores: PSNR (dB), SSIM and RMSE (HU) under the ldct-benchmark abdomen window (C 50 / W 400, the protocol
``ldct-benchmark-abdomen`` of :mod:`ldct_clip.metrics`) and the paper protocol (full [-1024, 3072] HU),
against the real slice.  Writes ``OUT/validation.csv`` (every slice, dose, realisation and method),
``OUT/validation.md`` (means over realisations, and whether the model beats NLM and how far it is from BM3D)
and ``OUT/<slice>_panel.png`` (input / model / NLM / BM3D / reference at ``--figure-dose``, first realisation,
abdomen window; 512-pixel slices cropped to their central ``--crop`` pixels).

    python scripts/validate_real_ct.py --out out/validation          # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ldct_clip.metrics import compute_metrics  # noqa: E402

#: The two validation slices (file name -> short name); nothing else of pydicom or pydicom-data is read.
SLICES = {"bad_sequence.dcm": "neck_bad_sequence", "CT_small.dcm": "ct_small"}
DOSES = (0.10, 0.25, 0.50)
NLM_FACTORS = (0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2)
SEED = 20240  # realisation r of dose d: SEED + 100 * round(100 d) + r
PSD_SEEDS = (91, 92, 93)  # the BM3D PSD's realisations: offsets from the same base, never scored
CALIBRATION_SEEDS = (7, 8, 9)
FILTER = "hann"
PROTOCOLS = {"abd": "ldct-benchmark-abdomen", "paper": "paper"}
PANEL_WINDOW = (50.0, 400.0)  # the abdomen window the metrics use


def read_validation_slice(file_name: str) -> tuple[np.ndarray, float, str]:
    """``(hu, pixel_mm, path)`` of one validation slice: ``hu`` is ``(X, Y)`` float32 (MONAI order)."""
    import pydicom
    from pydicom.data import get_testdata_file

    if file_name not in SLICES:
        raise ValueError(f"{file_name} is not a validation slice ({sorted(SLICES)})")
    path = get_testdata_file(file_name)  # searches pydicom's test files, then pydicom-data's store
    if path is None:
        raise SystemExit(f"{file_name} not found: pip install pydicom pydicom-data (the test extra)")
    ds = pydicom.dcmread(path)
    slope, intercept = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
    hu = ds.pixel_array.astype(np.float64) * slope + intercept
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    if abs(row_mm - col_mm) > 1e-3 * row_mm:
        raise SystemExit(f"{file_name}: non-square pixels {row_mm} x {col_mm} mm; the simulator needs square ones")
    return hu.T.astype(np.float32), col_mm, str(path)  # pixel_array is (rows, columns) = (Y, X)


def calibrate_flux(hu: np.ndarray, px: float, filter_name: str = FILTER) -> dict[str, float]:
    """The ``incident_flux`` with which the simulator's full-dose noise has the real slice's noise SD.

    The real noise SD is measured in the slice's most uniform water-like square
    (:func:`~ldct_clip.metrics.find_uniform_roi`); the simulator's in the same square, over full-dose
    (``noise_model="poisson"``, dose 1) realisations.  Quantum noise variance scales as ``1 / I0``: two
    fixed-point steps from ``I0 = 1e5`` (the electronic noise makes it slightly non-linear).
    """
    from ldct_clip.simulation.low_dose import simulate_low_dose
    from ldct_clip.metrics import find_uniform_roi, noise_sd

    roi = find_uniform_roi(hu)
    real_sd = float(noise_sd(hu, roi))
    flux, sim_sd = 1e5, float("nan")
    for _ in range(3):
        noise = [simulate_low_dose(hu, 1.0, incident_flux=flux, pixel_size_mm=px, filter_name=filter_name,
                                   noise_model="poisson", seed=s) - hu for s in CALIBRATION_SEEDS]
        sim_sd = float(np.sqrt(np.mean([np.var(n[roi], ddof=1) for n in noise])))
        if abs(sim_sd / real_sd - 1) < 0.02:
            break
        flux *= (sim_sd / real_sd) ** 2
    return {"incident_flux": flux, "real_noise_sd": real_sd, "simulated_full_dose_sd": sim_sd,
            "roi": f"{roi[0].start}:{roi[0].stop},{roi[1].start}:{roi[1].stop}"}


def nlm_tuned(low: np.ndarray, ref: np.ndarray, sd: float) -> tuple[np.ndarray, float]:
    """NLM with ``h = f * sd``, the ``f`` of :data:`NLM_FACTORS` with the best abdomen PSNR against ``ref``."""
    from ldct_clip.evaluation.classical import denoise_nlm

    best = None
    for f in NLM_FACTORS:
        out = denoise_nlm(low, sd, h_factor=f)
        score = compute_metrics(out, ref, PROTOCOLS["abd"])["psnr"]
        if best is None or score > best[0]:
            best = (score, out, f)
    return best[1], best[2]


def scores(image: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    row = {}
    for tag, protocol in PROTOCOLS.items():
        m = compute_metrics(image, ref, protocol)
        row.update({f"psnr_{tag}": m["psnr"], f"ssim_{tag}": m["ssim"], f"rmse_{tag}": m["rmse"]})
    return row


def validate_slice(name: str, hu: np.ndarray, px: float, model, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Score every method at every dose and realisation on one slice; return the rows and the panel's images."""
    from ldct_clip.evaluation.classical import denoise_bm3d, import_bm3d
    from ldct_clip.evaluation.noise_psd import psd_sd, simulated_noise_psd
    from ldct_clip.simulation.low_dose import simulate_low_dose
    from ldct_clip.errors import InputError
    from ldct_clip.inference import denoise_volume

    try:
        import_bm3d()
        have_bm3d = not args.no_bm3d
    except InputError as e:
        print(f"  BM3D skipped: {e}", flush=True)
        have_bm3d = False
    cal = calibrate_flux(hu, px)
    print(f"  {name}: real noise {cal['real_noise_sd']:.1f} HU in {cal['roi']}; I0 = {cal['incident_flux']:.3g} gives "
          f"{cal['simulated_full_dose_sd']:.1f} HU at full dose", flush=True)
    rows, panel = [], {}
    for dose in args.doses:
        def simulate(seed: int, dose: float = dose) -> np.ndarray:
            return simulate_low_dose(hu, dose, incident_flux=cal["incident_flux"], pixel_size_mm=px,
                                     filter_name=FILTER, seed=seed)

        base = SEED + 100 * round(100 * dose)
        t0 = time.monotonic()
        psd = simulated_noise_psd(simulate, hu, [base + s for s in PSD_SEEDS])
        sd = psd_sd(psd)  # the added noise's SD inside the body: NLM's (oracle) noise level
        for r in range(args.realisations):
            low = simulate(base + r)
            outputs = {"input": (low, "")}
            t = time.monotonic()
            outputs[args.label] = (denoise_volume(low[:, :, None], model, precision="fp32")[:, :, 0],
                                   f"{time.monotonic() - t:.1f} s")
            t = time.monotonic()
            nlm, f = nlm_tuned(low, hu, sd)
            outputs["NLM (tuned)"] = (nlm, f"h = {f:g} x {sd:.1f} HU, grid of {len(NLM_FACTORS)}, "
                                           f"{time.monotonic() - t:.1f} s")
            if have_bm3d:
                t = time.monotonic()
                outputs["BM3D (noise PSD)"] = (denoise_bm3d(low, noise_psd=psd),
                                               f"PSD of {sd:.1f} HU, {time.monotonic() - t:.1f} s")
            for method, (image, note) in outputs.items():
                rows.append({"slice": name, "dose": dose, "realisation": r, "method": method,
                             **scores(image, hu), "incident_flux": cal["incident_flux"],
                             "real_noise_sd": cal["real_noise_sd"], "added_noise_sd": sd, "note": note})
            if r == 0 and abs(dose - args.figure_dose) < 1e-9:
                panel = {m: image for m, (image, _) in outputs.items()}
            print(f"  {name} dose {dose:.0%} realisation {r}: " + ", ".join(
                f"{row['method']} {row['psnr_abd']:.2f} dB" for row in rows[-len(outputs):]), flush=True)
        print(f"  {name} dose {dose:.0%}: {time.monotonic() - t0:.0f} s (added noise {sd:.1f} HU in the body)",
              flush=True)
    return rows, panel


def save_panel(path: Path, name: str, images: dict[str, np.ndarray], ref: np.ndarray, dose: float, crop: int) -> None:
    """input / model / NLM / BM3D / reference side by side (abdomen window); a palette PNG to stay small."""
    from PIL import Image

    from ldct_clip.reporting.figures import save_panels

    def cut(a: np.ndarray) -> np.ndarray:
        if min(a.shape) > crop:
            x0, y0 = (a.shape[0] - crop) // 2, (a.shape[1] - crop) // 2
            a = a[x0 : x0 + crop, y0 : y0 + crop]
        zoom = max(1, 256 // min(a.shape))  # small slices: whole pixels, big enough for the titles
        return np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1)

    panels = [(f"{m} ({dose:.0%} dose)" if m == "input" else m, cut(img), PANEL_WINDOW) for m, img in images.items()]
    panels.append((f"reference (real {name})", cut(ref), PANEL_WINDOW))
    save_panels(path, panels)
    # 64 grey levels and the titles' yellow: a palette PNG of a fraction of the RGB one's size
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for g in np.linspace(0, 255, 64).round().astype(int) for v in (g, g, g)] + [255, 215, 0])
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def summarise(rows: list[dict], label: str) -> tuple[str, list[str]]:
    """Markdown table of means over realisations, and the verdicts: model vs NLM, distance to BM3D."""
    keys = ("psnr_abd", "ssim_abd", "psnr_paper", "ssim_paper")
    lines = ["| slice | dose | method | PSNR abd (dB) | SSIM abd | PSNR paper (dB) | SSIM paper |",
             "|---|---|---|---|---|---|---|"]
    verdicts = []
    groups: dict[tuple[str, float], dict[str, dict[str, float]]] = {}
    for row in rows:
        groups.setdefault((row["slice"], row["dose"]), {}).setdefault(row["method"], {k: [] for k in keys})
        for k in keys:
            groups[(row["slice"], row["dose"])][row["method"]][k].append(row[k])
    for (name, dose), methods in groups.items():
        means = {m: {k: float(np.mean(v)) for k, v in vals.items()} for m, vals in methods.items()}
        for m, v in means.items():
            lines.append(f"| {name} | {dose:.0%} | {m} | {v['psnr_abd']:.2f} | {v['ssim_abd']:.4f} | "
                         f"{v['psnr_paper']:.2f} | {v['ssim_paper']:.4f} |")
        me, nlm, bm3d = means[label], means["NLM (tuned)"], means.get("BM3D (noise PSD)")
        beats = me["psnr_abd"] > nlm["psnr_abd"] and me["ssim_abd"] > nlm["ssim_abd"]
        text = (f"{name} {dose:.0%}: {label} vs tuned NLM: PSNR abd {me['psnr_abd'] - nlm['psnr_abd']:+.2f} dB, "
                f"SSIM abd {me['ssim_abd'] - nlm['ssim_abd']:+.4f} -> {'beats NLM' if beats else 'does NOT beat NLM'}")
        if bm3d is not None:
            text += (f"; distance to BM3D: PSNR abd {me['psnr_abd'] - bm3d['psnr_abd']:+.2f} dB, "
                     f"SSIM abd {me['ssim_abd'] - bm3d['ssim_abd']:+.4f}")
        verdicts.append(text)
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (CSV, markdown, panels)")
    p.add_argument("--weights", default="demo", help="shipped weights name or a checkpoint file (default demo)")
    p.add_argument("--doses", type=float, nargs="+", default=list(DOSES))
    p.add_argument("--realisations", type=int, default=2, help="noise realisations per dose (default 2)")
    p.add_argument("--slices", nargs="+", default=list(SLICES), choices=list(SLICES))
    p.add_argument("--figure-dose", type=float, default=0.25)
    p.add_argument("--crop", type=int, default=320, help="panel crop of larger slices, pixels (default 320)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bm3d", action="store_true")
    args = p.parse_args(argv)

    import torch

    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.weights import resolve_weights, weights_label

    torch.set_num_threads(args.threads)
    weights = resolve_weights(args.weights)
    args.label = "demo" if args.weights == "demo" else Path(str(weights)).stem
    print(f"model: {weights} ({weights_label(weights) or args.label})", flush=True)
    model = load_checkpoint(weights).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    rows: list[dict] = []
    for file_name in args.slices:
        name = SLICES[file_name]
        hu, px, path = read_validation_slice(file_name)
        print(f"{name}: {path}, {hu.shape[0]} x {hu.shape[1]} px of {px:.3f} mm, HU [{hu.min():.0f}, {hu.max():.0f}]",
              flush=True)
        slice_rows, panel = validate_slice(name, hu, px, model, args)
        rows += slice_rows
        if panel:
            save_panel(args.out / f"{name}_panel.png", name, panel, hu, args.figure_dose, args.crop)
    fields = list(rows[0])
    with open(args.out / "validation.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    table, verdicts = summarise(rows, args.label)
    calibration = {r["slice"]: r for r in rows}.values()
    text = (f"# {args.label} on real CT: the two validation slices\n\n"
            f"- weights: {weights}\n- doses: {', '.join(f'{d:.0%}' for d in args.doses)}; "
            f"{args.realisations} realisation(s) each; means over realisations\n"
            + "".join(f"- {r['slice']}: real noise {r['real_noise_sd']:.1f} HU (uniform region), simulator I0 "
                      f"{r['incident_flux']:.3g} (calibrated to it), filter {FILTER}\n" for r in calibration) +
            f"- command: python scripts/validate_real_ct.py {' '.join(argv if argv is not None else sys.argv[1:])}\n\n"
            f"{table}\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n")
    (args.out / "validation.md").write_text(text)
    print(text)
    print(f"done in {time.monotonic() - start:.0f} s: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
