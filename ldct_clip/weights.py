"""Where weights come from: open_clip pretrained tags, local files, and checksummed URLs.

Every weight file this project reads is loaded without executing pickled code: safetensors, or
``torch.load(weights_only=True)``, or (OpenAI's TorchScript ``RN50.pt`` only) ``torch.jit.load``, which
deserialises TorchScript without running Python pickles.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ldct_clip.errors import WeightsError

__all__ = [
    "DEMO_LABEL",
    "DecoderWeights",
    "PRETRAINED_DECODERS",
    "SHIPPED_WEIGHTS",
    "checkpoint_for",
    "derivation",
    "resolve_weights",
    "weights_label",
    "cache_dir",
    "download",
    "fetch_encoder_weights",
    "load_encoder_weights",
    "read_state_dict",
    "sha256sum",
]

#: Keys of CLIP's visual trunk that the denoiser never builds (its layer4 and attention pool), relative to the
#: trunk; in a denoiser checkpoint they sit under ``encoder.`` (:mod:`ldct_clip.checkpoints` drops them there).
UNUSED_ENCODER_PREFIXES = ("layer4.", "attnpool.")


@dataclass(frozen=True)
class DecoderWeights:
    """A released denoiser checkpoint: where to fetch it and how to check it."""

    url: str
    sha256: str
    filename: str
    description: str = ""


# The authors publish their checkpoints on a file host without stable direct links; register mirrors here
# (or pass `--url/--sha256` to `ldct-clip weights`) once a URL and its SHA-256 are known.
PRETRAINED_DECODERS: dict[str, DecoderWeights] = {}

#: What every message naming the shipped demo weights calls them.
DEMO_LABEL = "demo weights trained on synthetic data, not the paper's CLIP model"

#: Denoiser weights that ship inside the package (``ldct_clip/pretrained/``), by name: file and label.
#: Each ``X.pt`` has an ``X.json`` beside it with its provenance (command, data, seeds, SHA-256, metrics).
SHIPPED_WEIGHTS: dict[str, tuple[str, str]] = {"demo": ("demo_ct.pt", DEMO_LABEL)}

_SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"


def resolve_weights(weights: str | os.PathLike) -> Path:
    """A weights name of :data:`SHIPPED_WEIGHTS` (``"demo"``) to its file in the package; anything else is a path.

    Raises :class:`WeightsError` when a name's file is missing from the installation.
    """
    name = os.fspath(weights)
    if name in SHIPPED_WEIGHTS:
        path = _SHIPPED_DIR / SHIPPED_WEIGHTS[name][0]
        if not path.is_file():
            raise WeightsError(f"the {name!r} weights are missing from this installation ({path}); reinstall ldct-clip")
        return path
    return Path(name).expanduser()


def weights_label(path: str | os.PathLike | None) -> str | None:
    """The label of a shipped weight file (e.g. :data:`DEMO_LABEL`), ``None`` for any other file."""
    if path is None:
        return None
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for filename, label in SHIPPED_WEIGHTS.values():
        if resolved == (_SHIPPED_DIR / filename).resolve():
            return label
    return None


def derivation(ckpt_path: str | os.PathLike | None) -> str:
    """The DerivationDescription of a series denoised with the weights at ``ckpt_path``: their file name and
    SHA-256 (and label, for shipped weights).

    Derived series and instance UIDs are a hash of the source UIDs and this text
    (:func:`~ldct_clip.ct.io.derived_dicom.derived_uid`), so a rerun with the same weights names the same series, and
    results of other weights on the same source are other series (a PACS would otherwise keep only the first).
    """
    path = Path(ckpt_path) if ckpt_path else None
    if path is None or not path.is_file():
        return "ldct-clip denoised; untrained (random) weights"
    label = weights_label(path)
    return f"ldct-clip denoised; weights {path.name}, SHA-256 {sha256sum(path)}" + (f" ({label})" if label else "")


def checkpoint_for(weights: str | None, default: str | os.PathLike) -> str:
    """The checkpoint a bundle run loads: ``weights`` (a shipped name or a path) if given, else ``default``.

    Used by ``configs/inference.json`` as ``"ckpt_path": "$ldct_clip.weights.checkpoint_for(@weights, ...)"``
    so ``--weights demo`` selects the shipped demo weights.
    """
    return str(resolve_weights(weights)) if weights else str(default)


def cache_dir() -> Path:
    """The weight cache: ``$LDCT_CLIP_CACHE`` or ``~/.cache/ldct-clip``."""
    return Path(os.environ.get("LDCT_CLIP_CACHE", Path.home() / ".cache" / "ldct-clip")).expanduser()


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` and verifying the SHA-256.

    A file already at ``dest`` with the right checksum is kept. A checksum mismatch removes the partial file
    and raises :class:`WeightsError`; ``dest`` only ever holds a complete, verified file.
    """
    # Own code rather than monai.apps.utils.download_url or torch.hub.download_url_to_file: both download into
    # a temporary file that is deleted when the transfer breaks and neither sends an HTTP Range request, so a
    # checkpoint of hundreds of MB would restart from zero after every dropped connection. monai's also moves
    # its file from the system temporary folder (a copy, not an atomic rename, across file systems), ignores a
    # PermissionError, and refuses (HashCheckError) to replace a corrupt file at ``dest`` by a fresh download.
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256sum(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    done, total = offset, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = offset > 0 and response.status == 206
            if not resumed:
                offset = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as out:
                done = offset
                while block := response.read(1 << 20):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done < total:
                # the connection closed before Content-Length bytes came: read() just returns b"" then
                raise http.client.IncompleteRead(b"", total - done)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        # 416: the partial file already holds the whole file (a run stopped before the rename); the checksum decides
        if not (isinstance(e, urllib.error.HTTPError) and e.code == 416 and offset > 0):
            reason = f"the connection closed after {done} of {total} bytes" if isinstance(e, http.client.IncompleteRead) else e
            raise WeightsError(
                f"could not download {url}: {reason}. The partial file {part} is kept; run the command again to resume."
            ) from e
    if sha256 is not None and (actual := sha256sum(part)) != sha256.lower():
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {actual}. The download was removed; "
            "check the URL and checksum, then try again."
        )
    os.replace(part, dest)
    return dest


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor] | dict:
    """Read a weight file without running pickled code.

    Handles ``.safetensors``, ``torch.save`` zip/legacy files (``weights_only=True``) and TorchScript archives
    (OpenAI's CLIP release). Raises :class:`WeightsError` with the reason for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weight file {path} is empty (0 bytes): an interrupted download or copy. Fetch it again.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise WeightsError(f"{path} is not a readable safetensors file ({e})") from e
    if _is_torchscript(path):
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as e:
            raise WeightsError(f"{path} is a TorchScript archive that could not be read ({e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        raise WeightsError(
            f"{path} is not a readable PyTorch weight file ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}). "
            "It may be truncated or not a checkpoint at all; download it again."
        ) from e


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _trunk_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pick the visual trunk out of a CLIP state dict (``visual.*``), an encoder dict, or a bare trunk."""
    for prefix in ("visual.", "encoder.", "module.visual.", ""):
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if "conv1.weight" in picked:
            return {k: v for k, v in picked.items() if not k.startswith(UNUSED_ENCODER_PREFIXES)}
    raise WeightsError("the file holds no CLIP ResNet visual weights (no `visual.conv1.weight` key)")


