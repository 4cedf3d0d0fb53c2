"""Finding the cases (volumes) under a path: DICOM series, multi-frame DICOM files, NIfTI/MHA/NRRD files.

A *case* is what becomes one :class:`~ldct_clip.ct.io.volume.CTVolume`: every single-frame DICOM file of one
SeriesInstanceUID, one multi-frame DICOM file, or one image file.  Discovery only reads headers
(``stop_before_pixels``); pixel data is decoded later by :func:`ldct_clip.ct.io.read.read_case`.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldct_clip.errors import InputError

__all__ = [
    "Case", "find_cases", "find_one_case", "sanitize_name", "read_dicom", "dicom_int", "has_dicm_magic",
    "NIFTI_SUFFIXES", "ITK_SUFFIXES", "CASE_KINDS",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Files SimpleITK reads as a whole volume.  (.mhd/.nhdr are headers next to their raw data files.)
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
CASE_KINDS = ("dicom", "nifti", "image")

# Non-image DICOM objects that may sit in a series folder: DICOMDIR, SR, presentation states...
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_NAME_MAX = 100


@dataclass
class Case:
    """One volume to read.

    Attributes:
        name: unique (within one :func:`find_cases` call), file-system-safe name.
        kind: ``"dicom"``, ``"nifti"`` or ``"image"``.
        paths: the files making up the case, sorted by path.  A DICOM series has one path per slice
            (in no geometric order: the reader sorts by position); other kinds have exactly one.
        error: set when discovery already knows the case cannot be read (a corrupt file in its folder);
            :func:`~ldct_clip.ct.io.read.read_case` raises it, so one bad case does not stop the others.
    """

    name: str
    kind: str
    paths: list[Path] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        if self.kind not in CASE_KINDS:
            raise ValueError(f"Case.kind must be one of {CASE_KINDS}, got {self.kind!r}")
        if not self.paths:
            raise ValueError("Case.paths is empty")

    @property
    def source(self) -> Path:
        """The file (one-file cases) or the folder holding the files (DICOM series) the case comes from."""
        if len(self.paths) == 1:
            return self.paths[0]
        return Path(os.path.commonpath([str(p.parent) for p in self.paths]))


def sanitize_name(text: str, default: str = "case") -> str:
    """Turn ``text`` into a portable file/folder name: ``[A-Za-z0-9._-]`` only, no leading dot, <= 100 chars."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned)[:_NAME_MAX].strip("._-")
    return cleaned or default


