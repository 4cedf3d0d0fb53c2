"""``ldct-clip`` command line: thin doors into the library (nothing here re-implements a step).

User errors (:class:`~ldct_clip.errors.LdctClipError`) print one line and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import LdctClipError

__all__ = ["main"]

log = logging.getLogger("ldct_clip")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


# -- weights ----------------------------------------------------------------------------------------------


@command
def cmd_weights(args: argparse.Namespace) -> int:
    from .checkpoints import load_checkpoint
    from .weights import PRETRAINED_DECODERS, cache_dir, download, fetch_encoder_weights

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
    dest = download(url, dest, sha256, progress=_progress_printer(f"downloading {filename}"))
    load_checkpoint(dest)  # a file that does not load as a CLIPDenoiser is no use in the cache
    print(f"checkpoint: {dest}")
    return 0


def _progress_printer(label: str) -> Callable[[int, int | None], None]:
    def show(done: int, total: int | None) -> None:
        pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
        print(f"\r{label}: {pct}", end="" if total is None or done < total else "\n", file=sys.stderr, flush=True)

    return show


# -- denoise ----------------------------------------------------------------------------------------------


@command
def cmd_denoise(args: argparse.Namespace) -> int:
    from .networks import CLIPDenoiser
    from .pipeline import CTDenoisingWorkflow

    # with a checkpoint the network is shaped after it; without one it is an untrained RN50 model (demo only)
    network = None if args.checkpoint else CLIPDenoiser(in_channels=1, out_channels=1, encoder=args.encoder)
    workflow = CTDenoisingWorkflow(
        args.input, args.output, network, ckpt_path=args.checkpoint, allow_untrained=args.allow_untrained,
        device=args.device or ("cuda" if _cuda() else "cpu"), precision=args.precision,
        channels_last=not args.no_channels_last, compile=args.compile, roi_size=args.roi_size, overlap=args.overlap,
        sw_batch_size=args.sw_batch_size, hu_min=args.hu_min, hu_max=args.hu_max, write_dicom=not args.no_dicom,
        write_png=not args.no_png, progress=not args.quiet,
    )
    results = workflow.run()
    return 0 if all(r.ok for r in results) else 1


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# -- parser -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldct-clip", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("weights", help="fetch CLIP encoder weights and released checkpoints into the cache")
    w.add_argument("--encoder", default="RN50", help="open_clip ResNet name (default RN50)")
    w.add_argument("--tag", default="openai", help="open_clip pretrained tag (default openai); '' to skip")
    w.add_argument("--checkpoint", help="name of a registered released checkpoint")
    w.add_argument("--url", help="URL of a denoiser checkpoint to fetch")
    w.add_argument("--sha256", help="SHA-256 of the file at --url")
    w.add_argument("--name", help="file name in the cache (default: from the URL)")
    w.add_argument("--cache", help="cache folder (default $LDCT_CLIP_CACHE or ~/.cache/ldct-clip)")
    d = sub.add_parser("denoise", help="denoise CT cases (DICOM series, DICOM files, NIfTI, MHA/NRRD)")
    d.add_argument("input", help="a case or a folder of cases")
    d.add_argument("output", help="output folder (NIfTI, derived DICOM series, PNG previews)")
    d.add_argument("--checkpoint", help="trained weights (.pt of this project or the authors' .pth)")
    d.add_argument("--allow-untrained", action="store_true", help="run with random weights (demo only)")
    d.add_argument("--encoder", default="RN50", help="open_clip ResNet of the checkpoint (default RN50)")
    d.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    d.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    d.add_argument("--no-channels-last", action="store_true")
    d.add_argument("--compile", action="store_true", help="torch.compile the network")
    d.add_argument("--roi-size", type=int, nargs=2, default=(512, 512), metavar=("X", "Y"))
    d.add_argument("--overlap", type=float, default=0.25)
    d.add_argument("--sw-batch-size", type=int, default=4, help="slices (windows) per network call")
    d.add_argument("--hu-min", type=float, default=-1024.0)
    d.add_argument("--hu-max", type=float, default=3072.0)
    d.add_argument("--no-dicom", action="store_true", help="do not write derived DICOM series")
    d.add_argument("--no-png", action="store_true", help="do not write PNG previews")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
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
