#!/usr/bin/env python
"""Train a small CLIPDenoiser with the bundle's training recipe on simulated CT, within a wall-clock budget.

Evidence that the recipe learns, without Mayo data or CLIP weights (neither can be downloaded here):

1. Data: the procedural abdomen phantom of :mod:`ldct_clip.phantom`. Each case is a simulated normal-dose scan
   (projection-domain full-dose noise, :func:`~ldct_clip.phantom.make_low_dose_example`). Training sees only the
   normal-dose volumes of the training seeds, plus the online training noise of ``monai_bundle/configs/train.json``
   (Gaussian sigma/255 on the [0, 1] image by default, or the projection simulator) -- the paper's set-up.
2. Training: ``train.json`` itself (through :class:`monai.bundle.ConfigWorkflow`), with a small network
   (``--layers``/``--width``), a RANDOM, frozen encoder (``encoder_weights=None``: no CLIP weights here, so the
   figures are a lower bound of what the recipe gives with CLIP), smaller crops and batches for a CPU, and the
   number of iterations chosen from a short timing run so that the cosine schedule ends within ``--minutes``
   (a hard time limit stops it in any case).
3. Test: held-out seeds (different phantoms and noise), two noise kinds:
   ``gaussian`` -- the normal-dose test volume plus the training noise (in distribution) against the normal-dose
   volume; ``low-dose`` -- the simulated quarter-dose volume (correlated FBP noise; out of distribution) against
   the normal-dose volume. PSNR/SSIM of the noisy input and of the denoised output under the paper's protocol
   (full [-1024, 3072] HU, data range 4096) and the ldct-benchmark abdomen window (C 50 / W 400 on [0, 1]).

Example::

    python scripts/train_small.py --minutes 5 --json train_small.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget of the training itself")
    p.add_argument("--width", type=int, default=16, help="ResNet stem width of the small encoder")
    p.add_argument("--layers", type=int, nargs=4, default=[1, 1, 1, 1], help="blocks per ResNet stage")
    p.add_argument("--size", type=int, default=192, help="in-plane size of the simulated slices")
    p.add_argument("--slices", type=int, default=8, help="slices per simulated volume")
    p.add_argument("--train-cases", type=int, default=6, help="training phantoms (seeds 0..n-1)")
    p.add_argument("--test-cases", type=int, default=2, help="test phantoms (seeds 1000..)")
    p.add_argument("--dose", type=float, default=0.25, help="dose fraction of the simulated low-dose test scans")
    p.add_argument("--flux", type=float, default=3e4,
                   help="full-dose photons per detector bin of the simulated scans (3e4: about 25 HU normal-dose and "
                        "50 HU quarter-dose noise in soft tissue, near 1 mm Mayo-2016 slices)")
    p.add_argument("--noise", choices=["gaussian", "projection"], default="gaussian", help="training noise")
    p.add_argument("--sigma", type=float, default=5.0, help="Gaussian training noise, in 1/255 of the [0, 1] window")
    p.add_argument("--crop", type=int, default=64, help="training crop size (the paper: 128)")
    p.add_argument("--batch", type=int, default=8, help="batch size (the paper: 16)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (the paper: 3e-4)")
    p.add_argument("--iterations", type=int, default=0,
                   help="fixed iteration count (no calibration run; --minutes still stops it): with a large value, "
                        "measures how many iterations fit in --minutes")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--workdir", type=Path, default=None, help="keep data, logs and checkpoints here (default: temp)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------


def make_data(args: argparse.Namespace, root: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Write training/validation NIfTI volumes under ``root``; return the test pairs (ldct, ndct) and seconds."""
    from ldct_clip.io.synthetic import write_nifti
    from ldct_clip.phantom import make_low_dose_example

    t0 = time.monotonic()
    shape = (args.size, args.size, args.slices)
    for seed in range(args.train_cases):
        _, ndct = make_low_dose_example(shape, args.dose, seed=seed, incident_flux=args.flux)
        write_nifti(root / "train" / f"case{seed:03d}.nii.gz", np.rint(ndct))
    # validation during training: one simulated low-dose / normal-dose pair (selects models/model.pt)
    ldct, ndct = make_low_dose_example((args.size, args.size, 4), args.dose, seed=500, incident_flux=args.flux)
    write_nifti(root / "val_ld" / "val.nii.gz", np.rint(ldct))
    write_nifti(root / "val_nd" / "val.nii.gz", np.rint(ndct))
    tests = [make_low_dose_example(shape, args.dose, seed=1000 + i, incident_flux=args.flux)
             for i in range(args.test_cases)]
    return tests, time.monotonic() - t0


