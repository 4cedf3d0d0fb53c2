"""Speed and peak memory of the bundle's pipeline (``inference.json`` run by ``CaseEvaluator``) against
the in-memory ``denoise_volume`` on the same volume, each in its own process.

The volume is a procedural phantom written as an int16 NIfTI file; the network is the shipped demo weights
(demo weights trained on synthetic data, not the paper's CLIP model), so the figures are about the pipeline
(reading, windowing, inferer, postprocessing, writing), not about the RN50 trunk.

    python scripts/benchmark_pipeline.py                  # 512 x 512 x 64, CPU
    python scripts/benchmark_pipeline.py --slices 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, folder: Path, side: int, slices: int) -> dict:
    import nibabel as nib
    import numpy as np
    import torch

    from ldct_clip.checkpoints import load_checkpoint, network_overrides
    from ldct_clip.workflows import denoise_cases
    from ldct_clip.engine.precision import prepare_model
    from ldct_clip.inference import denoise_volume
    from ldct_clip.weights import resolve_weights

    weights = resolve_weights("demo")
    src = folder / "in" / "phantom.nii.gz"
    start = time.perf_counter()
    if mode == "pipeline":
        [result] = denoise_cases(folder / "in", folder / f"out-{mode}", ckpt_path=str(weights),
                                 **network_overrides(weights), device=torch.device("cpu"), progress=False,
                                 write_png=False)
        assert result.ok, result.message
    else:
        hu = np.asanyarray(nib.load(src).dataobj)  # int16 stays int16: denoise_volume converts slice by slice
        model = prepare_model(load_checkpoint(weights), "cpu")
        denoise_volume(hu, model, device="cpu", precision="auto")
    seconds = time.perf_counter() - start
    return {"mode": mode, "seconds": round(seconds, 2), "slices_per_s": round(slices / seconds, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.side, args.slices)))
        return

    import nibabel as nib
    import numpy as np

    from ldct_clip.simulation.phantom import make_phantom

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        hu = np.rint(make_phantom((args.side, args.side, args.slices), seed=0)).astype(np.int16)
        nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 1.0, 1.0])), folder / "in" / "phantom.nii.gz")
        rows = []
        for mode in ("denoise_volume", "pipeline"):
            out = subprocess.run([sys.executable, __file__, "--side", str(args.side), "--slices", str(args.slices),
                                  "--child", mode, str(folder)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.side} x {args.side} x {args.slices} int16 phantom, demo weights, CPU")
    print(f"{'mode':16s} {'seconds':>8s} {'slices/s':>9s} {'peak RSS MB':>12s}")
    for r in rows:
        print(f"{r['mode']:16s} {r['seconds']:8.2f} {r['slices_per_s']:9.2f} {r['peak_rss_mb']:12.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
