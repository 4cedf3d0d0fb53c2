"""Opening one DICOM image file of a CT volume: is it CT, does it carry the UIDs a derived series cites, and can
its pixels be decoded (with a sentence naming the codec to install when they cannot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import dicom_int, read_dicom

__all__ = ["check_ct", "check_identity", "decode_pixels", "open_dicom"]


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def _codec_problem(ds: Any) -> str | None:
    """A sentence naming what to install when ``ds``'s transfer syntax has no working decoder, else None."""
    ts = _transfer_syntax(ds)
    if ts is None:
        return None
    if not getattr(ts, "is_transfer_syntax", False):
        return f"its file meta names {str(ts)!r}, which is not a known transfer syntax. Re-export the file."
    if not ts.is_compressed:
        return None
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3
    except ImportError:
        return None
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"pydicom has no decoder for transfer syntax {ts.name} ({ts}). Convert the series to an uncompressed transfer syntax (e.g. with dcmtk's dcmdjpeg/dcmconv)."
    if decoder.is_available:
        return None
    return (
        f"no installed decoder for transfer syntax {ts.name} ({ts}). Install one of: "
        + "; ".join(decoder.missing_dependencies)
        + " (e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle)."
    )


def open_dicom(path: Path, pixels: bool = True) -> Any:
    """The whole file (without pixel data unless ``pixels``); a preamble-less file (no ``DICM``) gets the transfer
    syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = read_dicom(path, stop_before_pixels=not pixels)
    if _transfer_syntax(ds) is None:
        # Older exports: a bare dataset, no file meta.  pydicom worked out the encoding while reading it, which
        # says unambiguously how the (then necessarily uncompressed) pixel data are laid out.
        implicit, little = ds.original_encoding
        if ds.get("PixelData") is not None and implicit is not None:
            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
    return ds


def check_identity(ds: Any, label: str) -> None:
    """The UIDs a derived series must cite; a file without them is incomplete."""
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if not ds.get(k)]
    if missing:
        raise InputError(
            f"{label}: no {', '.join(missing)}; every DICOM image has them, so the header is incomplete. Re-export the "
            "series (or convert it to NIfTI)."
        )


def decode_pixels(ds: Any, label: str) -> np.ndarray:
    problem = _codec_problem(ds)
    if problem:
        raise InputError(f"{label}: cannot decode pixel data: {problem}")
    if "PixelData" not in ds:
        raise InputError(f"{label}: DICOM file has no PixelData (not an image?).")
    if dicom_int(ds, "SamplesPerPixel", label, default=1) != 1:
        raise InputError(f"{label}: SamplesPerPixel is {ds.SamplesPerPixel}; CT images are single-channel greyscale.")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types here: corrupt, truncated, or undecodable data
        ts = _transfer_syntax(ds)
        ts_text = f" (transfer syntax {ts.name})" if ts is not None else ""
        raise InputError(
            f"{label}: cannot decode pixel data{ts_text}: {type(exc).__name__}: {exc}. "
            "The file is corrupt or truncated, or its compression is not supported: re-export it uncompressed."
        ) from exc


def check_ct(ds: Any, label: str) -> None:
    modality = str(ds.get("Modality", "") or "")
    if modality != "CT":
        raise InputError(
            f"{label}: Modality is {modality or 'missing'!r}, not 'CT'. ldct-clip denoises CT images only; "
            "pick the CT series (or convert to NIfTI if you know the values are HU)."
        )
    if "ModalityLUTSequence" in ds:
        raise InputError(
            f"{label}: uses a Modality LUT Sequence instead of RescaleSlope/Intercept; this is not supported."
        )
