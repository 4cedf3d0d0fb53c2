"""``ldct-clip`` command line: thin doors into the library (nothing here re-implements a step).

User errors (:class:`~ldct_clip.errors.LdctClipError`) print one line and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ldct_clip.errors import LdctClipError

__all__ = ["main"]

log = logging.getLogger("ldct_clip")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


# -- bundle-path ------------------------------------------------------------------------------------------


@command
def cmd_bundle_path(args: argparse.Namespace) -> int:
    from ldct_clip.bundle import bundle_root

    print(bundle_root())
    return 0


# -- weights ----------------------------------------------------------------------------------------------


@command
def cmd_weights(args: argparse.Namespace) -> int:
    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.weights import PRETRAINED_DECODERS, cache_dir, download, fetch_encoder_weights

    if args.encoder and args.tag:
        path = fetch_encoder_weights(args.encoder, args.tag)
        print(f"encoder {args.encoder}/{args.tag}: {path}")
    if args.checkpoint:
        entry = PRETRAINED_DECODERS.get(args.checkpoint)
        if entry is None:
            known = ", ".join(PRETRAINED_DECODERS) or "none registered"
            raise LdctClipError(f"no released checkpoint named {args.checkpoint!r} ({known}); use --url and --sha256")
        url, sha256, filename = entry.url, entry.sha256, entry.filename
    elif args.url:
        if not args.sha256:
            raise LdctClipError("--url needs --sha256 so the download can be verified")
        url, sha256, filename = args.url, args.sha256, args.name or Path(args.url.split("?")[0]).name
    else:
        return 0
    dest = (Path(args.cache) if args.cache else cache_dir()) / "checkpoints" / filename
    progress = _ProgressPrinter(f"downloading {filename}")
    try:
        dest = download(url, dest, sha256, progress=progress)
    finally:
        progress.end_line()  # an error after a partial progress line starts on a line of its own
    load_checkpoint(dest)  # a file that does not load as a CLIPDenoiser is no use in the cache
    print(f"checkpoint: {dest}")
    return 0


class _ProgressPrinter:
    """Prints ``label: NN.N%`` over itself on stderr; :meth:`end_line` ends a line left unfinished."""

    def __init__(self, label: str) -> None:
        self.label, self.open = label, False

    def __call__(self, done: int, total: int | None) -> None:
        pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
        self.open = total is None or done < total
        print(f"\r{self.label}: {pct}", end="" if self.open else "\n", file=sys.stderr, flush=True)

    def end_line(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


# -- denoise ----------------------------------------------------------------------------------------------


def _inference_overrides(args: argparse.Namespace, checkpoint: str | None) -> dict[str, Any]:
    """Bundle config overrides for the shared inference options; a checkpoint shapes the network."""
    import torch

    from ldct_clip.checkpoints import network_overrides

    _resolve_device(args)
    overrides: dict[str, Any] = {
        "device": torch.device(args.device), "precision": args.precision, "channels_last": not args.no_channels_last,
        "compile": args.compile, "roi_size": list(args.roi_size), "overlap": args.overlap,
        "sw_batch_size": args.sw_batch_size, "hu_min": args.hu_min, "hu_max": args.hu_max,
        "progress": not args.quiet, "ckpt_path": checkpoint or "", "checkpoint_option": "--checkpoint",
    }
    if getattr(args, "encoder", None):
        overrides["network_def#encoder"] = args.encoder
    if checkpoint and Path(checkpoint).is_file():
        overrides.update(network_overrides(checkpoint))
    return overrides


@command
def cmd_denoise(args: argparse.Namespace) -> int:
    from ldct_clip.workflows import denoise_cases

    if args.weights:
        from ldct_clip.weights import resolve_weights

        if args.checkpoint:
            raise LdctClipError("give --weights or --checkpoint, not both")
        args.checkpoint = str(resolve_weights(args.weights))
    results = denoise_cases(
        args.input, args.output, **_inference_overrides(args, args.checkpoint), allow_untrained=args.allow_untrained,
        write_dicom=not args.no_dicom, write_png=not args.no_png, shard=args.shard, skip_complete=args.resume,
    )
    return 0 if all(r.ok for r in results) else 2  # every failed case is a user error, already reported


def _inference_options() -> argparse.ArgumentParser:
    """Options of the shared inference path (denoise, pacs denoise, evaluate)."""
    o = argparse.ArgumentParser(add_help=False)
    o.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    o.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 (with the precision-critical parts in fp32) where the hardware runs it natively")
    o.add_argument("--no-channels-last", action="store_true")
    o.add_argument("--compile", action="store_true", help="torch.compile the network")
    o.add_argument("--roi-size", type=int, nargs=2, default=(512, 512), metavar=("X", "Y"))
    o.add_argument("--overlap", type=float, default=0.25)
    o.add_argument("--sw-batch-size", type=int, help="slices (windows) per network call (default 2 on CPU, 16 on CUDA)")
    o.add_argument("--hu-min", type=float, default=-1024.0)
    o.add_argument("--hu-max", type=float, default=3072.0)
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return o


def _resolve_device(args: argparse.Namespace) -> None:
    """Fill in the defaults that depend on the machine: device, then slices per call."""
    import torch

    from ldct_clip.engine.precision import default_sw_batch_size

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.sw_batch_size is None:
        args.sw_batch_size = default_sw_batch_size(args.device)


# -- pacs -------------------------------------------------------------------------------------------------


@command
def cmd_pacs(args: argparse.Namespace) -> int:
    import os

    from ldct_clip.pacs import connect, denoise_series, list_series

    password = args.password if args.password is not None else os.environ.get("LDCT_CLIP_PACS_PASSWORD")
    auth = {"username": args.username, "password": password, "timeout": args.timeout}
    if args.pacs_command == "list":
        for s in list_series(connect(args.url, **auth), args.study, args.modality or None):
            print(f"{s.study_uid}  {s.series_uid}  {s.modality:3s} {s.instances if s.instances is not None else '?':>5} "
                  f"#{s.series_number if s.series_number is not None else '-'} {s.description}")
        return 0

    from ldct_clip.bundle import bundle_root

    from ldct_clip.errors import WeightsError

    ckpt = args.checkpoint or str(Path(bundle_root()) / "models" / "model.pt")
    if not Path(ckpt).is_file():  # before any traffic with the PACS
        raise WeightsError(
            f"no checkpoint at {ckpt}: give --checkpoint (trained weights); a PACS gets no random-weight series"
        )
    result = denoise_series(
        args.url, args.series, study_uid=args.study, **auth, keep=args.keep,
        series_description_suffix=args.suffix, series_number=args.series_number, store=not args.no_store,
        overrides=_inference_overrides(args, ckpt),
        progress=None if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True)),
    )
    print(f"study: {result.study_uid}")
    print(f"source series: {result.source_series_uid}")
    print(f"derived series: {result.derived_series_uid}")
    print(f"stored instances: {result.instances}")
    if result.kept is not None:
        print(f"kept: {result.kept}")
    return 0


def _add_pacs_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs", help="denoise a CT series in a PACS over DICOMweb and store the result back")
    psub = p.add_subparsers(dest="pacs_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    common.add_argument("--study", help="StudyInstanceUID (optional: found from the series)")
    common.add_argument("--username", help="HTTP basic auth user")
    common.add_argument("--password", help="HTTP basic auth password (default $LDCT_CLIP_PACS_PASSWORD)")
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")
    lst = psub.add_parser("list", parents=[common], help="list the series on the server (study, series, modality)")
    lst.add_argument("--modality", default="CT", help="only this modality (default CT; '' for all)")
    d = psub.add_parser("denoise", parents=[common, _inference_options()],
                        help="pull a CT series, denoise it, STOW the derived series")
    d.add_argument("--series", required=True, help="SeriesInstanceUID of the CT series")
    d.add_argument("--checkpoint", help="trained weights (default: the bundle's models/model.pt)")
    d.add_argument("--keep", help="keep source/ and denoised/ DICOM files in this folder")
    d.add_argument("--no-store", action="store_true", help="do not upload (with --keep: look at the result first)")
    d.add_argument("--suffix", default=" [ldct-clip]", help="appended to the SeriesDescription")
    d.add_argument("--series-number", type=int, help="SeriesNumber of the new series (default source + 1000)")


# -- simulate / evaluate (research workflow) --------------------------------------------------------------


@command
def cmd_simulate(args: argparse.Namespace) -> int:
    from ldct_clip.simulation.cases import simulate_case

    # the library logs one line per case (slices, added noise SD, files written)
    simulate_case(
        args.input, args.output, dose_fraction=args.dose, geometry=args.geometry, incident_flux=args.flux,
        electronic_noise_var=args.electronic_noise, noise_model=args.noise_model, num_views=args.views,
        filter_name=args.filter, gaussian_sigma_255=args.gaussian, seed=args.seed, write_dicom=not args.no_dicom,
        progress=not args.quiet,
    )
    return 0


@command
def cmd_evaluate(args: argparse.Namespace) -> int:
    from ldct_clip.evaluation.scoring import DEFAULT_WINDOWS
    from ldct_clip.workflows import evaluate_cases

    evaluate_cases(
        args.ldct, args.ndct, args.output, pairs_csv=args.pairs, **_inference_overrides(args, args.checkpoint),
        allow_untrained=args.allow_untrained, protocols=list(args.protocols), classical=list(args.classical),
        noise_roi=args.noise_roi, nps_size=args.nps_size,
        display_windows=[list(w) for w in (args.window or DEFAULT_WINDOWS)], write_png=not args.no_png,
        write_volumes=args.write_volumes,
    )
    if args.iq:
        _run_iq(args, args.checkpoint, Path(args.output) / "iq")
    return 0


def _add_research_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("simulate", help="simulate low-dose CT from normal-dose cases (NIfTI + derived DICOM series)")
    s.add_argument("input", help="normal-dose case or folder of cases (DICOM series, DICOM files, NIfTI, MHA/NRRD)")
    s.add_argument("output", help="output folder: nifti/<case>.nii.gz and, for DICOM input, dicom/<case>/")
    s.add_argument("--dose", type=float, default=0.25, help="dose fraction of the input's dose (default 0.25)")
    s.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    s.add_argument("--flux", type=float, default=1e5, help="full-dose photons per detector bin and view (I0)")
    s.add_argument("--electronic-noise", type=float, default=10.0, help="electronic noise variance (photons^2)")
    s.add_argument("--noise-model", choices=["variance_matched", "poisson"], default="variance_matched",
                   help="variance_matched: input is a real scan (default); poisson: input is noise-free")
    s.add_argument("--views", type=int, help="projection views (default: 720 for 512 px)")
    s.add_argument("--filter", default="ramp", choices=["ramp", "shepp-logan", "cosine", "hamming", "hann"])
    s.add_argument("--seed", type=int, help="seed for reproducible noise")
    s.add_argument("--gaussian", type=float, metavar="SIGMA_255",
                   help="add the paper's i.i.d. Gaussian noise of SIGMA/255 on [-1024, 3072] HU instead")
    s.add_argument("--no-dicom", action="store_true", help="do not write derived DICOM series")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", parents=[_inference_options()],
                       help="score the network and baselines on paired LDCT/NDCT cases (tables, figures)")
    e.add_argument("output", help="output folder: per_slice.csv, per_case.csv, summary.csv/.md, figures/")
    e.add_argument("--ldct", help="folder of low-dose cases (matched to --ndct by case name)")
    e.add_argument("--ndct", help="folder of normal-dose reference cases")
    e.add_argument("--pairs", help="CSV with columns ldct,ndct[,name] instead of --ldct/--ndct")
    e.add_argument("--checkpoint", help="trained weights (.pt of this project or the authors' .pth)")
    e.add_argument("--allow-untrained", action="store_true", help="run with random weights (demo only)")
    e.add_argument("--encoder", default="RN50", help="open_clip ResNet without a checkpoint (default RN50)")
    e.add_argument("--protocols", nargs="+", default=["paper", "redcnn", "ldct-benchmark-chest",
                                                      "ldct-benchmark-abdomen", "ldct-benchmark-head"],
                   help="metric protocols (default: all)")
    e.add_argument("--classical", nargs="*", default=["nlm", "bm3d"],
                   help="baselines (default nlm bm3d; bm3d, correlated-noise BM3D with the noise PSD estimated from "
                        "the LDCT, needs pip install 'ldct-clip[bm3d]' and is skipped where not installed)")
    e.add_argument("--noise-roi", type=int, nargs=4, metavar=("X0", "X1", "Y0", "Y1"),
                   help="noise SD region in pixels (default: most uniform water-like square of the reference)")
    e.add_argument("--nps-size", type=int, help="side of the NPS region in pixels (default min(64, half slice))")
    e.add_argument("--window", type=float, nargs=2, action="append", metavar=("CENTER", "WIDTH"),
                   help="display window of the figures, repeatable (default 40 400 and -600 1500)")
    e.add_argument("--no-png", action="store_true", help="no figures")
    e.add_argument("--write-volumes", action="store_true", help="also write each method's output as NIfTI")
    e.add_argument("--iq", action="store_true", help="also run the simulated task-based study (ldct-clip iq "
                   "defaults) with the same network, into OUTPUT/iq/")
    _add_iq_options(e)
    _add_observer_options(e)


# -- task-based image quality (lcd, iq) ---------------------------------------------------------------------


@command
def cmd_lcd(args: argparse.Namespace) -> int:
    import numpy as np

    from ldct_clip.ct.io import read_path
    from ldct_clip.metrics.detectability import measure_lcd
    from ldct_clip.evaluation.iq_report import write_lcd_report

    present, absent, truth = (read_path(p) for p in (args.present, args.absent, args.truth))
    if truth.hu.shape[2] != 1:
        log.info("the noise-free image has %d slices; the first locates the inserts", truth.hu.shape[2])
    rows = measure_lcd(present.hu, absent.hu, np.asarray(truth.hu[:, :, 0]), pixel_size_mm=present.spacing[0],
                       observers=args.observer, readers=args.readers, train_fraction=args.train_fraction,
                       seed=args.seed, bootstrap=args.bootstrap, roi_size=args.roi_px)
    header = {"signal-present": f"{args.present} ({present.hu.shape[2]} images)",
              "signal-absent": f"{args.absent} ({absent.hu.shape[2]} images)", "noise-free": args.truth,
              "pixel size (mm)": f"{present.spacing[0]:.4g}", "readers": args.readers}
    for path in write_lcd_report(rows, args.out, header):
        print(path)
    return 0


def _run_iq(args: argparse.Namespace, checkpoint: str | None, out: Path) -> None:
    from ldct_clip.evaluation.iq_study import IQSettings, run_iq_study
    from ldct_clip.evaluation.iq_report import write_iq_report
    from ldct_clip.weights import weights_label

    settings = IQSettings(doses=args.doses, realisations=args.realisations, ttf_realisations=args.ttf_realisations,
                          observers=args.observer, readers=args.readers, bootstrap=args.bootstrap, seed=args.seed,
                          classical=args.iq_classical)
    overrides = None if args.no_model else {**_inference_overrides(args, checkpoint),
                                            "allow_untrained": getattr(args, "allow_untrained", False)}
    if overrides is not None and not checkpoint and not overrides["allow_untrained"]:
        raise LdctClipError("give --weights demo, --checkpoint FILE, or --no-model (FBP and classical methods only)")
    denoise = None
    if overrides is not None:
        from ldct_clip.workflows import denoise_cases

        denoise = functools.partial(denoise_cases, **overrides, write_dicom=False, write_png=False)
    study = run_iq_study(settings, denoise=denoise, progress=not args.quiet)
    header = {"model": (weights_label(checkpoint) or checkpoint) if overrides is not None else "none (--no-model)",
              "precision": args.precision, "device": getattr(args, "device", None) or "cpu"}
    for path in write_iq_report(study, out, header):
        print(path)


@command
def cmd_iq(args: argparse.Namespace) -> int:
    if args.weights:
        from ldct_clip.weights import resolve_weights

        if args.checkpoint:
            raise LdctClipError("give --weights or --checkpoint, not both")
        args.checkpoint = str(resolve_weights(args.weights))
    _run_iq(args, args.checkpoint, Path(args.out))
    return 0


def _add_iq_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--doses", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0], help="dose fractions")
    p.add_argument("--realisations", type=int, default=100,
                   help="signal-present and signal-absent images per dose (default 100 each)")
    p.add_argument("--ttf-realisations", type=int, default=10, help="TTF-phantom images per dose (default 10)")
    p.add_argument("--iq-classical", nargs="*", default=["nlm", "bm3d"],
                   help="classical methods (default nlm bm3d; bm3d is skipped where not installed)")
    p.add_argument("--no-model", action="store_true", help="FBP and classical methods only")


def _add_observer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--observer", nargs="+", default=["LG_CHO"], choices=["LG_CHO", "DOG_CHO", "GABOR_CHO", "NPW"],
                   help="model observer(s) (default LG_CHO)")
    p.add_argument("--readers", type=int, default=10, help="random train/test splits (default 10)")
    p.add_argument("--bootstrap", type=int, default=200, help="resamplings for the 95%% CI (0: none; default 200)")
    p.add_argument("--seed", type=int, default=0)


def _add_iq_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lcd", help="low-contrast detectability (model observers) of signal-present/absent images")
    p.add_argument("--present", required=True, help="signal-present images (NIfTI/MHA stack along the last axis, "
                   "or a DICOM series), HU")
    p.add_argument("--absent", required=True, help="signal-absent images, same layout")
    p.add_argument("--truth", required=True, help="noise-free image that locates the inserts")
    p.add_argument("--out", required=True, help="output folder: lcd.csv, lcd.md")
    p.add_argument("--train-fraction", type=float, default=0.5, help="share of images that train (default 0.5)")
    p.add_argument("--roi-px", type=int, help="ROI side in pixels, odd (default: twice the largest insert)")
    _add_observer_options(p)
    q = sub.add_parser("iq", parents=[_inference_options()],
                       help="simulated task-based study: d' (CCT189), NPS and TTF at several doses, all methods")
    q.add_argument("--out", default="iq_output", help="output folder (default ./iq_output)")
    q.add_argument("--weights", help="shipped weights by name: 'demo'")
    q.add_argument("--checkpoint", help="trained weights (.pt of this project or the authors' .pth)")
    q.add_argument("--encoder", default="RN50", help="open_clip ResNet of the checkpoint (default RN50)")
    _add_iq_options(q)
    _add_observer_options(q)


# -- parser -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldct-clip", description="Low-dose CT denoising with transferred CLIP features.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("bundle-path", help="print the folder of the MONAI bundle installed with the package, for "
                   "python -m monai.bundle run --config_file \"$(ldct-clip bundle-path)/configs/inference.json\"")
    w = sub.add_parser("weights", help="fetch CLIP encoder weights and released checkpoints into the cache")
    w.add_argument("--encoder", default="RN50", help="open_clip ResNet name (default RN50)")
    w.add_argument("--tag", default="openai", help="open_clip pretrained tag (default openai); '' to skip")
    w.add_argument("--checkpoint", help="name of a registered released checkpoint")
    w.add_argument("--url", help="URL of a denoiser checkpoint to fetch")
    w.add_argument("--sha256", help="SHA-256 of the file at --url")
    w.add_argument("--name", help="file name in the cache (default: from the URL)")
    w.add_argument("--cache", help="cache folder (default $LDCT_CLIP_CACHE or ~/.cache/ldct-clip)")
    d = sub.add_parser("denoise", parents=[_inference_options()],
                       help="denoise CT cases (DICOM series, DICOM files, NIfTI, MHA/NRRD)")
    d.add_argument("input", help="a case or a folder of cases")
    d.add_argument("output", help="output folder (NIfTI, derived DICOM series, PNG previews)")
    d.add_argument("--checkpoint", help="trained weights (.pt of this project or the authors' .pth)")
    d.add_argument("--weights", help="shipped weights by name: 'demo' (demo weights trained on synthetic data, "
                   "not the paper's CLIP model)")
    d.add_argument("--allow-untrained", action="store_true", help="run with random weights (demo only)")
    d.add_argument("--shard", metavar="I/N", help="denoise only shard I of N (0-based, round-robin over the sorted "
                   "cases), e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; writes a summary CSV")
    d.add_argument("--resume", action="store_true",
                   help="skip cases whose complete outputs already exist (redo incomplete ones)")
    d.add_argument("--encoder", default="RN50", help="open_clip ResNet of the checkpoint (default RN50)")
    d.add_argument("--no-dicom", action="store_true", help="do not write derived DICOM series")
    d.add_argument("--no-png", action="store_true", help="do not write PNG previews")
    _add_pacs_parser(sub)
    _add_research_parsers(sub)
    _add_iq_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:
        logging.getLogger("ignite").setLevel(logging.WARNING)  # the engine's epoch lines say nothing to a user
    try:
        return COMMANDS[args.command](args)
    except LdctClipError as e:
        print(f"ldct-clip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
