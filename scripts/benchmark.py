"""Speed, memory and fidelity of CT inference: the reference mode against the default fast path.

Measured in one run, side by side, each mode in its own process (so each has its own peak RSS):

* ``reference``: what the authors' code does: fp32, batch 1, eager, whole slice, and the full CLIP trunk
  including ``layer4`` (computed and thrown away);
* ``fast``: the bundle's default path (``precision=auto``: bf16 with the image skip and the full-resolution
  head in fp32 where the CPU/GPU runs bf16 natively; channels_last; ``sw_batch_size`` slices per call);
* ``memory``: the fast path on a large int16 volume (default 512x512x400), reporting peak RSS.

Fidelity uses weights whose output looks like a CT image: random weights give a near-constant output that
hides precision loss, so the last conv is fitted by least squares to map the decoder features of noisy
phantom slices onto the clean slices. (CLIP weights cannot be downloaded here: the encoder is random.)

    python scripts/benchmark.py                      # 8 slices reference, 64-slice volume fast, 400-slice memory
    python scripts/benchmark.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from ldct_clip.inference import denoise_volume
from ldct_clip.metrics import compute_metrics
from ldct_clip.networks import CLIPDenoiser
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.engine.precision import default_sw_batch_size, prepare_model, resolve_precision
from ldct_clip.simulation.gaussian import add_gaussian_noise
from ldct_clip.ct.hu import hu_to_unit

SIDE = 512


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def phantom_pair(slices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clean phantom slices and a noisy copy (white Gaussian noise, sigma 2/255 ~ 32 HU)."""
    clean = make_phantom((SIDE, SIDE, slices), seed=seed)
    return clean, add_gaussian_noise(clean, 2.0, seed=seed + 1)


def ct_like_model(device: torch.device, seed: int = 0) -> CLIPDenoiser:
    """RN50 CLIPDenoiser with its last conv fitted by least squares so that its output resembles CT."""
    torch.manual_seed(seed)
    model = CLIPDenoiser(encoder="RN50").eval()
    clean, noisy = phantom_pair(2, seed=100)
    x = torch.as_tensor(hu_to_unit(noisy)).permute(2, 0, 1)[:, None].float()
    y = torch.as_tensor(hu_to_unit(clean)).permute(2, 0, 1)[:, None].float()
    feats: list[torch.Tensor] = []
    handle = model.last.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    cols = torch.nn.functional.unfold(feats[0], 3, padding=1)  # (N, C*9, H*W)
    a = cols.permute(0, 2, 1).reshape(-1, cols.shape[1])
    b = y.reshape(-1, 1)
    pick = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))[:60000]
    w = torch.linalg.lstsq(a[pick].double(), b[pick].double()).solution.float()
    model.last.weight.data.copy_(w.reshape(model.last.weight.shape))
    return model.to(device)


