#!/usr/bin/env python
"""Train the demo weights: a small CLIPDenoiser on synthetic CT, on a CPU, resumable.

These are *demo weights trained on synthetic data, not the paper's CLIP model*: CLIP weights and the authors'
checkpoints cannot reach these machines, so the encoder is a small ResNet trunk (width 16, layers [1, 1, 1, 1])
initialised at random, and the data are the procedural phantoms of :mod:`ldct_clip.simulation.phantom` (abdomen, chest,
head, neck) at several sizes, pixel spacings and slice thicknesses.  The real CT images inside pydicom and
pydicom-data are never used here.

Stages (each resumable: finished work is kept in ``--workdir`` and skipped or continued):

``data``   a bank of (noisy, clean) slice pairs on disk: projection-domain noise
           (:func:`ldct_clip.simulation.low_dose.simulate_low_dose`, Poisson + electronic noise, FBP) at a dose drawn
           from ``--dose-range`` (default 10 %-50 % of a 7.5e4-6e5 photon full dose), random FBP filter;
           the target is the noise-free phantom.  ``--shard i/n`` splits the work over processes.
``train``  the paper's recipe (:class:`ldct_clip.engine.trainer.DenoisingTrainer`: L1 loss, AdamW 3e-4 / 1e-4,
           cosine to 1e-6, mixup Beta(1.2, 1.2) on half the batches, gradient-norm clipping 0.01, progressive
           feature augmentation 0.025, flips and 90-degree rotations) on random crops of the bank, or with the
           paper's i.i.d. Gaussian 5/255 noise on the clean slices (``--noise gaussian``, the ablation).
           ``--encoder frozen`` keeps the random trunk fixed (the paper's set-up with CLIP weights),
           ``--encoder trained`` trains it too (the authors' ablation).  A checkpoint of model, optimizer,
           scheduler and trainer every ``--save-every`` iterations; re-running the command resumes from it.
``eval``   PSNR/SSIM (abdomen window and paper protocol) of a run on validation phantoms of every region at
           25 % dose (seeds 5000+, disjoint from training 0..N and from the benchmark's 9000+).
``export`` the model's state dict (float32, no pickled code) and a provenance JSON next to it.

Example (what made ``ldct_clip/pretrained/demo_ct.pt``; see its ``demo_ct.json``)::

    python scripts/train_demo.py data --workdir W --cases 1200 --shard 0/2   # and 1/2 (stopped at 269 cases)
    python scripts/train_demo.py train --workdir W --run final --encoder trained --iterations 5000
    python scripts/train_demo.py train --workdir W --run final2 --encoder trained --iterations 3000 --lr 1e-4 \
        --seed 10 --init-from W/runs/final/final.pt
    python scripts/train_demo.py eval --workdir W --run final2
    python scripts/train_demo.py export --workdir W --run final2 --out ldct_clip/pretrained/demo_ct.pt
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ldct_clip.simulation.phantom import REGIONS, make_low_dose_example, make_phantom  # noqa: E402
from ldct_clip.weights import DEMO_LABEL  # noqa: E402

HU_WINDOW = (-1024.0, 3072.0)
VAL_SEED = 5000
FILTERS = ("hann", "hann", "cosine", "shepp-logan")
REGION_NAMES = sorted(REGIONS)


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------


def make_case(index: int, dose_range: tuple[float, float], slices: int = 2) -> dict[str, np.ndarray]:
    """Training case ``index``: a random region, size, spacing, dose, flux and filter, all fixed by ``index``.

    Returns int16 ``clean`` and ``noisy`` arrays ``(Z, X, Y)`` in HU and the case's parameters.
    """
    from ldct_clip.simulation.low_dose import simulate_low_dose

    rng = np.random.default_rng([index, 20240601])
    region = REGION_NAMES[index % len(REGION_NAMES)]
    n = int(rng.choice([192, 256, 256, 320]))
    px = REGIONS[region].fov_mm / n * float(rng.uniform(0.75, 1.3))
    thickness = float(rng.uniform(1.0, 5.0))
    clean = make_phantom((n, n, slices), region=region, pixel_size_mm=px, slice_thickness_mm=thickness,
                         texture_hu=float(rng.uniform(2.0, 8.0)), seed=index)
    dose = float(rng.uniform(*dose_range))
    flux = float(3e5 * math.exp(rng.uniform(math.log(0.25), math.log(2.0))))
    filt = str(rng.choice(FILTERS))
    noisy = simulate_low_dose(clean, dose, noise_model="poisson", incident_flux=flux, pixel_size_mm=px,
                              filter_name=filt, seed=index)
    to_i16 = lambda a: np.rint(np.clip(a, -32768, 32767)).astype(np.int16).transpose(2, 0, 1)  # noqa: E731
    return {"clean": to_i16(clean), "noisy": to_i16(noisy), "dose": np.float32(dose), "flux": np.float32(flux),
            "pixel_mm": np.float32(px), "region": np.array(region), "filter": np.array(filt)}


def stage_data(args: argparse.Namespace) -> None:
    bank = args.workdir / args.bank
    bank.mkdir(parents=True, exist_ok=True)
    shard, nshards = (int(v) for v in args.shard.split("/"))
    t0 = time.monotonic()
    done = 0
    for i in range(shard, args.cases, nshards):
        path = bank / f"case{i:05d}.npz"
        if path.exists():
            continue
        if args.content == "legacy":
            case = make_case(i, tuple(args.dose_range))
        else:  # unit-SD noise, rescaled to --noise-sd at training (ldct_clip.simulation.training_bank)
            from ldct_clip.simulation.training_bank import make_content_case

            case = make_content_case(i, args.content, seed=args.bank_seed, pixel_mm=tuple(args.pixel_mm))
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **case)
        os.replace(tmp, path)
        done += 1
        if done % 20 == 0:
            print(f"[data {shard}/{nshards}] {done} cases in {time.monotonic() - t0:.0f} s", flush=True)
    print(f"[data {shard}/{nshards}] finished: {done} new cases in {time.monotonic() - t0:.0f} s", flush=True)


class BankCrops(torch.utils.data.IterableDataset):
    """An endless stream of random ``crop x crop`` (noisy, clean) pairs in [0, 1] from the bank.

    ``noise="projection"``: the bank's simulated low-dose slice; ``"gaussian"``: the clean slice plus the
    paper's i.i.d. Gaussian noise of ``sigma / 255`` of the [-1024, 3072] window (about 80 HU for 5).
    Random flips and 90-degree rotations.  The network input is clipped to [0, 1] as at inference
    (:func:`ldct_clip.ct.hu.hu_to_unit`).  Items: ``{"image": (1, crop, crop), "label": (1, crop, crop)}``.
    """

    def __init__(self, files: list[str], crop: int, noise: str, sigma: float, seed: int) -> None:
        self.crop, self.noise, self.sigma, self.seed = int(crop), noise, float(sigma), int(seed)
        clean, noisy = [], []
        for f in files:
            with np.load(f) as z:
                clean.extend(z["clean"])
                noisy.extend(z["noisy"])
        self.clean, self.noisy = clean, noisy

    def __iter__(self):
        from ldct_clip.simulation.training_bank import augmented_pair

        rng = np.random.default_rng(self.seed)
        lo, hi = HU_WINDOW
        while True:
            k = int(rng.integers(len(self.clean)))
            c, n = self.clean[k], self.noisy[k]
            i = int(rng.integers(c.shape[0] - self.crop + 1))
            j = int(rng.integers(c.shape[1] - self.crop + 1))
            c = c[i:i + self.crop, j:j + self.crop].astype(np.float32)
            if self.noise == "gaussian":
                n = c + rng.standard_normal(c.shape).astype(np.float32) * (self.sigma / 255.0 * (hi - lo))
            else:
                n = n[i:i + self.crop, j:j + self.crop].astype(np.float32)
            yield augmented_pair(n, c, rng, (lo, hi))


# ----------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------


def identity_init(net: torch.nn.Module, scale: float = 0.1) -> None:
    """Start the network near the identity: channel 0 of the full-resolution path carries the image straight
    to the output (centre taps of 1; inputs are >= 0, so LeakyReLU passes them), and the other random weights of
    that path are scaled by ``scale``.  A random decoder otherwise spends most of a short CPU budget learning to
    reproduce its input to a few HU; with this start it learns the noise from the first iteration."""
    block = net.up_path[4].conv_block.block
    conv0, conv1, last = block[0], block[2], net.last
    c_u = conv0.in_channels - 3  # the image skip is concatenated last
    with torch.no_grad():
        net.first.weight.zero_()
        net.first.weight[:, 0, 0, 0] = 1.0
        for conv in (conv0, conv1, last):
            conv.weight.mul_(scale)
        conv0.weight[0].zero_()
        conv0.weight[0, c_u, 1, 1] = 1.0
        conv1.weight[0].zero_()
        conv1.weight[0, 0, 1, 1] = 1.0
        last.weight[0, 0].zero_()
        last.weight[0, 0, 1, 1] = 1.0


def gate_in_network_units(levels_hu: list[float]) -> list[float]:
    """Noise-gate levels from HU to the network's input units: the level is estimated on the input, HU mapped to
    [0, 1] over the default window."""
    from ldct_clip.ct.hu import DEFAULT_HU_WINDOW

    hu_min, hu_max = DEFAULT_HU_WINDOW
    return [g / (hu_max - hu_min) for g in levels_hu]


def build_network(args: argparse.Namespace) -> torch.nn.Module:
    from ldct_clip.networks import CLIPDenoiser

    torch.manual_seed(args.seed)
    gate = gate_in_network_units(getattr(args, "film_gate", (0.0, 0.0)))
    net = CLIPDenoiser(layers=list(args.layers), width=args.width, encoder_weights=None, aug_level=0.025,
                       noise_conditioning=args.noise_conditioning, noise_gate=gate,
                       encoder_bn="frozen" if getattr(args, "film_only", False) else "train")
    if args.init_from:
        from ldct_clip.checkpoints import load_weights

        # continue from an earlier run (a new schedule); a noise-conditioned model may start from weights trained
        # without the conditioning, which starts as an identity
        load_weights(net, args.init_from, new_prefixes=("noise_film.",) if args.noise_conditioning else ())
    elif args.init == "identity":
        identity_init(net)
    if args.encoder_from:
        # the paper's set-up in miniature: a trunk pretrained elsewhere (here: on natural images), then frozen
        from ldct_clip.weights import read_state_dict

        state = read_state_dict(args.encoder_from)
        trunk = {k: v for k, v in state.items() if k.startswith(("encoder.", "first."))}
        missing = net.load_state_dict(trunk, strict=False).missing_keys
        if any(k.startswith(("encoder.", "first.")) for k in missing):
            raise SystemExit(f"{args.encoder_from} lacks trunk weights: {missing[:3]}")
    if args.encoder == "trained":
        for p in net.encoder.parameters():
            p.requires_grad_(True)
    if args.film_only:
        # only the conditioning learns what to change with the noise level; every other weight stays that of
        # --init-from, and so do the encoder's BatchNorm running statistics (encoder_bn "frozen"), so that where
        # the gate is closed the model is exactly the one it started from
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith("noise_film."))
    return net


def run_dir(args: argparse.Namespace) -> Path:
    return args.workdir / "runs" / args.run


def stage_train(args: argparse.Namespace) -> None:
    from ignite.engine import Events
    from ignite.handlers import Checkpoint, DiskSaver
    from monai.handlers import LrScheduleHandler

    from ldct_clip.engine.mixup import BatchMixup
    from ldct_clip.engine.trainer import DenoisingTrainer
    from ldct_clip.handlers.json_lines import JSONLinesLogger

    torch.set_num_threads(args.threads)
    out = run_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for bank in args.bank:
        found = sorted(glob.glob(str(args.workdir / bank / "case*[0-9].npz")))
        files += found[: args.max_cases] if args.max_cases else found
    if not files:
        raise SystemExit(f"no bank in {args.workdir} {args.bank}: run the data stage first")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    settings["bank_cases"] = len(files)
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
    net = build_network(args)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.iterations, eta_min=1e-6)
    with np.load(files[0]) as z:
        scaled = "noise_unit" in z.files
    if scaled:  # a content bank: the noise SD is drawn per crop from --noise-sd
        from ldct_clip.simulation.training_bank import ContentCrops

        data = ContentCrops(files, args.crop, tuple(args.noise_sd), seed=args.seed + 1,
                            target_sd=tuple(args.target_noise_sd) if args.target_noise_sd else None)
    else:
        data = BankCrops(files, args.crop, args.noise, args.sigma, seed=args.seed + 1)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, num_workers=0)
    if args.iterations % args.save_every:
        raise SystemExit("--iterations must be a multiple of --save-every")
    trainer = DenoisingTrainer(
        device=torch.device("cpu"), max_epochs=args.iterations // args.save_every, train_data_loader=loader,
        network=net, optimizer=optimizer, epoch_length=args.save_every,
        mixup=BatchMixup(alpha=1.2, prob=0.5, seed=args.seed + 2), grad_clip_norm=0.01,
        train_handlers=[LrScheduleHandler(scheduler, epoch_level=False, print_lr=False),
                        JSONLinesLogger(out / "train_log.jsonl", interval=25)],
    )
    objects = {"model": net, "optimizer": optimizer, "lr_scheduler": scheduler, "trainer": trainer}
    ckpt = Checkpoint(objects, DiskSaver(str(out), require_empty=False), filename_prefix="resume", n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, ckpt)
    previous = sorted(out.glob("resume_checkpoint_*.pt"), key=os.path.getmtime)
    if previous:
        Checkpoint.load_objects(objects, torch.load(previous[-1], map_location="cpu", weights_only=True))
        print(f"resumed from {previous[-1].name} at iteration {trainer.state.iteration}", flush=True)
    t0 = time.monotonic()
    wall = {"seconds": 0.0}
    wall_file = out / "wall_seconds.json"
    before = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else 0.0

    @trainer.on(Events.EPOCH_COMPLETED)
    def _record(engine) -> None:
        wall["seconds"] = before + time.monotonic() - t0
        wall_file.write_text(json.dumps({"seconds": wall["seconds"], "iteration": engine.state.iteration}))
        print(f"[{args.run}] iteration {engine.state.iteration}/{args.iterations}, {wall['seconds']:.0f} s", flush=True)

    if args.max_minutes:
        from ignite.handlers import TimeLimit

        # a safety stop for a shared CPU: the run ends early (learning rate not yet annealed) and says so
        trainer.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(int(args.max_minutes * 60)))
    trainer.run()
    if trainer.state.iteration < args.iterations:
        print(f"[{args.run}] stopped by --max-minutes at iteration {trainer.state.iteration}/{args.iterations}")
    wall_file.write_text(json.dumps({"seconds": before + time.monotonic() - t0, "iteration": trainer.state.iteration}))
    from ldct_clip.checkpoints import save_checkpoint

    save_checkpoint(net, out / "final.pt")
    print(f"[{args.run}] done: {out / 'final.pt'}", flush=True)


# ----------------------------------------------------------------------------------------------------------
# evaluation and export
# ----------------------------------------------------------------------------------------------------------


def validation_cases(size: int = 192, dose: float = 0.25) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Validation phantoms (one 2-slice volume per region, seeds 5000+): ``(region, low_dose, clean)`` in HU."""
    cases = []
    for r, region in enumerate(REGION_NAMES):
        seed = VAL_SEED + r
        ld, _ = make_low_dose_example((size, size, 2), dose, seed=seed, region=region)
        cases.append((region, ld, make_phantom((size, size, 2), region=region, seed=seed)))
    return cases


