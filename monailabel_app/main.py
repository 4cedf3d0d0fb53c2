"""MONAI Label app serving the ldct-clip bundle as the infer task ``ldct_denoise``.

    monailabel start_server --app monailabel_app --studies <folder or http://host:8042/dicom-web> \\
        --conf models ldct_denoise [--conf bundle /path/to/bundle] [--conf bundle_overrides '{"sw_batch_size": 8}']

    curl -X POST "http://127.0.0.1:8000/infer/ldct_denoise?image=<image id>&output=image" -o denoised.nii.gz

The image id is a file name (without extension) in a local studies folder, or a SeriesInstanceUID with
DICOMweb studies (MONAI Label pulls the series and converts it to NIfTI with SimpleITK). The answer is the
denoised volume in HU (int16 NIfTI) on the input's grid.

Run it in the environment that ``scripts/setup_monailabel_env.sh`` makes (monailabel 0.8.5 needs numpy < 2).

Configuration (``--conf KEY VALUE``):
    models            ``ldct_denoise`` (or ``all``): the only task of this app.
    bundle            the MONAI bundle folder (default: the project's ``monai_bundle``); it must hold
                      ``configs/inference.json``, ``configs/metadata.json`` and ``models/model.pt``.
                      Without ``--conf bundle``, when the project's bundle has no ``models/model.pt``, the app
                      serves the shipped demo weights (demo weights trained on synthetic data, not the
                      paper's CLIP model) from a copy of the bundle under ``<app>/demo_bundle``, and says so.
    bundle_overrides  JSON object of bundle config ids to override (``{"network_def#width": 8}``,
                      ``{"precision": "bf16"}``), as ``--<id> value`` does for ``monai.bundle run``.
    preload           ``true``: load the network at start-up instead of at the first request.

Differences from a plain ``BundleInferTask`` (which loads weights non-strictly, so that a checkpoint that
does not fit leaves random weights behind with only a warning, and which skips a bundle without weights):
the server refuses to start when ``models/model.pt`` is missing or does not fit ``network_def``, naming
the keys; the task is of type OTHERS (an image-output denoiser has no type of its own in MONAI Label); its
result is never saved as a label (it is an image, not a segmentation); and no DICOM SEG tools are
downloaded for a DICOMweb datastore (this app never writes DICOM SEG: store a denoised series back to the
PACS with ``ldct-clip pacs denoise``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from typing import Any

import torch
from monai.transforms import SaveImaged
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.tasks.infer.bundle import BundleInferTask

import ldct_clip
from ldct_clip.checkpoints import load_weights, network_overrides
from ldct_clip.errors import WeightsError
from ldct_clip.transforms import CASE_WRITERS
from ldct_clip.weights import DEMO_LABEL, resolve_weights

logger = logging.getLogger(__name__)

TASK = "ldct_denoise"


class LdctDenoiseTask(BundleInferTask):
    """The bundle's ``inference.json`` as a MONAI Label infer task, with strictly loaded weights."""

    def __init__(
        self, path: str, conf: dict[str, str], overrides: dict[str, Any] | None = None, label: str | None = None
    ) -> None:
        self.overrides = dict(overrides or {})
        for needed in ("configs/inference.json", "configs/metadata.json"):
            if not os.path.isfile(os.path.join(path, needed)):
                raise FileNotFoundError(f"{path} is not an ldct-clip bundle: {needed} is missing")
        model_path = os.path.join(path, "models", "model.pt")
        if not os.path.isfile(model_path):
            raise WeightsError(
                f"no weights: {model_path} is missing. Put a trained checkpoint there (this project's state dict, "
                "e.g. from `ldct-clip weights` or training), or point --conf bundle at a bundle that has one; "
                "this app does not serve random weights."
            )
        # the bundle's postprocessing minus the transforms that write case files: the answer is the volume itself
        super().__init__(
            path, conf, type=InferType.OTHERS, post_filter=[SaveImaged, *CASE_WRITERS], add_post_restore=True,
            load_strict=True,
        )
        if not self.is_valid():
            raise RuntimeError(f"MONAI Label did not accept the bundle at {path}; see the log above")
        self.description = "Low-dose CT denoising (CLIP features + UNet decoder); the result is an image in HU"
        if label:
            self.description += f" [{label}]"
        # fail at start-up, not at the first request, when the checkpoint does not fit the network
        load_weights(copy.deepcopy(self.network), model_path)
        logger.info(
            f"{TASK}: weights {model_path}{' (' + label + ')' if label else ''} fit network_def"
            f"{' with ' + str(self.overrides) if self.overrides else ''}"
        )

    def _load_bundle_config(self, path, config):
        parser = super()._load_bundle_config(path, config)
        for key, value in self.overrides.items():
            parser[key] = value
        return parser

    def _get_network(self, device, data):
        """The bundle's network with ``models/model.pt`` loaded strictly (any checkpoint format of ldct-clip)."""
        path = self.get_path()
        stamp = os.stat(path).st_mtime
        cached = self._networks.get(device)
        if cached and cached[1] == stamp:
            return cached[0]
        network = copy.deepcopy(self.network)
        load_weights(network, path, map_location=torch.device(device))
        network.eval()
        self._networks[device] = (network, stamp)
        return network

    def writer(self, data, extension=None, dtype=None):
        # denoised HU are rounded by the bundle's postprocessing: int16 holds them exactly
        data = dict(data)
        data["result_dtype"] = data.get("result_dtype") or "int16"
        return super().writer(data, extension, dtype)