def _strip_suffix(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES + (".dcm", ".dicom", ".ima"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _image_kind(path: Path) -> str | None:
    lower = path.name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(ITK_SUFFIXES):
        return "image"
    return None


def has_dicm_magic(path: Path) -> bool:
    """Whether ``path`` starts with the DICOM Part 10 preamble and ``DICM`` prefix."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def starts_like_dicom(path: Path) -> bool:
    """Whether ``path`` is evidently DICOM: the Part 10 ``DICM`` prefix, or (older exports without preamble) a
    first element of the file meta (group 0002) or identifying (group 0008) groups, little endian."""
    if has_dicm_magic(path):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    if len(head) < 4:
        return False
    group, element = int.from_bytes(head[:2], "little"), int.from_bytes(head[2:], "little")
    return group in (0x0002, 0x0008) and element < 0x1000


def read_dicom(path: Path, *, stop_before_pixels: bool = False, force: bool | None = None) -> Any:
    """``pydicom.dcmread`` with every element decoded now, so that a corrupt file fails here and only here.

    pydicom decodes element values lazily: a truncated element, an unknown VR from a flipped byte or junk
    after the pixel data would otherwise raise ``struct.error``/``NotImplementedError``/... wherever a tag is
    first read.  ``force`` defaults to ``True`` for files without the ``DICM`` prefix (older exports without
    preamble), which pydicom then reads as a bare dataset.

    Raises:
        InputError: the file cannot be parsed, naming it and what to do.
    """
    import pydicom

    if force is None:
        force = not has_dicm_magic(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=force)
        for elem in ds.iterall():
            elem.value  # noqa: B018  # decode now (see above)
        if getattr(ds, "file_meta", None) is not None:
            for elem in ds.file_meta:
                elem.value  # noqa: B018
    except Exception as exc:  # pydicom raises any type on corrupt bytes (struct.error, NotImplementedError, zlib.error...)
        raise InputError(
            f"{path}: cannot read DICOM file ({type(exc).__name__}: {_first_line(exc)}). It is corrupt or truncated: "
            "re-export it or remove it from the folder."
        ) from exc
    return ds


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:200]


def dicom_int(ds: Any, keyword: str, label: str, default: int | None = None, minimum: int = 1) -> int:
    """An integer DICOM element (US/IS) that must hold one value >= ``minimum``; ``default`` when absent.

    Raises:
        InputError: the element is missing without a default, empty, multi-valued or not an integer.
    """
    if keyword not in ds:
        if default is None:
            raise InputError(f"{label}: no {keyword}; the header is incomplete. Re-export the file.")
        return default
    value = ds[keyword].value
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        raise InputError(f"{label}: {keyword} is present but empty; the header is broken. Re-export the file.")
    try:
        if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
            raise TypeError("several values")
        number = int(str(value).strip()) if isinstance(value, (str, bytes)) else int(value)
        if number != float(value):
            raise ValueError("not a whole number")
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label}: {keyword} is {value!r}, not one integer ({exc}); the header is broken.") from exc
    if number < minimum:
        raise InputError(f"{label}: {keyword} is {number}; it must be at least {minimum}. The header is broken.")
    return number


@dataclass
class _DicomInfo:
    path: Path
    series_uid: str
    frames: int
    series_number: str
    description: str


def _read_dicom_info(path: Path) -> _DicomInfo | None:
    """Header facts for grouping, or None when ``path`` is not a DICOM *image* file.

    Files that are evidently DICOM (the ``DICM`` magic, or a preamble-less export that starts with a DICOM
    element: :func:`starts_like_dicom`) make a header that fails to parse an error (silently dropping it would
    turn a corrupt slice into a missing one).  Other files are tried leniently and ignored when they do not parse.
    """
    from pydicom.uid import UID

    magic = starts_like_dicom(path)
    if not magic and path.suffix.lower() not in ("", ".dcm", ".dicom", ".ima"):
        return None  # .txt, .json, .png...: not worth a parse attempt
    try:
        with warnings.catch_warnings():
            if not magic:  # a forced parse of a file that turns out not to be DICOM warns about its junk
                warnings.simplefilter("ignore")
            ds = read_dicom(path, stop_before_pixels=True, force=not has_dicm_magic(path))
    except InputError:
        if magic:
            raise
        return None
    meta = getattr(ds, "file_meta", None)
    # a DICOMDIR has no SOPClassUID in its dataset, only MediaStorageSOPClassUID in its file meta
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "") or "")
    rows = ds.get("Rows")
    series_uid = ds.get("SeriesInstanceUID")
    if magic and not sop_class:
        # Every DICOM object has a SOP Class UID; without it the header was cut short or is garbage.
        raise InputError(
            f"{path}: DICOM header is incomplete (no SOPClassUID). The file is corrupt or truncated: "
            "re-export it or remove it from the folder."
        )
    if magic and rows is None and "Image Storage" in UID(sop_class).name:
        raise InputError(
            f"{path}: DICOM image header is cut short (no Rows). The file is corrupt or truncated: "
            "re-export it or remove it from the folder."
        )
    if sop_class == _MEDIA_STORAGE_DIRECTORY or rows is None:
        return None  # DICOMDIR, SR, RT structures...: not images
    if not series_uid:
        if not magic:
            return None
        raise InputError(f"{path}: DICOM image without SeriesInstanceUID; cannot group it into a series.")
    frames = dicom_int(ds, "NumberOfFrames", str(path), default=1)
    is_enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    return _DicomInfo(
        path=path,
        series_uid=str(series_uid),
        # An enhanced file with one frame is still its own case: its geometry lives in functional groups.
        frames=max(frames, 2) if is_enhanced else frames,
        series_number=str(ds.get("SeriesNumber", "") or ""),
        description=str(ds.get("SeriesDescription", "") or ""),
    )


def _iter_files(root: Path) -> list[Path]:
    """All regular files under ``root``, sorted, skipping hidden files and folders (``.git``, temp outputs)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            if path.is_file():
                found.append(path)
    return found


def _series_name(folder_name: str, info: _DicomInfo, several: bool) -> str:
    if not several:
        return folder_name
    number = info.series_number or hashlib.sha1(info.series_uid.encode()).hexdigest()[:8]
    parts = [folder_name, number]
    if info.description:
        parts.append(info.description)
    return "_".join(parts)


def _make_unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 2
        while candidate.lower() in seen:  # lower(): case-insensitive file systems
            candidate = f"{name}_{n}"
            n += 1
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def _folder_label(path: Path) -> str:
    return sanitize_name(path.resolve().name or "root")


def find_cases(root: Path | str) -> list[Case]:
    """List the cases under ``root``.

    Args:
        root: a file (one case) or a folder, scanned recursively.  NIfTI (``.nii``, ``.nii.gz``),
            MHA/MHD/NRRD and DICOM files are recognised; other files are ignored.  Single-frame DICOM
            files are grouped by SeriesInstanceUID (a folder holding several series gives one case per
            series, named ``<folder>_<SeriesNumber>_<SeriesDescription>``); a multi-frame DICOM file is
            a case of its own.

    Returns:
        Cases sorted by their first path, with unique, file-system-safe names.

    Raises:
        InputError: ``root`` does not exist, a file is not a readable image, a DICOM header is corrupt,
            or nothing usable was found.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(
            f"Input path {root} does not exist. Give a DICOM folder, a DICOM file or a NIfTI/MHA/NRRD file."
        )

    if root.is_file():
        kind = _image_kind(root)
        if kind is not None:
            return [Case(sanitize_name(_strip_suffix(root)), kind, [root])]
        info = _read_dicom_info(root)
        if info is None:
            raise InputError(
                f"{root} is neither a DICOM image nor a NIfTI/MHA/NRRD file. "
                "Give a DICOM folder, a DICOM file, or a .nii/.nii.gz/.mha/.nrrd file."
            )
        return [Case(sanitize_name(_strip_suffix(root)), "dicom", [root])]

    files = _iter_files(root)
    image_cases: list[tuple[Path, str, str]] = []  # (first path, base name, kind) before de-duplication
    paths_of: dict[Path, list[Path]] = {}
    series: dict[str, list[_DicomInfo]] = defaultdict(list)
    broken: dict[Path, list[str]] = defaultdict(list)  # folder -> messages of its corrupt DICOM files
    for path in files:
        kind = _image_kind(path)
        if kind is not None:
            image_cases.append((path, sanitize_name(_strip_suffix(path)), kind))
            paths_of[path] = [path]
            continue
        try:
            info = _read_dicom_info(path)
        except InputError as exc:
            broken[path.parent].append(str(exc))
            continue
        if info is None:
            continue
        if info.frames > 1:
            image_cases.append((path, sanitize_name(_strip_suffix(path)), "dicom"))
            paths_of[path] = [path]
        else:
            series[info.series_uid].append(info)

    errors: dict[Path, str] = {}
    # Several series sharing a folder get the series number and description in their names.
    series_per_folder: dict[Path, int] = defaultdict(int)
    folder_of: dict[str, Path] = {}
    for uid, infos in series.items():
        folder = Path(os.path.commonpath([str(i.path.parent) for i in infos]))
        folder_of[uid] = folder
        series_per_folder[folder] += 1
    for uid, infos in series.items():
        folder = folder_of[uid]
        name = sanitize_name(_series_name(_folder_label(folder), infos[0], series_per_folder[folder] > 1))
        paths = sorted(i.path for i in infos)
        image_cases.append((paths[0], name, "dicom"))
        paths_of[paths[0]] = paths
        # A corrupt file beside a series may be one of its slices: denoising the rest would silently
        # drop a slice, so the series fails with the corrupt file's message instead.
        problems = [m for d in {p.parent for p in paths} for m in broken.pop(d, [])]
        if problems:
            errors[paths[0]] = " ".join(problems)
    for folder, problems in broken.items():
        first = Path(problems[0].split(":")[0])
        image_cases.append((first, _folder_label(folder), "dicom"))
        paths_of[first] = [first]
        errors[first] = " ".join(problems)

    if not image_cases:
        raise InputError(
            f"No DICOM series or NIfTI/MHA/NRRD file found under {root} ({len(files)} file(s) looked at). "
            "Point to the folder that holds the CT series or image files."
        )
    image_cases.sort(key=lambda c: str(c[0]))
    names = _make_unique([c[1] for c in image_cases])
    return [
        Case(name, kind, paths_of[first], errors.get(first))
        for name, (first, _, kind) in zip(names, image_cases, strict=True)
    ]


def find_one_case(path: Path | str) -> Case:
    """The one case under ``path`` (a file, or a folder holding exactly one series or image).

    Raises:
        InputError: ``path`` holds no case or several (naming up to ten of them).
    """
    cases = find_cases(Path(path))
    if len(cases) != 1:
        names = ", ".join(c.name for c in cases[:10]) + (" ..." if len(cases) > 10 else "")
        raise InputError(f"{path} holds {len(cases)} cases ({names}); give the folder or file of one of them.")
    return cases[0]
