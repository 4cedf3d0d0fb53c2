"""Denoise a CT series that lives in a PACS and store the result back, over DICOMweb.

QIDO-RS finds the series (and its study), WADO-RS pulls its instances into a work folder, the bundle's
inference pipeline (:func:`~ldct_clip.workflows.denoise_cases`: the components of ``inference.json``, as for
every door) reads, denoises and writes a derived series (:func:`~ldct_clip.ct.io.derived_series.write_derived_series`:
same patient, study and frame of reference, new SeriesInstanceUID and SOPInstanceUIDs, DERIVED image type,
references to the source images), and STOW-RS
stores it in the same study, where viewers (OHIF, 3D Slicer's DICOMweb browser, the PACS's own) show it
beside the original.

The HTTP side is ``dicomweb-client``; any DICOMweb server works (Orthanc with its DICOMweb plugin,
dcm4chee, Google Cloud Healthcare with a token in ``headers``). Failures that are the user's (server down,
unknown series, not a CT, refused upload) raise :class:`PacsError` with a message that says what to check.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldct_clip.errors import InputError, LdctClipError
from ldct_clip.atomic import remove_path

__all__ = [
    "PacsError",
    "PacsResult",
    "SeriesInfo",
    "connect",
    "denoise_series",
    "download_series",
    "find_series",
    "list_series",
    "upload_series",
]

log = logging.getLogger("ldct_clip")

# DICOM JSON tags (QIDO-RS answers)
_STUDY_UID, _SERIES_UID, _MODALITY = "0020000D", "0020000E", "00080060"
_DESCRIPTION, _N_INSTANCES, _SERIES_NUMBER = "0008103E", "00201209", "00200011"
_FAILED_SOP_SEQUENCE = 0x00081198
STOW_BATCH = 32  # instances per STOW-RS request: bounded request size, few round trips


class PacsError(LdctClipError):
    """The DICOMweb server cannot be reached, does not have what was asked, or refused an upload."""


@dataclass(frozen=True)
class SeriesInfo:
    """A series as QIDO-RS describes it."""

    study_uid: str
    series_uid: str
    modality: str
    description: str = ""
    series_number: int | None = None
    instances: int | None = None


@dataclass
class PacsResult:
    """What :func:`denoise_series` did."""

    study_uid: str
    source_series_uid: str
    derived_series_uid: str
    instances: int
    seconds: dict[str, float] = field(default_factory=dict)
    kept: Path | None = None


def _value(item: Mapping[str, Any], tag: str, default: Any = None) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else default


def _describe_http_error(err: Exception, what: str, url: str) -> PacsError:
    import requests

    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        code = err.response.status_code
        hint = {
            401: "the server wants credentials (--username/--password)",
            403: "the credentials are not allowed to do this",
            404: "the server does not know it (is the URL the DICOMweb root, e.g. http://host:8042/dicom-web?)",
        }.get(code, (err.response.text or "").strip()[:200])
        return PacsError(f"{what} failed: HTTP {code} from {url}: {hint}")
    if isinstance(err, requests.exceptions.Timeout):
        return PacsError(f"{what} failed: {url} did not answer in time")
    if isinstance(err, requests.exceptions.ConnectionError):
        return PacsError(f"cannot reach the DICOMweb server at {url} ({what}): is it running, and is the URL right?")
    return PacsError(f"{what} failed against {url}: {err}")


class _Client:
    """``dicomweb_client.DICOMwebClient`` with errors turned into :class:`PacsError`."""

    def __init__(self, url: str, username: str | None, password: str | None, headers: Mapping[str, str] | None,
                 timeout: float) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        session = requests.Session()
        if username is not None:
            session.auth = (username, password or "")
        self.api = DICOMwebClient(self.url, session=session, headers=dict(headers or {}), timeout=timeout)
        # dicomweb-client retries 5 times with 1-16 s back-off, on any error: a server that is down would
        # take 30+ s to report. 3 attempts with 0.5 s and 1 s pauses still ride over a busy server's 503.
        self.api.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import requests
        from retrying import RetryError

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.RequestException as e:
            raise _describe_http_error(e, what, self.url) from e
        except RetryError as e:  # the server kept answering 429/503/504 (busy)
            raise PacsError(f"{what} failed: {self.url} stayed busy (HTTP 429/503/504); try again later") from e


def connect(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> _Client:
    """A DICOMweb client for ``url`` (the service root, e.g. ``http://127.0.0.1:8042/dicom-web``)."""
    wire_log = logging.getLogger("dicomweb_client")
    if wire_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        wire_log.setLevel(logging.WARNING)  # it logs every request at INFO
    if not url.startswith(("http://", "https://")):
        raise PacsError(f"{url!r} is not a DICOMweb URL: give the service root, e.g. http://127.0.0.1:8042/dicom-web")
    return _Client(url, username, password, headers, timeout)


def find_series(client: _Client, series_uid: str, study_uid: str | None = None) -> SeriesInfo:
    """Look a series up with QIDO-RS (in ``study_uid`` if given, else across the server)."""
    fields = [_MODALITY, _DESCRIPTION, _N_INSTANCES, _SERIES_NUMBER, _STUDY_UID]
    found = client.call(
        f"looking up series {series_uid}", client.api.search_for_series, study_instance_uid=study_uid,
        search_filters={"SeriesInstanceUID": series_uid}, fields=fields,
    )
    found = [s for s in found or [] if _value(s, _SERIES_UID) in (series_uid, None)]
    if not found:
        where = f"study {study_uid}" if study_uid else "the server"
        raise PacsError(f"series {series_uid} is not in {where} ({client.url}); check the SeriesInstanceUID")
    item = found[0]
    study = _value(item, _STUDY_UID) or study_uid
    if not study:
        raise PacsError(f"the server did not say which study series {series_uid} belongs to; pass --study")
    number = _value(item, _SERIES_NUMBER)
    count = _value(item, _N_INSTANCES)
    return SeriesInfo(
        study_uid=str(study), series_uid=series_uid, modality=str(_value(item, _MODALITY, "") or ""),
        description=str(_value(item, _DESCRIPTION, "") or ""),
        series_number=int(number) if number is not None else None, instances=int(count) if count is not None else None,
    )


def download_series(client: _Client, info: SeriesInfo, folder: Path) -> list[Path]:
    """WADO-RS retrieve every instance of the series into ``folder`` (one file each); returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def fetch() -> None:
        for k, ds in enumerate(client.api.iter_series(info.study_uid, info.series_uid)):
            path = folder / f"{k + 1:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)

    client.call(f"retrieving series {info.series_uid}", fetch)
    if not paths:
        raise PacsError(f"the server returned no instances for series {info.series_uid}")
    return paths


def upload_series(client: _Client, files: Sequence[Path], study_uid: str, batch: int = STOW_BATCH) -> int:
    """STOW-RS the DICOM ``files`` into ``study_uid``; returns how many the server accepted."""
    import pydicom

    stored = 0
    for i in range(0, len(files), batch):
        datasets = [pydicom.dcmread(p) for p in files[i : i + batch]]
        answer = client.call(
            f"storing instances {i + 1}-{i + len(datasets)} of {len(files)}", client.api.store_instances,
            datasets, study_instance_uid=study_uid,
        )
        failed = answer.get(_FAILED_SOP_SEQUENCE) if answer is not None else None
        if failed is not None and len(failed.value):
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed.value})
            raise PacsError(
                f"the server refused {len(failed.value)} of {len(datasets)} instances (failure reasons {reasons}); "
                f"{stored} were stored before"
            )
        stored += len(datasets)
    return stored


def _check_stored(client: _Client, study_uid: str, series_uid: str, expected: int) -> None:
    try:
        info = find_series(client, series_uid, study_uid)
    except PacsError as e:
        raise PacsError(f"the upload was accepted but the series cannot be found afterwards: {e}") from e
    if info.instances is not None and info.instances != expected:
        raise PacsError(f"the server holds {info.instances} of the {expected} uploaded instances of series {series_uid}")


def denoise_series(
    url: str,
    series_uid: str,
    *,
    study_uid: str | None = None,
    username: str | None = None,
    password: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    keep: Path | str | None = None,
    series_description_suffix: str | None = None,
    series_number: int | None = None,
    store: bool = True,
    overrides: Mapping[str, Any] | None = None,
    bundle: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> PacsResult:
    """Pull series ``series_uid`` from the DICOMweb server at ``url``, denoise it, store the derived series back.

    The pulled series goes through the bundle's inference pipeline (:func:`~ldct_clip.workflows.denoise_cases`,
    the components of ``inference.json``), as any other door's input does.

    Args:
        url: DICOMweb service root (``http://host:8042/dicom-web`` for Orthanc).
        series_uid: SeriesInstanceUID of a CT series.
        study_uid: its StudyInstanceUID, if known (saves a server-wide search).
        username, password, headers: HTTP basic auth / extra headers (e.g. ``Authorization: Bearer ...``).
        timeout: seconds per HTTP request.
        keep: a folder to keep ``source/`` (what was pulled) and ``denoised/`` (what was stored) in;
            default: a temporary folder, removed at the end.
        series_description_suffix, series_number: of the derived series (see ``write_derived_series``);
            ``None``: the config's (``" [ldct-clip]"``; the source's number + 1000).
        store: False: do everything but the STOW-RS (with ``keep``, to look at the result first).
        overrides: bundle config overrides of the inference (``ckpt_path`` -- required in practice: the
            bundle's ``models/model.pt`` by default --, ``precision``, ``roi_size``, ``"network_def#width"``...).
        bundle: another bundle folder (default: the installed one).
        progress: called with a line of text at each step.

    Raises:
        PacsError: server unreachable or refusing, series unknown, not a CT series.
        InputError: the pulled series cannot be read as a CT volume.
        WeightsError: no checkpoint, or one that does not fit.
    """
    import pydicom

    from ldct_clip.workflows import denoise_cases

    say = progress or (lambda text: log.info(text))
    seconds: dict[str, float] = {}
    client = connect(url, username=username, password=password, headers=headers, timeout=timeout)
    info = find_series(client, series_uid, study_uid)
    if info.modality and info.modality != "CT":
        raise PacsError(
            f"series {series_uid} ({info.description or 'no description'}) is {info.modality}, not CT; "
            "ldct-clip denoises CT series only"
        )
    work = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="ldct-clip-pacs-"))
    if keep is not None and (work / "source").exists() and any((work / "source").iterdir()):
        raise InputError(f"{work / 'source'} is not empty; give a new --keep folder")
    try:
        t = time.perf_counter()
        files = download_series(client, info, work / "source")
        seconds["download"] = time.perf_counter() - t
        say(f"pulled {len(files)} instances of series {series_uid} ({info.description or 'no description'})")

        t = time.perf_counter()
        series = {"series_description_suffix": series_description_suffix, "series_number": series_number}
        results = denoise_cases(
            work / "source", work / "pipeline", bundle=bundle, **{**dict(overrides or {}), "write_dicom": True,
            "write_png": False, **{k: v for k, v in series.items() if v is not None}},
        )
        if len(results) != 1:
            raise InputError(f"series {series_uid} came back as {len(results)} cases; expected one CT series")
        if not results[0].ok:
            raise InputError(results[0].message)
        derived = [p for p in results[0].outputs if p.is_dir()]
        if not derived:
            raise InputError(f"series {series_uid} did not read as DICOM")
        seconds["denoise"] = time.perf_counter() - t
        say(f"denoised {results[0].slices} slices in {seconds['denoise']:.1f} s")

        remove_path(work / "denoised")
        os.replace(derived[0], work / "denoised")  # what is stored is what is kept
        out = sorted((work / "denoised").glob("*.dcm"))
        derived_uid = str(pydicom.dcmread(out[0], stop_before_pixels=True).SeriesInstanceUID)
        stored = 0
        if store:
            t = time.perf_counter()
            stored = upload_series(client, out, info.study_uid)
            _check_stored(client, info.study_uid, derived_uid, len(out))
            seconds["upload"] = time.perf_counter() - t
            say(f"stored {stored} instances as series {derived_uid} in study {info.study_uid}")
        return PacsResult(
            study_uid=info.study_uid, source_series_uid=series_uid, derived_series_uid=derived_uid,
            instances=stored, seconds=seconds, kept=work if keep is not None else None,
        )
    finally:
        remove_path(work / "pipeline")
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def list_series(client: _Client, study_uid: str | None = None, modality: str | None = None) -> list[SeriesInfo]:
    """The series on the server (of one study and/or modality), for picking one to denoise."""
    filters = {"Modality": modality} if modality else None
    found = client.call(
        "listing series", client.api.search_for_series, study_instance_uid=study_uid, search_filters=filters,
        fields=[_MODALITY, _DESCRIPTION, _N_INSTANCES, _SERIES_NUMBER, _STUDY_UID], get_remaining=True,
    )
    result = []
    for item in found or []:
        number, count = _value(item, _SERIES_NUMBER), _value(item, _N_INSTANCES)
        result.append(SeriesInfo(
            study_uid=str(_value(item, _STUDY_UID) or study_uid or ""), series_uid=str(_value(item, _SERIES_UID)),
            modality=str(_value(item, _MODALITY, "") or ""), description=str(_value(item, _DESCRIPTION, "") or ""),
            series_number=int(number) if number is not None else None,
            instances=int(count) if count is not None else None,
        ))
    return result
