#!/usr/bin/env python
"""Fast model-selection score on the two real validation slices: the model only, cached low-dose inputs.

The inputs are exactly those of :mod:`scripts.validate_real_ct` (same slices, HU conversion, flux calibration,
simulator, filter and seeds: realisation ``r`` of dose ``d`` uses ``SEED + 100 * round(100 d) + r``), simulated
once and cached in ``--cache`` (an ``.npz`` per slice, dose and realisation); NLM and BM3D are not rerun (their
figures are in ``validate_real_ct``'s output).  For each checkpoint it prints and writes (``--json``) the
abdomen-window PSNR/SSIM per slice and dose (mean over realisations) and their mean over the six
(slice, dose) cells, the figure pilots are ranked by, and the gain on the CI quality test's held-out phantom.  For validation and model selection only: these two
slices are never training data.

    python scripts/score_real_ct.py --cache CACHE demo runs/a/final.pt runs/b/final.pt --json scores.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import validate_real_ct as vr  # noqa: E402


def cached_inputs(cache: Path, doses: tuple[float, ...], realisations: int,
                  slices: tuple[str, ...] = tuple(vr.SLICES)) -> list[dict]:
    """``[{"slice", "dose", "realisation", "low", "ref"}]``: the validation inputs, simulated once into ``cache``."""
    from ldct_clip.simulation.low_dose import simulate_low_dose

    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for file_name in slices:
        name = vr.SLICES[file_name]
        hu = px = cal = None
        for dose in doses:
            base = vr.SEED + 100 * round(100 * dose)
            for r in range(realisations):
                path = cache / f"{name}_d{round(100 * dose):03d}_r{r}.npz"
                if not path.exists():
                    if hu is None:
                        hu, px, _ = vr.read_validation_slice(file_name)
                        cal = vr.calibrate_flux(hu, px)
                    low = simulate_low_dose(hu, dose, incident_flux=cal["incident_flux"], pixel_size_mm=px,
                                            filter_name=vr.FILTER, seed=base + r)
                    tmp = path.with_suffix(".tmp.npz")
                    np.savez(tmp, low=low, ref=hu, px=px)
                    tmp.replace(path)
                with np.load(path) as z:
                    items.append({"slice": name, "dose": dose, "realisation": r, "low": z["low"], "ref": z["ref"]})
    return items


def score_model(model, items: list[dict], **retention: float | None) -> dict[str, float]:
    """Mean abdomen-window PSNR/SSIM per ``slice@dose`` and over all cells (``mean/psnr``, ``mean/ssim``), of the
    bundle's whole chain (``retention``: ``noise_retention`` and ``noise_retention_max_sd`` of
    :func:`~ldct_clip.inference.denoise_volume`; absent or ``None``: the config's; ``noise_retention=0``: the
    network's output alone)."""
    import torch

    from ldct_clip.inference import denoise_volume
    from ldct_clip.metrics import compute_metrics

    cells: dict[str, list[tuple[float, float]]] = {}
    with torch.no_grad():
        for it in items:
            out = denoise_volume(it["low"][:, :, None], model, precision="fp32", **retention)[:, :, 0]
            m = compute_metrics(out, it["ref"], vr.PROTOCOLS["abd"])
            cells.setdefault(f"{it['slice']}@{it['dose']:.2f}", []).append((m["psnr"], m["ssim"]))
    result = {}
    for key, vals in cells.items():
        result[f"{key}/psnr"] = round(float(np.mean([v[0] for v in vals])), 3)
        result[f"{key}/ssim"] = round(float(np.mean([v[1] for v in vals])), 4)
    result["mean/psnr"] = round(float(np.mean([v for k, v in result.items() if k.endswith("/psnr")])), 3)
    result["mean/ssim"] = round(float(np.mean([v for k, v in result.items() if k.endswith("/ssim")
                                                and not k.startswith("mean")])), 4)
    return result


def phantom_gain(model, region: str = "abdomen", seed: int = 7000, **retention: float | None) -> float:
    """Abdomen-window PSNR gain (output minus input, against the truth) on a held-out phantom of the CI quality
    tests (``tests/test_demo_weights.py``: abdomen, seed 7000, >= 2 dB; ``tests/test_demo_weights_regions.py``:
    chest, seed 7001, >= 1 dB; 192 x 192 x 2, 25 % dose).  A check that a model selected on real CT has not lost
    the phantoms (e.g. by softening every sharp edge, or by a halo along the chest wall)."""
    import torch

    from ldct_clip.inference import denoise_volume
    from ldct_clip.metrics import compute_metrics
    from ldct_clip.simulation.phantom import make_low_dose_example, make_phantom

    low, _ = make_low_dose_example((192, 192, 2), 0.25, seed=seed, region=region)
    clean = make_phantom((192, 192, 2), region=region, seed=seed)
    with torch.no_grad():
        out = denoise_volume(low, model, precision="fp32", **retention)
    protocol = vr.PROTOCOLS["abd"]
    return round(compute_metrics(out, clean, protocol)["psnr"] - compute_metrics(low, clean, protocol)["psnr"], 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="+", help="'demo' or checkpoint files")
    p.add_argument("--cache", type=Path, required=True, help="folder of the cached low-dose inputs")
    p.add_argument("--doses", type=float, nargs="+", default=list(vr.DOSES))
    p.add_argument("--realisations", type=int, default=2)
    p.add_argument("--slices", nargs="+", default=list(vr.SLICES), choices=list(vr.SLICES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--noise-retention", type=float, default=None,
                   help="share of the removed noise given back (default: inference.json's; 0: the network alone, "
                        "as the #17 pilots table was scored)")
    p.add_argument("--noise-retention-max-sd", type=float, default=None,
                   help="at most this SD (HU) of the removed noise given back per slice (default: inference.json's; "
                        "inf: no cap)")
    p.add_argument("--json", type=Path, default=None, help="append {weights: scores} to this JSON file")
    args = p.parse_args(argv)

    import torch

    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.weights import resolve_weights

    torch.set_num_threads(args.threads)
    items = cached_inputs(args.cache, tuple(args.doses), args.realisations, tuple(args.slices))
    table = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    for w in args.weights:
        t0 = time.monotonic()
        model = load_checkpoint(resolve_weights(w)).eval()
        retention = {"noise_retention": args.noise_retention, "noise_retention_max_sd": args.noise_retention_max_sd}
        res = score_model(model, items, **retention)
        res["phantom_gain_db"] = phantom_gain(model, **retention)
        res["chest_gain_db"] = phantom_gain(model, "chest", 7001, **retention)
        table[w] = res
        cells = " ".join(f"{k.split('/')[0]} {res[k]:.2f}/{res[k.replace('psnr', 'ssim')]:.3f}"
                         for k in res if k.endswith("/psnr") and not k.startswith("mean"))
        print(f"{w}: mean {res['mean/psnr']:.3f} dB / {res['mean/ssim']:.4f} | {cells} | phantom check gain "
              f"{res['phantom_gain_db']:+.2f} dB, chest {res['chest_gain_db']:+.2f} dB ({time.monotonic() - t0:.0f} s)",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