def fetch_encoder_weights(model_name: str, tag: str) -> Path:
    """Resolve an open_clip pretrained tag (e.g. ``RN50``/``openai``) to a local file, downloading if allowed.

    Goes through open_clip and the Hugging Face cache, so ``HF_HUB_OFFLINE=1`` and ``HF_HOME`` apply.
    """
    from open_clip import pretrained

    cfg = pretrained.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = pretrained.list_pretrained_tags_by_model(model_name)
        raise WeightsError(f"open_clip has no pretrained weights {model_name!r}/{tag!r}; known tags: {tags}")
    try:
        path = pretrained.download_pretrained(cfg)
    except Exception as e:  # offline, hub unreachable, or an incomplete cache
        raise WeightsError(
            f"CLIP weights {model_name}/{tag} are not in the local cache and could not be downloaded ({e}). "
            f"On a machine with network access run `ldct-clip weights --encoder {model_name} --tag {tag}` "
            "(set HF_HOME to share the cache), or download OpenAI's "
            f"{model_name}.pt and pass its path as encoder_weights."
        ) from e
    if not path:
        raise WeightsError(f"open_clip returned no file for {model_name}/{tag}")
    return Path(path)


def load_encoder_weights(encoder: nn.Module, source: str | os.PathLike, model_name: str = "RN50") -> None:
    """Load CLIP weights into a :class:`~ldct_clip.networks.CLIPResNetEncoder`.

    Args:
        encoder: the trunk to fill in place.
        source: a local file (TorchScript ``RN50.pt``, open_clip ``.bin``/``.safetensors``, or a state dict
            with ``visual.`` keys) or an open_clip pretrained tag such as ``"openai"``.
        model_name: the open_clip model name, used to resolve a tag.

    Raises :class:`WeightsError` when the weights cannot be found or do not fit; never leaves a silently
    random encoder.
    """
    path = Path(os.fspath(source)).expanduser()
    if not path.exists():
        if model_name == "custom" or os.sep in str(source) or str(source).endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise WeightsError(f"encoder weights {source} not found: give an existing file or an open_clip tag")
        path = fetch_encoder_weights(model_name, str(source))
    state = read_state_dict(path)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    trunk = _trunk_state_dict(state)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(trunk))
    unexpected = sorted(set(trunk) - set(own))
    wrong = sorted(k for k in set(own) & set(trunk) if tuple(own[k].shape) != tuple(trunk[k].shape))
    if missing or unexpected or wrong:
        raise WeightsError(
            f"encoder weights {path} do not fit the {model_name} trunk: "
            f"missing {missing[:8]}, unexpected {unexpected[:8]}, wrong shapes {wrong[:8]}"
        )
    encoder.load_state_dict(trunk)

