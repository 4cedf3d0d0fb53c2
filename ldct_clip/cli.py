"""``ldct-clip`` command line: parsing. What each subcommand then does is in :mod:`ldct_clip.commands`
(thin doors into the library: nothing there re-implements a step).

Options of the commands that run a bundle config default to "not given" (``None``): only given options become
config overrides, and the help names the config's default.

User errors (:class:`~ldct_clip.errors.LdctClipError`) print one line and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ldct_clip.bundle import bundle_root
from ldct_clip.commands import COMMANDS
from ldct_clip.errors import LdctClipError

__all__ = ["build_parser", "main"]


def config_default(key: str, config: str = "inference.json") -> Any:
    """The value the installed bundle's ``configs/<config>`` sets for ``key``, for help texts only (a run reads
    the config it runs, ``--bundle`` included)."""
    return json.loads((Path(bundle_root()) / "configs" / config).read_text())[key]


def _default(key: str, config: str = "inference.json") -> str:
    value = config_default(key, config)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return f"default: {value} ({Path(config).stem}.json's {key})"


def _checked(check: str) -> Callable[[str], float | None]:
    """argparse type from the ``ldct_clip.transforms.retain_noise`` check named ``check`` (imported when an option is
    parsed, not at start-up): a value it refuses is a usage error (exit 2) with its message, not a traceback."""

    def parse(text: str) -> float | None:
        from ldct_clip.transforms import retain_noise

        try:
            return getattr(retain_noise, check)(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _inference_options() -> argparse.ArgumentParser:
    """Options of the shared inference path (denoise, pacs denoise, evaluate, iq); each ``dest`` is the
    ``inference.json`` id it overrides when given."""
    o = argparse.ArgumentParser(add_help=False)
    o.add_argument("--bundle", help="bundle folder whose configs run (default: the installed one, "
                   "ldct-clip bundle-path); e.g. a copy with edited defaults")
    o.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    o.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 (with the precision-critical parts in fp32) where the hardware runs it natively; "
                        + _default("precision"))
    o.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    o.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    o.add_argument("--roi-size", type=int, nargs=2, metavar=("X", "Y"), help=_default("roi_size"))
    o.add_argument("--overlap", type=float, help=_default("overlap"))
    o.add_argument("--sw-batch-size", type=int, help="slices (windows) per network call (default 2 on CPU, 16 on CUDA)")
    o.add_argument("--hu-min", type=float, help=_default("hu_min"))
    o.add_argument("--hu-max", type=float, help=_default("hu_max"))
    o.add_argument("--noise-retention", type=_checked("check_fraction"), metavar="F",
                   help="share of the removed noise given back, 0 (the network output) to 1 (the input); "
                   + _default("noise_retention"))
    o.add_argument("--noise-retention-max-sd", type=_checked("check_max_sd"), metavar="HU",
                   help="at most this SD of removed noise (HU, per slice) is given back; 'none': the share alone; "
                   + _default("noise_retention_max_sd"))
    o.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None, help="no progress bars")
    return o


def _add_denoise_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("denoise", parents=[_inference_options()],
                       help="denoise CT cases (DICOM series, DICOM files, NIfTI, MHA/NRRD)")
    d.add_argument("input", help="a case or a folder of cases")
    d.add_argument("output", help="output folder (NIfTI, derived DICOM series, PNG previews)")
    d.add_argument("--checkpoint", help="trained weights (.pt of this project or the authors' .pth; default: the "
                   "bundle's models/model.pt)")
    d.add_argument("--weights", help="shipped weights by name: 'demo' (demo weights trained on synthetic data, "
                   "not the paper's CLIP model)")
    d.add_argument("--allow-untrained", action="store_true", help="run with random weights (demo only)")
    d.add_argument("--shard", metavar="I/N", help="denoise only shard I of N (0-based, round-robin over the sorted "
                   "cases), e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; writes a summary CSV")
    d.add_argument("--resume", dest="skip_complete", action="store_true", default=None,
                   help="skip cases whose complete outputs already exist (redo incomplete ones)")
    d.add_argument("--encoder", help="open_clip ResNet of the checkpoint (default: network_def's, RN50)")
    d.add_argument("--no-dicom", dest="write_dicom", action="store_false", default=None,
                   help="do not write derived DICOM series")
    d.add_argument("--no-png", dest="write_png", action="store_false", default=None, help="do not write PNG previews")


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
    d.add_argument("--suffix", help="appended to the SeriesDescription (default: "
                   f"{config_default('series_description_suffix')!r})")
    d.add_argument("--series-number", type=int, help="SeriesNumber of the new series (default source + 1000)")


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
    e.add_argument("--encoder", help="open_clip ResNet without a checkpoint (default: network_def's, RN50)")
    e.add_argument("--protocols", nargs="+", help="metric protocols (default: all, evaluate.json's protocols)")
    e.add_argument("--classical", nargs="*",
                   help="baselines (" + _default("classical", "evaluate.json") + "; bm3d, correlated-noise BM3D with the noise PSD estimated from "
                        "the LDCT, needs pip install 'ldct-clip[bm3d]' and is skipped where not installed)")
    e.add_argument("--noise-roi", type=int, nargs=4, metavar=("X0", "X1", "Y0", "Y1"),
                   help="noise SD region in pixels (default: most uniform water-like square of the reference)")
    e.add_argument("--nps-size", type=int, help="side of the NPS region in pixels (default min(64, half slice))")
    e.add_argument("--window", dest="display_windows", type=float, nargs=2, action="append",
                   metavar=("CENTER", "WIDTH"), help="display window of the figures, repeatable (default: "
                   "evaluate.json's display_windows, 40 400 and -600 1500)")
    e.add_argument("--no-png", dest="write_png", action="store_false", default=None, help="no figures")
    e.add_argument("--write-volumes", action="store_true", default=None,
                   help="also write each method's output as NIfTI")
    e.add_argument("--iq", action="store_true", help="also run the simulated task-based study (ldct-clip iq "
                   "defaults) with the same network, into OUTPUT/iq/")
    _add_iq_options(e)
    _add_observer_options(e)


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
    q.add_argument("--encoder", help="open_clip ResNet of the checkpoint (default: network_def's, RN50)")
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
    _add_denoise_parser(sub)
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