def train(
    args: argparse.Namespace, root: Path, iterations: int, val_interval: int, out: str = "", log_interval: int = 25
) -> tuple[torch.nn.Module, dict]:
    """Run ``train.json`` on the data under ``root``; checkpoints and logs go to ``root/<out>models``/``logs``."""
    from ignite.engine import Events
    from ignite.handlers import TimeLimit
    from monai.bundle import ConfigWorkflow

    configs = ROOT / "monai_bundle" / "configs"
    overrides = {
        "dataset_dir": str(root / "train"),
        "val_low_dose_dir": str(root / "val_ld"),
        "val_normal_dose_dir": str(root / "val_nd"),
        "ckpt_dir": str(root / f"{out}models"),
        "output_dir": str(root / f"{out}logs"),
        "device": f"$torch.device('{args.device}')",
        "network_def#layers": list(args.layers),
        "network_def#width": args.width,
        "network_def#encoder_weights": None,
        "iterations": iterations,
        "val_interval": val_interval,
        "batch_size": args.batch,
        "crop_size": args.crop,
        "lr": args.lr,
        "noise": args.noise,
        "sigma": args.sigma,
        "num_workers": 0,
        "log_interval": log_interval,
        "val_max_slices": 4,
    }
    workflow = ConfigWorkflow(config_file=str(configs / "train.json"), workflow_type="train", **overrides)
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(max(1, int(math.ceil(args.minutes * 60.0)))))
    t0, c0 = time.monotonic(), time.process_time()
    workflow.run()
    seconds, cpu_seconds = time.monotonic() - t0, time.process_time() - c0
    workflow.finalize()
    network = workflow.parser.get_parsed_content("network_def")
    return network, {"seconds": seconds, "cpu_seconds": cpu_seconds, "iterations_done": int(trainer.state.iteration)}


def evaluate(model: torch.nn.Module, tests: list[tuple[np.ndarray, np.ndarray]], args: argparse.Namespace) -> list[dict]:
    from ldct_clip.inference import denoise_volume
    from ldct_clip.metrics import compute_metrics
    from ldct_clip.simulation import add_gaussian_noise

    model.eval()
    rows = []
    for kind in ("gaussian", "low-dose"):
        per = {}
        for i, (ldct, ndct) in enumerate(tests):
            noisy = add_gaussian_noise(ndct, args.sigma, seed=2000 + i) if kind == "gaussian" else ldct
            pred = denoise_volume(noisy, model, device=args.device)
            for protocol in ("paper", "ldct-benchmark-abdomen"):
                for which, img in (("input", noisy), ("output", pred)):
                    m = compute_metrics(img, ndct, protocol)
                    for name in ("psnr", "ssim"):
                        per.setdefault((protocol, which, name), []).append(m[name])
        for protocol in ("paper", "ldct-benchmark-abdomen"):
            rows.append({
                "test_noise": kind,
                "protocol": protocol,
                **{f"{which}_{name}": float(np.mean(per[(protocol, which, name)]))
                   for which in ("input", "output") for name in ("psnr", "ssim")},
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from ldct_clip.checkpoints import load_checkpoint, save_checkpoint
    from ldct_clip.training import read_log

    with tempfile.TemporaryDirectory(prefix="ldct-train-small-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        tests, data_seconds = make_data(args, root)
        if args.iterations > 0:
            iterations, val_interval = args.iterations, max(1, args.iterations // 4)
            print(f"simulated data in {data_seconds:.0f} s; {iterations} iterations or {args.minutes} minutes",
                  flush=True)
        else:
            # a short run of the same bundle measures the time per iteration (data, step, handlers)
            train(args, root, 40, 40, out="calibration_", log_interval=10)
            times = [r["seconds"] for r in read_log(root / "calibration_logs" / "train_log.jsonl", "train")]
            step = (times[-1] - times[0]) / 30.0
            # iterations that fit the budget (5 % spare for the 4 validations); a multiple of 4
            val_interval = max(1, int(args.minutes * 60.0 * 0.95 / step) // 4)
            iterations = 4 * val_interval
            print(f"simulated data in {data_seconds:.0f} s; {step * 1000:.0f} ms per step -> {iterations} iterations "
                  f"(batch {args.batch}, crop {args.crop}, width {args.width}, layers {args.layers}, random encoder)",
                  flush=True)
        network, info = train(args, root, iterations, val_interval)
        final = save_checkpoint(network, root / "models" / "final.pt")
        model = load_checkpoint(final, map_location=args.device)
        rows = evaluate(model, tests, args)
        log = read_log(root / "logs" / "train_log.jsonl", "train")
        losses = [r["loss"] for r in log if r["loss"] is not None]

    n = max(1, len(losses) // 10)
    result = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "encoder": "random (no CLIP weights available offline)",
        "iterations_planned": iterations,
        "iterations_done": info["iterations_done"],
        "train_seconds": round(info["seconds"], 1),
        "train_cpu_seconds": round(info["cpu_seconds"], 1),
        "loss_first": float(np.mean(losses[:n])) if losses else math.nan,
        "loss_last": float(np.mean(losses[-n:])) if losses else math.nan,
        "results": rows,
    }
    print(f"\ntrained {info['iterations_done']}/{iterations} iterations in {info['seconds']:.0f} s wall, "
          f"{info['cpu_seconds']:.0f} s CPU of this process ({info['iterations_done'] / max(info['cpu_seconds'], 1e-9):.2f} "
          f"iterations per CPU-s, load average {os.getloadavg()[0]:.1f}); "
          f"L1 loss (first/last 10 %): {result['loss_first']:.4f} -> {result['loss_last']:.4f}\n")
    head = f"{'test noise':<10} {'protocol':<24} {'PSNR in':>8} {'PSNR out':>9} {'SSIM in':>8} {'SSIM out':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['test_noise']:<10} {r['protocol']:<24} {r['input_psnr']:8.2f} {r['output_psnr']:9.2f} "
              f"{r['input_ssim']:8.4f} {r['output_ssim']:9.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