class WithLayer4(torch.nn.Module):
    """The reference's forward: the denoiser plus CLIP's layer4 computed on layer3 and discarded."""

    def __init__(self, model: CLIPDenoiser) -> None:
        super().__init__()
        from open_clip.modified_resnet import ModifiedResNet

        self.model = model
        enc = model.encoder
        self.layer4 = ModifiedResNet(layers=[3, 4, 6, 3], output_dim=1024, heads=32, width=enc.width).layer4
        self.layer4.to(next(model.parameters()).device).eval()
        enc.layer3.register_forward_hook(self._run_layer4)

    def _run_layer4(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.layer4(output)  # computed, then thrown away (returning None keeps layer3's output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def time_volume(fn, volume: np.ndarray, warmup: int) -> tuple[np.ndarray, float]:
    fn(volume[..., :warmup])
    start = time.perf_counter()
    out = fn(volume)
    return out, time.perf_counter() - start


def run_mode(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.mode == "memory":
        model = prepare_model(CLIPDenoiser(encoder="RN50"), device)
        rng = np.random.default_rng(0)
        volume = rng.normal(40, 30, (SIDE, SIDE, args.memory_slices)).astype(np.int16)
        before = peak_rss_mb()
        start = time.perf_counter()
        denoise_volume(volume, model, sw_batch_size=args.sw_batch_size, precision="auto", device=device)
        seconds = time.perf_counter() - start
        return {"mode": "memory", "slices": args.memory_slices, "seconds": seconds, "slices_per_s": args.memory_slices / seconds,
                "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, "precision": resolve_precision("auto", device)}

    model = ct_like_model(device)
    clean, noisy = phantom_pair(args.slices if args.mode == "fast" else args.reference_slices)
    if args.mode == "reference":
        net = WithLayer4(model).eval()

        def fn(v):
            return denoise_volume(v, net, sw_batch_size=1, precision="fp32", channels_last=False, device=device)

        out, seconds = time_volume(fn, noisy, warmup=1)
        fp32 = out
    else:
        fast_model = prepare_model(model, device, compile=args.compile)

        def fn(v):
            return denoise_volume(v, fast_model, sw_batch_size=args.sw_batch_size, precision="auto", device=device)

        out, seconds = time_volume(fn, noisy, warmup=args.sw_batch_size)
        fp32 = denoise_volume(noisy, model, sw_batch_size=args.sw_batch_size, precision="fp32", device=device)
    n = noisy.shape[-1]
    result = {
        "mode": args.mode, "slices": n, "seconds": seconds, "slices_per_s": n / seconds, "peak_rss_mb": peak_rss_mb(),
        "precision": "fp32" if args.mode == "reference" else resolve_precision("auto", device),
        "psnr_db": compute_metrics(out, clean, "paper")["psnr"],
        "psnr_noisy_db": compute_metrics(noisy, clean, "paper")["psnr"],
    }
    if args.mode == "fast":
        diff = np.abs(out - fp32)
        result.update({
            "max_abs_hu_vs_fp32": float(diff.max()), "mean_abs_hu_vs_fp32": float(diff.mean()),
            "psnr_change_db_vs_fp32": result["psnr_db"] - compute_metrics(fp32, clean, "paper")["psnr"],
        })
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reference-slices", type=int, default=8)
    p.add_argument("--slices", type=int, default=64, help="depth of the 512x512xN volume for the fast path")
    p.add_argument("--memory-slices", type=int, default=400)
    p.add_argument("--sw-batch-size", type=int, help="slices per call (default: the bundle's, 2 on CPU, 16 on CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    p.add_argument("--modes", default="reference,fast,memory")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--mode", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = p.parse_args()
    if args.sw_batch_size is None:
        args.sw_batch_size = default_sw_batch_size(args.device)
    if args.mode:
        print(json.dumps(run_mode(args)))
        return 0

    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--device", args.device,
               "--reference-slices", str(args.reference_slices), "--slices", str(args.slices),
               "--memory-slices", str(args.memory_slices), "--sw-batch-size", str(args.sw_batch_size)]
        cmd += ["--compile"] if args.compile else []
        print(f"running {mode} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])

    print(f"\ndevice: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'mode':<10}{'precision':<10}{'slices':>7}{'slices/s':>10}{'s/slice':>9}{'peak RSS MB':>13}{'PSNR dB':>9}")
    for r in results.values():
        print(f"{r['mode']:<10}{r['precision']:<10}{r['slices']:>7}{r['slices_per_s']:>10.2f}{1 / r['slices_per_s']:>9.3f}"
              f"{r['peak_rss_mb']:>13.0f}{r.get('psnr_db', float('nan')):>9.2f}")
    if "reference" in results and "fast" in results:
        fast, ref = results["fast"], results["reference"]
        results["speedup"] = fast["slices_per_s"] / ref["slices_per_s"]
        print(f"\nspeed-up of the fast path over the reference mode: {results['speedup']:.2f}x")
        print(f"fidelity vs fp32: mean |diff| {fast['mean_abs_hu_vs_fp32']:.3f} HU, max |diff| "
              f"{fast['max_abs_hu_vs_fp32']:.2f} HU, PSNR change {fast['psnr_change_db_vs_fp32']:+.4f} dB "
              f"(noisy input {fast['psnr_noisy_db']:.2f} dB)")
    if "memory" in results:
        m = results["memory"]
        print(f"512x512x{m['slices']} int16 volume: peak RSS {m['peak_rss_mb']:.0f} MB, {m['slices_per_s']:.2f} slices/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