def _demo_bundle(bundle: str, app_dir: str, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A copy of ``bundle``'s configs under ``app_dir/demo_bundle`` with the shipped demo weights as
    ``models/model.pt``, and the overrides that shape ``network_def`` after them (the user's win)."""
    weights = resolve_weights("demo")
    dest = os.path.join(app_dir, "demo_bundle")
    shutil.copytree(os.path.join(bundle, "configs"), os.path.join(dest, "configs"), dirs_exist_ok=True)
    os.makedirs(os.path.join(dest, "models"), exist_ok=True)
    shutil.copyfile(weights, os.path.join(dest, "models", "model.pt"))
    return dest, {**network_overrides(weights), **overrides}


class LdctClipApp(MONAILabelApp):
    """ldct-clip's MONAI Label app: one infer task, ``ldct_denoise``; no training, no active learning."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundle = os.path.abspath(os.path.expanduser(conf.get("bundle") or ldct_clip.bundle_root()))
        try:
            self.overrides = json.loads(conf.get("bundle_overrides") or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"--conf bundle_overrides must be a JSON object: {e}") from e
        if not isinstance(self.overrides, dict):
            raise ValueError("--conf bundle_overrides must be a JSON object of bundle config ids to values")
        self.label: str | None = None
        if not conf.get("bundle") and not os.path.isfile(os.path.join(self.bundle, "models", "model.pt")):
            self.bundle, self.overrides = _demo_bundle(self.bundle, app_dir, self.overrides)
            self.label = DEMO_LABEL
            logger.warning(f"{TASK}: no models/model.pt installed; serving the {DEMO_LABEL} ({self.bundle})")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="ldct-clip",
            description="Low-dose CT denoising with transferred CLIP features (returns a denoised image)",
            version=ldct_clip.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        wanted = {m.strip() for m in (self.conf.get("models") or TASK).split(",") if m.strip()}
        unknown = wanted - {TASK, "all"}
        if unknown:
            raise ValueError(f"unknown model(s) {sorted(unknown)}: this app has only {TASK!r}")
        return {TASK: LdctDenoiseTask(self.bundle, self.conf, self.overrides, label=self.label)}

    def init_strategies(self) -> dict[str, Strategy]:
        return {}  # nothing to label, so no next-sample strategy

    def infer(self, request, datastore=None):
        request = dict(request)
        request["save_label"] = False  # a denoised image is not a label: never store it as one (or as DICOM SEG)
        return super().infer(request, datastore)

    def _download_dcmqi_tools(self):
        # MONAI Label fetches dcmqi (from GitHub) for a DICOMweb datastore, to write DICOM SEG; this app
        # never writes DICOM SEG, and start-up must not depend on an internet download.
        return None
