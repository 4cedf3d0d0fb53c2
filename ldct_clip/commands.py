"""What each ``ldct-clip`` subcommand does with its parsed options (:mod:`ldct_clip.cli` parses them).

The commands that run a bundle config (``denoise``, ``evaluate``, ``pacs denoise``, ``iq``) pass on only the
options the user gave, as config overrides: every other setting is the config's own default, so an edit of
``inference.json`` (or of a copy named with ``--bundle``) is what runs.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ldct_clip.errors import LdctClipError

__all__ = ["COMMANDS", "inference_overrides"]

log = logging.getLogger("ldct_clip")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}

#: Options of the shared inference path whose destination is the ``inference.json`` id of the same name.
INFERENCE_IDS = ("device", "precision", "channels_last", "compile", "roi_size", "overlap", "sw_batch_size",
                 "hu_min", "hu_max", "noise_retention", "noise_retention_max_sd", "progress")
#: ``evaluate`` options whose destination is the ``evaluate.json`` id of the same name.
EVALUATE_IDS = ("protocols", "classical", "noise_roi", "nps_size", "display_windows", "write_png", "write_volumes")


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def given(args: argparse.Namespace, ids: tuple[str, ...]) -> dict[str, Any]:
    """``{id: value}`` of the options in ``ids`` that were given: an option not given is ``None``, absent here, so
    the config's default holds."""
    return {key: value for key in ids if (value := getattr(args, key, None)) is not None}


def quiet(args: argparse.Namespace) -> bool:
    return getattr(args, "progress", None) is False  # ``-q`` stores progress=False


def inference_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of the given inference options and weights (``--weights`` / ``--checkpoint``: a
    checkpoint file shapes ``network_def`` after itself, so any checkpoint of ldct-clip loads)."""
    overrides = given(args, INFERENCE_IDS)
    if "device" in overrides:
        import torch

        overrides["device"] = torch.device(overrides["device"])
    overrides["checkpoint_option"] = "--checkpoint"
    if getattr(args, "encoder", None):
        overrides["network_def#encoder"] = args.encoder
    weights, checkpoint = getattr(args, "weights", None), getattr(args, "checkpoint", None)
    if weights and checkpoint:
        raise LdctClipError("give --weights or --checkpoint, not both")
    if weights:
        from ldct_clip.weights import SHIPPED_WEIGHTS

        if weights in SHIPPED_WEIGHTS:  # the config resolves the name and shapes its network after the file
            overrides["weights"] = weights
        else:  # a path given as --weights is a checkpoint file
            checkpoint = weights
    if checkpoint:
        overrides["ckpt_path"] = str(checkpoint)
        if Path(checkpoint).is_file():
            from ldct_clip.checkpoints import network_overrides

            overrides.update(network_overrides(checkpoint))
    if getattr(args, "allow_untrained", False):
        overrides["allow_untrained"] = True
    return overrides


# -- bundle-path, weights ---------------------------------------------------------------------------------


@command
def cmd_bundle_path(args: argparse.Namespace) -> int:
    from ldct_clip.bundle import bundle_root

    print(bundle_root())
    return 0


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


# -- denoise, pacs ----------------------------------------------------------------------------------------


@command
def cmd_denoise(args: argparse.Namespace) -> int:
    from ldct_clip.workflows import denoise_cases

    results = denoise_cases(args.input, args.output, bundle=args.bundle, **inference_overrides(args),
                            **given(args, ("write_dicom", "write_png", "shard", "skip_complete")))
    return 0 if all(r.ok for r in results) else 2  # every failed case is a user error, already reported


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

    args.checkpoint = args.checkpoint or str(Path(args.bundle or bundle_root()) / "models" / "model.pt")
    if not Path(args.checkpoint).is_file():  # before any traffic with the PACS
        raise WeightsError(
            f"no checkpoint at {args.checkpoint}: give --checkpoint (trained weights); a PACS gets no random-weight "
            "series"
        )
    result = denoise_series(
        args.url, args.series, study_uid=args.study, **auth, keep=args.keep,
        series_description_suffix=args.suffix, series_number=args.series_number, store=not args.no_store,
        overrides=inference_overrides(args), bundle=args.bundle,
        progress=None if quiet(args) else (lambda text: print(text, file=sys.stderr, flush=True)),
    )
    print(f"study: {result.study_uid}")
    print(f"source series: {result.source_series_uid}")
    print(f"derived series: {result.derived_series_uid}")
    print(f"stored instances: {result.instances}")
    if result.kept is not None:
        print(f"kept: {result.kept}")
    return 0


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
    from ldct_clip.workflows import evaluate_cases

    evaluate_cases(args.ldct, args.ndct, args.output, pairs_csv=args.pairs, bundle=args.bundle,
                   **inference_overrides(args), **given(args, EVALUATE_IDS))
    if args.iq:
        _run_iq(args, Path(args.output) / "iq")
    return 0


# -- task-based image quality (lcd, iq) ---------------------------------------------------------------------


@command
def cmd_lcd(args: argparse.Namespace) -> int:
    import numpy as np

    from ldct_clip.ct.io import read_path
    from ldct_clip.evaluation.iq_report import write_lcd_report
    from ldct_clip.metrics.detectability import measure_lcd

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


def _run_iq(args: argparse.Namespace, out: Path) -> None:
    from ldct_clip.bundle import load_config
    from ldct_clip.evaluation.iq_report import write_iq_report
    from ldct_clip.evaluation.iq_study import IQSettings, run_iq_study
    from ldct_clip.weights import resolve_weights, weights_label

    settings = IQSettings(doses=args.doses, realisations=args.realisations, ttf_realisations=args.ttf_realisations,
                          observers=args.observer, readers=args.readers, bootstrap=args.bootstrap, seed=args.seed,
                          classical=args.iq_classical)
    checkpoint = str(resolve_weights(args.weights)) if getattr(args, "weights", None) else args.checkpoint
    overrides = None if args.no_model else inference_overrides(args)
    if overrides is not None and not checkpoint and not getattr(args, "allow_untrained", False):
        raise LdctClipError("give --weights demo, --checkpoint FILE, or --no-model (FBP and classical methods only)")
    denoise = None
    if overrides is not None:
        from ldct_clip.workflows import denoise_cases

        denoise = functools.partial(denoise_cases, bundle=args.bundle, **overrides, write_dicom=False,
                                    write_png=False)
    study = run_iq_study(settings, denoise=denoise, progress=not quiet(args))
    # the header names what ran: the given options, else the config's defaults
    config = load_config("inference", given(args, ("device", "precision")), bundle=args.bundle)
    device = "cpu" if overrides is None else str(config.get_parsed_content("device"))
    header = {"model": (weights_label(checkpoint) or checkpoint) if overrides is not None else "none (--no-model)",
              "precision": config["precision"], "device": getattr(args, "device", None) or device}
    for path in write_iq_report(study, out, header):
        print(path)


@command
def cmd_iq(args: argparse.Namespace) -> int:
    if args.weights and args.checkpoint:
        raise LdctClipError("give --weights or --checkpoint, not both")
    _run_iq(args, Path(args.out))
    return 0