def evaluate_model(model: torch.nn.Module, cases) -> dict[str, float]:
    from ldct_clip.inference import denoise_volume
    from ldct_clip.metrics import compute_metrics

    model.eval()
    scores: dict[str, list[float]] = {}
    for _, ld, clean in cases:
        out = denoise_volume(ld, model, precision="fp32")
        for protocol in ("ldct-benchmark-abdomen", "paper"):
            for which, img in (("input", ld), ("output", out)):
                m = compute_metrics(img, clean, protocol)
                for name in ("psnr", "ssim"):
                    scores.setdefault(f"{protocol}/{which}_{name}", []).append(m[name])
    return {k: round(float(np.mean(v)), 4) for k, v in scores.items()}


def stage_eval(args: argparse.Namespace) -> None:
    from ldct_clip.checkpoints import load_checkpoint

    torch.set_num_threads(args.threads)
    out = run_dir(args)
    result = evaluate_model(load_checkpoint(out / "final.pt"), validation_cases())
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"run": args.run, **result}, indent=2))


def stage_export(args: argparse.Namespace) -> None:
    import hashlib

    from ldct_clip.checkpoints import load_checkpoint, save_checkpoint

    src = run_dir(args)
    model = load_checkpoint(src / "final.pt")
    expert_of = Path(args.as_noise_expert_of) if getattr(args, "as_noise_expert_of", None) else None
    if expert_of is not None:
        # the run becomes the noise expert of other weights: they answer below the gate, the run above it
        from ldct_clip.checkpoints import extract_state_dict, infer_config
        from ldct_clip.networks import CLIPDenoiser
        from ldct_clip.weights import read_state_dict

        base = extract_state_dict(read_state_dict(expert_of))
        expert = model.state_dict()
        model = CLIPDenoiser(**infer_config(base), noise_expert=infer_config(expert),
                             noise_expert_gate=gate_in_network_units(args.expert_gate))
        model.load_state_dict({**base, **{f"noise_expert.{k}": v for k, v in expert.items()},
                               "noise_expert_gate": model.noise_expert_gate})
    dest = Path(args.out)
    prov = dest.with_suffix(".json")
    old = json.loads(prov.read_text()) if prov.exists() else {}  # read before the weights it describes are replaced
    settings = json.loads((src / "settings.json").read_text())
    init_from = Path(settings["init_from"]) if settings.get("init_from") else None
    init_prov = None
    if init_from is not None and not (init_from.parent / "wall_seconds.json").exists():
        # continued from shipped weights (not a run of this workdir): their provenance file describes them
        init_json = init_from.with_suffix(".json")
        if init_from.resolve() == dest.resolve() or not init_json.exists():
            init_prov = old if init_from.resolve() == dest.resolve() else None
        else:
            init_prov = json.loads(init_json.read_text())
        if init_prov is None:
            raise SystemExit(f"{init_from}: no run folder and no provenance JSON next to it")
    # a pair stores its expert in float16, so that the shipped file stays under 5 MiB; the weights it is the
    # expert of stay float32, so that below the gate the model is exactly those
    save_checkpoint(model, dest, half=("noise_expert.",) if expert_of is not None else ())
    wall = json.loads((src / "wall_seconds.json").read_text())
    banks = settings.get("bank", ["bank"])
    ids = sorted(int(Path(f).stem[4:]) for f in glob.glob(str(args.workdir / banks[0] / "case*[0-9].npz")))
    ids = ids[: settings["max_cases"]] if settings.get("max_cases") else ids
    missing = sorted(set(range(ids[-1] + 1)) - set(ids)) if ids else []
    content_data = None
    if settings.get("noise_sd") and banks != ["bank"]:  # content banks (ldct_clip.simulation.training_bank)
        counts, pixels = {}, {}
        for b in banks:
            files = sorted(glob.glob(str(args.workdir / b / "case*[0-9].npz")))
            files = files[: settings["max_cases"]] if settings.get("max_cases") else files
            with np.load(files[0]) as z:
                counts[f"{b}: {z['content']}"] = len(files)
            px = []
            for f in files:
                with np.load(f) as z:
                    px.append(float(z["pixel_mm"]))
            pixels[b] = [round(min(px), 2), round(max(px), 2)]
        target = settings.get("target_noise_sd")
        content_data = (
            f"{settings['bank_cases']} single-slice cases of ldct_clip.simulation.training_bank.make_content_case "
            f"(case i of each content, i = 0..n-1): {counts} (phantom: the procedural regions; textured: "
            "ldct_clip.simulation.textured_phantom bodies of 15-45 cm; natural: photographs bundled with scikit-image, "
            f"ldct_clip.simulation.natural_content, mapped to HU); 192-320 px, pixel sizes log-uniform (range of "
            f"each bank's cases, mm: {pixels}), FBP filters "
            "ramp/shepp-logan/cosine/hamming/hann with the matching resolution blur in 70 % of cases (sharp edges in the "
            "others), flux 5e4-1e6; projection-domain "
            f"noise (simulate_low_dose, Poisson) rescaled per crop to an SD of {settings['noise_sd']} HU (log-uniform); "
            + (f"target: the normal-dose image (noise SD {target} HU, the input adding independent extra noise)"
               if target else "target: the noise-free slice")
            + ". No real CT (pydicom / pydicom-data) was used.")
    provenance = {
        "name": "demo",
        "label": DEMO_LABEL,
        "file": dest.name,
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "bytes": dest.stat().st_size,
        "architecture": {"class": "ldct_clip.networks.CLIPDenoiser", "layers": settings["layers"],
                         "width": settings["width"], "encoder_weights": None,
                         "noise_conditioning": bool(settings.get("noise_conditioning", False)),
                         **({"noise_gate_hu": settings["film_gate"],
                             "noise_gate": "the conditioning is an identity below the first level and acts fully "
                                           "above the second (HU of the scale-1 estimate, estimate_noise_level)"}
                            if settings.get("noise_conditioning") and any(settings.get("film_gate") or ()) else {}),
                         "encoder": f"{settings['encoder']} (random initialisation, no CLIP weights)"},
        "input": "one axial CT slice, HU mapped to [0, 1] over [-1024, 3072] (ldct_clip.ct.hu.hu_to_unit)",
        "training": {
            "commands": args.commands or [],
            "script": "scripts/train_demo.py",
            "data": content_data or (f"{settings['bank_cases']} procedural phantom cases (ldct_clip.simulation.phantom.make_phantom, seeds "
                     f"0..{ids[-1]}{' except ' + str(missing) if missing else ''}, regions {REGION_NAMES} in turn, "
                     "2 slices each, 192-320 px, "
                     "pixel spacing 0.75-1.3 x the region's field of view / size, slice thickness 1-5 mm); "
                     f"noise: {settings['noise']}"
                     + (f" (simulate_low_dose, Poisson, doses {settings['dose_range']}, flux 7.5e4-6e5, filters "
                        f"{sorted(set(FILTERS))})" if settings["noise"] == "projection" else
                        f" (i.i.d. Gaussian {settings['sigma']}/255)")
                     + "; target: the noise-free phantom. No real CT (pydicom / pydicom-data) was used."),
            "seeds": {"network": settings["seed"], "crops": settings["seed"] + 1, "mixup": settings["seed"] + 2,
                      "bank": ("case i of content c: numpy default_rng([i, index of c in CONTENTS, bank seed]) for "
                               "everything (bank seed 20261206, or the data stage's --bank-seed; the commands name "
                               "it)" if content_data else "case i uses phantom seed i and noise seed i")},
            "iterations": wall["iteration"],
            "batch": settings["batch"], "crop": settings["crop"], "lr": settings["lr"],
            "recipe": "L1, AdamW (wd 1e-4), cosine to 1e-6, mixup Beta(1.2,1.2) p=0.5, grad-norm clip 0.01, "
                      "feature augmentation 0.025, flips + 90-degree rotations, "
                      f"{settings.get('init', 'random')} initialisation of the full-resolution path (identity_init)",
            "wall_seconds": round(wall["seconds"], 1),
            "trained_parameters": ("noise_film.* only (--film-only): every other weight is that of the weights it "
                                   "continued from; " + ("so are the encoder's BatchNorm running statistics"
                                                         if settings.get("film_gate") is not None else
                                                         "the encoder's BatchNorm running statistics followed the data")
                                   if settings.get("film_only") else "all"),
            "threads": settings["threads"],
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", torch {torch.__version__}",
        },
        "validation": json.loads((src / "eval.json").read_text()) if (src / "eval.json").exists() else None,
        "benchmark": None,
    }
    if init_prov is not None:
        t = init_prov["training"]
        before_it = t.get("total_iterations", t["iterations"])
        before_s = t.get("total_wall_seconds", t["wall_seconds"])
        provenance["training"]["continued_from"] = {
            "weights": str(init_from.name), "sha256": init_prov["sha256"], "iterations": before_it,
            "wall_seconds": before_s, "training": t}
        provenance["training"]["total_iterations"] = before_it + wall["iteration"]
        provenance["training"]["total_wall_seconds"] = round(before_s + wall["seconds"], 1)
    elif settings.get("init_from"):
        # a continuation: record the run it started from, and the total of both
        parent = Path(settings["init_from"]).parent
        pw = json.loads((parent / "wall_seconds.json").read_text())
        ps = json.loads((parent / "settings.json").read_text())
        provenance["training"]["continued_from"] = {
            "run": parent.name, "iterations": pw["iteration"], "wall_seconds": round(pw["seconds"], 1),
            "lr": ps["lr"], "seed": ps["seed"], "init": ps.get("init")}
        provenance["training"]["total_iterations"] = pw["iteration"] + wall["iteration"]
        provenance["training"]["total_wall_seconds"] = round(pw["seconds"] + wall["seconds"], 1)
    if args.pilots:
        provenance["encoder_comparison"] = json.loads(Path(args.pilots).read_text())
    elif old.get("encoder_comparison"):
        provenance["encoder_comparison"] = old["encoder_comparison"]  # the lineage's earlier comparison
    if args.real_ct_pilots:
        provenance["real_ct_pilots"] = json.loads(Path(args.real_ct_pilots).read_text())
    provenance["benchmark"] = old.get("benchmark")  # written by scripts/benchmark_quality.py --provenance
    if expert_of is not None:
        base_json = expert_of.with_suffix(".json")
        if not base_json.exists():
            raise SystemExit(f"{expert_of}: no provenance JSON next to it ({base_json.name})")
        base_prov = json.loads(base_json.read_text())
        run_part = {k: provenance.pop(k) for k in ("architecture", "training", "validation")}
        provenance = {
            **base_prov, **{k: provenance[k] for k in ("name", "label", "file", "sha256", "bytes", "benchmark")},
            "architecture": {
                **base_prov["architecture"], "noise_expert_gate_hu": list(args.expert_gate),
                "noise_expert_gate": "the noise expert below takes over from these weights between the two levels "
                                     "(HU of the scale-1 estimate, estimate_noise_level): below the first the "
                                     "output is exactly that of these weights",
            },
            "noise_expert": {"weights_before": {"file": expert_of.name, "sha256": base_prov["sha256"]}, **run_part},
        }
    prov.write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {dest} ({DEMO_LABEL}; {dest.stat().st_size / 1e6:.2f} MB, sha256 {provenance['sha256'][:12]}) and {prov}")


# ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--workdir", type=Path, required=True, help="bank, runs and checkpoints live here")
        sp.add_argument("--threads", type=int, default=2, help="torch CPU threads")

    d = sub.add_parser("data", help="simulate the bank of training pairs")
    common(d)
    d.add_argument("--cases", type=int, default=700, help="cases (2 slices each), seeds 0..cases-1")
    d.add_argument("--dose-range", type=float, nargs=2, default=[0.1, 0.5])
    d.add_argument("--shard", default="0/1", help="i/n: this process makes cases i, i+n, ...")
    d.add_argument("--bank", default="bank", help="folder of the bank under --workdir")
    d.add_argument("--content", choices=["legacy", "phantom", "textured", "natural"], default="legacy",
                   help="legacy: the first demo's phantom bank (noise at --dose-range); others: "
                        "ldct_clip.simulation.training_bank cases (unit noise, rescaled at training)")
    d.add_argument("--pixel-mm", type=float, nargs=2, default=[0.3, 2.0], metavar=("MIN", "MAX"),
                   help="content banks: pixel size range, drawn log-uniformly")
    d.add_argument("--bank-seed", type=int, default=20261206, help="content banks: seed of every case's draws")
    d.set_defaults(func=stage_data)

    t = sub.add_parser("train", help="train (resumes a run of the same name)")
    common(t)
    t.add_argument("--run", required=True)
    t.add_argument("--encoder", choices=["frozen", "trained"], default="trained")
    t.add_argument("--noise", choices=["projection", "gaussian"], default="projection")
    t.add_argument("--init", choices=["identity", "random"], default="identity",
                   help="identity: the full-resolution path starts as a pass-through (see identity_init)")
    t.add_argument("--sigma", type=float, default=5.0, help="Gaussian ablation noise, 1/255 of the window")
    t.add_argument("--dose-range", type=float, nargs=2, default=[0.1, 0.5], help="recorded; set by the bank")
    t.add_argument("--iterations", type=int, default=4000)
    t.add_argument("--save-every", type=int, default=100)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--layers", type=int, nargs=4, default=[1, 1, 1, 1])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--noise-conditioning", action="store_true",
                   help="condition the decoder on the noise level estimated from the input (noise_film.*)")
    t.add_argument("--film-only", action="store_true",
                   help="with --noise-conditioning: train only the conditioning (noise_film.*); every other weight "
                        "and the encoder's BatchNorm statistics stay those of --init-from")
    t.add_argument("--film-gate", type=float, nargs=2, default=[0.0, 0.0], metavar=("LOW", "HIGH"),
                   help="with --noise-conditioning: the conditioning is an identity below LOW and acts fully above "
                        "HIGH, in HU of the scale-1 noise estimate (estimate_noise_level; about 0.4 x the SD of CT "
                        "noise at 0.3-0.7 mm pixels). 0 0: at every level")
    t.add_argument("--init-from", default=None, help="start from this checkpoint (e.g. an earlier run's final.pt)")
    t.add_argument("--max-minutes", type=float, default=0, help="stop this invocation after so many minutes (0: no limit)")
    t.add_argument("--max-cases", type=int, default=0, help="use only the first N cases of each bank (0: all)")
    t.add_argument("--bank", nargs="+", default=["bank"], help="bank folders under --workdir (mixed by case count)")
    t.add_argument("--noise-sd", type=float, nargs=2, default=[10.0, 150.0],
                   help="content banks: noise SD range (HU), drawn log-uniformly per crop")
    t.add_argument("--target-noise-sd", type=float, nargs=2, default=None,
                   help="content banks: train towards normal-dose images with this noise SD range (HU) instead of "
                        "the noise-free slice (ContentCrops target_sd)")
    t.add_argument("--encoder-from", default=None,
                   help="load the trunk (encoder and 1->3 adapter) from this checkpoint; with --encoder frozen it stays fixed")
    t.set_defaults(func=stage_train)

    e = sub.add_parser("eval", help="validation PSNR/SSIM of a run")
    common(e)
    e.add_argument("--run", required=True)
    e.set_defaults(func=stage_eval)

    x = sub.add_parser("export", help="write the shipped state dict and its provenance JSON")
    common(x)
    x.add_argument("--run", required=True)
    x.add_argument("--out", default=str(ROOT / "ldct_clip" / "pretrained" / "demo_ct.pt"))
    x.add_argument("--pilots", default=None, help="JSON of the frozen/trained encoder comparison to record")
    x.add_argument("--commands", nargs="*", default=None, help="the commands that made the run, for provenance")
    x.add_argument("--real-ct-pilots", default=None,
                   help="JSON of the pilots scored on the real validation slices (scripts/score_real_ct.py), to record")
    x.add_argument("--as-noise-expert-of", default=None, metavar="WEIGHTS",
                   help="export the run as the noise expert of these weights (a .pt with its provenance .json next "
                        "to it): they answer below --expert-gate, the run (stored in float16) above it "
                        "(CLIPDenoiser noise_expert)")
    x.add_argument("--expert-gate", type=float, nargs=2, default=[15.0, 30.0], metavar=("LOW", "HIGH"),
                   help="with --as-noise-expert-of: HU of the scale-1 noise estimate between which the run takes over")
    x.set_defaults(func=stage_export)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
