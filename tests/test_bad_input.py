"""Bad input found by a fuzzed corpus (issue 10, item 4): one test per family.

Every family ends in a one-line message and exit status 2 (or a correct result), with the input unchanged and
nothing half-written in the output.  A series with one unreadable slice is *refused* as a whole (denoising the
others would silently drop a slice).  Cases go through the CLI's in-process entry point
(``ldct_clip.cli.main``), the door users take; a few go through ``python -m monai.bundle run``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag

from ldct_clip.cli import main
from ct_factory import phantom_hu, write_ct_series, write_enhanced_ct
from ct_factory import write_nifti as write_test_nifti

SHAPE = (64, 64, 4)  # (X, Y, Z): the smallest in-plane size the network takes, few slices


# -- helpers (also used by test_fuzz.py) -------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden ones too), by relative path; links by their target."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary or set-aside entries a run must never leave behind."""
    if not out.exists():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.startswith((".tmp-", ".old-")))


def denoise(inp: Path | str, out: Path | str, ckpt: Path, *extra: str) -> int:
    """``ldct-clip denoise`` in-process with a tiny model; returns the exit status."""
    return main(["denoise", str(inp), str(out), "--checkpoint", str(ckpt), "--roi-size", "64", "64", "-q",
                 "--device", "cpu", "--precision", "fp32", *extra])


@pytest.fixture
def cli(tiny_checkpoint, caplog, capsys):
    """Run the CLI; return (status, everything it printed or logged)."""

    def run(inp, out, *extra):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ldct_clip"):
            rc = denoise(inp, out, tiny_checkpoint, *extra)
        captured = capsys.readouterr()
        return rc, captured.err + captured.out + caplog.text

    return run


def series(folder: Path, seed: int = 0, n: int = 4, **kw) -> list[Path]:
    return write_ct_series(folder, phantom_hu((SHAPE[0], SHAPE[1], n), seed=seed), **kw)


def edit(path: Path, change) -> None:
    """Re-save ``path`` after ``change(ds)``, without pydicom validating the (deliberately bad) values."""
    with pydicom.config.settings.reading_validation_mode_context(pydicom.config.IGNORE) if hasattr(
        pydicom.config.settings, "reading_validation_mode_context"
    ) else _no_validation():
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=False)


class _no_validation:
    def __enter__(self):
        s = pydicom.config.settings
        self.saved = s.reading_validation_mode, s.writing_validation_mode
        s.reading_validation_mode = s.writing_validation_mode = pydicom.config.IGNORE

    def __exit__(self, *exc):
        s = pydicom.config.settings
        s.reading_validation_mode, s.writing_validation_mode = self.saved


def set_raw(tag: int, vr: str, value):
    """Set an element; text values go in as raw bytes, which pydicom writes without converting them."""

    def change(ds):
        if isinstance(value, str):
            raw = value.encode() + b" " * (len(value) % 2)
            ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
        else:
            ds[tag] = DataElement(tag, vr, value)

    return change


def element_offset(path: Path, keyword: str) -> int:
    """Byte offset of a top-level element's tag in an explicit-VR little-endian file."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    group, elem = tag >> 16, tag & 0xFFFF
    raw = path.read_bytes()
    at = raw.find(group.to_bytes(2, "little") + elem.to_bytes(2, "little"), 132)
    assert at > 0, keyword
    return at


def check_refused(rc: int, text: str, inp: Path, before: dict, out: Path, *expected: str) -> None:
    assert rc == 2, text
    assert "Traceback" not in text
    for e in expected:
        assert e in text, (e, text)
    assert snapshot(inp) == before, "the input was modified"
    assert not leftovers(out)
    assert not out.exists() or not any(p for p in out.iterdir() if p.suffix in (".gz", ".png") or p.is_dir()), sorted(
        out.iterdir()
    )


# -- DICOM families -----------------------------------------------------------------------------------------


def _truncate_in_element(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[: element_offset(p, "ImagePositionPatient") + 3])  # inside the tag/VR/length


def _unknown_vr(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    at = element_offset(p, "SliceThickness")
    raw[at + 4 : at + 6] = b"Q?"
    p.write_bytes(bytes(raw))


def _junk_after_pixels(p: Path) -> None:
    p.write_bytes(p.read_bytes() + b"\xe1\x7f\x10\x00ZZ\x04\x00junkjunk")


def _deflate_meta(p: Path) -> None:
    raw = p.read_bytes()
    ts = b"1.2.840.10008.1.2.1\x00"
    assert ts in raw[:400]
    p.write_bytes(raw.replace(ts, b"1.2.840.10008.1.2.1.99", 1))  # Deflated Explicit VR LE, same length


def _unknown_ts_meta(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.10", 1))


BROKEN_SLICE = {
    "truncated inside an element": (_truncate_in_element, "corrupt or truncated"),
    "truncated in the pixel data": (lambda p: p.write_bytes(p.read_bytes()[:-100]), "pixel data"),
    "unknown VR": (_unknown_vr, "cannot read DICOM"),
    "junk after the pixel data": (_junk_after_pixels, "cannot read DICOM"),
    "no SOPInstanceUID": (lambda p: edit(p, lambda ds: delattr(ds, "SOPInstanceUID")), "SOPInstanceUID"),
    "no StudyInstanceUID": (lambda p: edit(p, lambda ds: delattr(ds, "StudyInstanceUID")), "StudyInstanceUID"),
    "empty Rows": (lambda p: edit(p, set_raw(0x00280010, "US", None)), "Rows"),
    "two Columns": (lambda p: edit(p, set_raw(0x00280011, "US", [64, 64])), "Columns"),
    "empty SamplesPerPixel": (lambda p: edit(p, set_raw(0x00280002, "US", None)), "SamplesPerPixel"),
    "two SamplesPerPixel": (lambda p: edit(p, set_raw(0x00280002, "US", [1, 1])), "SamplesPerPixel"),
    "NumberOfFrames abc": (lambda p: edit(p, set_raw(0x00280008, "IS", "abc")), "NumberOfFrames"),
    "NumberOfFrames 1A": (lambda p: edit(p, set_raw(0x00280008, "IS", "1A")), "NumberOfFrames"),
    "deflate transfer syntax not used": (_deflate_meta, "DICOM"),
    "unknown transfer syntax": (_unknown_ts_meta, "transfer syntax"),
    "no RescaleIntercept in one slice": (
        lambda p: edit(p, lambda ds: delattr(ds, "RescaleIntercept")), "no RescaleIntercept, while"),
    "overflowing RescaleSlope": (lambda p: edit(p, set_raw(0x00281053, "DS", "1e308")), "rescale tags are broken"),
    "overflowing RescaleIntercept": (
        lambda p: edit(p, set_raw(0x00281052, "DS", "-1e308")), "rescale tags are broken"),
}


@pytest.mark.parametrize("where", [0, 2, 5], ids=["first", "middle", "last"])
@pytest.mark.parametrize("family", list(BROKEN_SLICE))
def test_one_broken_slice_refuses_the_series(tmp_path, cli, family, where):
    """The series is refused (exit 2, one line naming the file); it is never denoised with a slice missing."""
    mutate, expected = BROKEN_SLICE[family]
    files = series(tmp_path / "in" / "s", n=6)
    mutate(files[where])
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", expected, "FAILED")
    if family != "no RescaleIntercept in one slice":
        assert files[where].name in text
    assert "NaN or infinite" not in text


def test_pydicom_bad_vr_file(tmp_path, cli):
    from pydicom.data import get_testdata_file

    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("badVR.dcm"), tmp_path / "in" / "badVR.dcm")
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", "badVR.dcm")


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID"])
def test_enhanced_ct_without_uid(tmp_path, cli, keyword):
    path = write_enhanced_ct(tmp_path / "in" / "mf.dcm", phantom_hu(SHAPE))
    edit(path, lambda ds: delattr(ds, keyword))
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", keyword)


def test_series_without_preamble_is_read(tmp_path, cli):
    """Older exports: no 128-byte preamble and no DICM prefix, with or without file meta."""
    files = series(tmp_path / "in" / "with_meta", seed=1) + series(tmp_path / "in" / "bare", seed=2)
    for p in files[:4]:  # file meta kept, preamble and prefix dropped
        p.write_bytes(p.read_bytes()[132:])
    for p in files[4:]:  # a bare implicit-VR dataset, as old scanners wrote
        ds = pydicom.dcmread(p)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(p, implicit_vr=True, little_endian=True, enforce_file_format=False)
        assert p.read_bytes()[128:132] != b"DICM"
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    assert rc == 0, text
    for name in ("with_meta", "bare"):
        denoised = np.asarray(nib.load(tmp_path / "out" / f"{name}.nii.gz").dataobj)
        assert denoised.shape == SHAPE
        assert len(list((tmp_path / "out" / f"{name}_dicom").glob("*.dcm"))) == SHAPE[2]


def test_dicomdir_file_set(tmp_path, cli):
    """A DICOMDIR file set (extensionless files + DICOMDIR): the series is denoised, DICOMDIR is no case."""
    from pydicom.fileset import FileSet

    files = series(tmp_path / "src", seed=3)
    fs = FileSet()
    for p in files:
        fs.add(pydicom.dcmread(p))
    fs.write(tmp_path / "in")
    assert (tmp_path / "in" / "DICOMDIR").is_file()
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    assert rc == 0, text
    assert "FAILED" not in text and "DICOMDIR" not in text
    [nii] = list((tmp_path / "out").glob("*.nii.gz"))
    assert nib.load(nii).shape == SHAPE


# -- NIfTI / MHA / NRRD ---------------------------------------------------------------------------------------


def _nifti_with(path: Path, sform: np.ndarray, qform_code: int = 0, data=None) -> None:
    img = nib.Nifti1Image(phantom_hu(SHAPE).astype(np.int16) if data is None else data, None)
    img.header.set_sform(sform, code=1)
    img.header["qform_code"] = qform_code
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


@pytest.mark.parametrize(
    "sform, expected",
    [(np.zeros((4, 4)), "singular"), (np.diag([1.0, 0.0, 1.0, 1.0]), "singular"),
     (np.where(np.eye(4) > 0, np.nan, 0.0), "NaN")],
    ids=["all zero", "singular", "NaN"],
)
def test_nifti_without_a_usable_affine(tmp_path, cli, sform, expected):
    _nifti_with(tmp_path / "in" / "a.nii.gz", sform)
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", expected, "sform")
    assert "slices/s" not in text  # refused before denoising


def test_nifti_scaling_overflow(tmp_path, cli):
    import struct

    path = write_test_nifti(tmp_path / "in" / "a.nii", phantom_hu(SHAPE))
    raw = bytearray(path.read_bytes())
    raw[112:116] = struct.pack("<f", 1e38)  # scl_slope: finite, but 3000 * 1e38 overflows float32
    path.write_bytes(bytes(raw))
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", "scl_slope")
    assert "NaN or infinite" not in text


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_zero_length_axis(tmp_path, cli, suffix):
    path = tmp_path / "in" / f"empty{suffix}"
    path.parent.mkdir()
    if suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(np.zeros((64, 64, 0), np.int16), np.eye(4)), path)
    else:
        # SimpleITK will not make a zero-size image; a header promising 0 slices is what a broken exporter writes
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 64, 64), np.int16)), str(path))
        raw = path.read_bytes()
        old = b"DimSize = 64 64 2" if suffix == ".mha" else b"sizes: 64 64 2"
        assert old in raw
        path.write_bytes(raw.replace(old, old[:-1] + b"0"))
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", path.name)


def test_truncated_mha(tmp_path, cli):
    path = tmp_path / "in" / "t.mha"
    path.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(phantom_hu(SHAPE).T.astype(np.int16)), str(path))
    path.write_bytes(path.read_bytes()[:-5000])
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", "truncated")
    assert "No such file" not in text


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
@pytest.mark.parametrize("preamble", [True, False])
def test_non_ct_dicom_renamed_as_image(tmp_path, cli, suffix, preamble):
    [src] = series(tmp_path / "src", n=1, modality="MR")
    raw = src.read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"scan{suffix}").write_bytes(raw if preamble else raw[132:])
    before = snapshot(tmp_path / "in")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    check_refused(rc, text, tmp_path / "in", before, tmp_path / "out", "DICOM file")
    if preamble:
        assert "Modality MR" in text


# -- weights and output paths -----------------------------------------------------------------------------------


def test_zero_byte_checkpoint(tmp_path, caplog, capsys):
    series(tmp_path / "in" / "s")
    (tmp_path / "empty.pt").write_bytes(b"")
    rc = denoise(tmp_path / "in", tmp_path / "out", tmp_path / "empty.pt")
    err = capsys.readouterr().err
    assert rc == 2 and "empty.pt" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_messages_name_the_option_of_the_door_used(tmp_path, capsys):
    from test_bundle import TINY_OVERRIDES, run_inference

    series(tmp_path / "in" / "s")
    rc = main(["denoise", str(tmp_path / "in"), str(tmp_path / "out"), "--checkpoint", str(tmp_path / "none.pt"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "--checkpoint PATH" in err and "--ckpt_path" not in err
    r = run_inference(tmp_path / "in", tmp_path / "out2", "--ckpt_path", str(tmp_path / "none.pt"), *TINY_OVERRIDES)
    assert r.returncode == 2 and "--ckpt_path PATH" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def _good_run(tmp_path: Path, cli) -> tuple[Path, Path, dict]:
    series(tmp_path / "in" / "case1")
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    assert rc == 0, text
    return tmp_path / "in", tmp_path / "out", snapshot(tmp_path / "out")


def test_png_path_is_a_folder_keeps_the_earlier_result(tmp_path, cli):
    inp, out, first = _good_run(tmp_path, cli)
    (out / "case1.png").unlink()
    (out / "case1.png").mkdir()
    (out / "case1.png" / "mine.txt").write_text("user data")
    before = snapshot(out)
    rc, text = cli(inp, out)
    assert rc == 2 and "case1.png" in text and "Traceback" not in text
    assert snapshot(out) == before  # earlier NIfTI and DICOM kept, the user's folder untouched
    assert not leftovers(out)


def test_failed_rerun_keeps_the_earlier_result(tmp_path, cli):
    inp, out, first = _good_run(tmp_path, cli)
    files = sorted((inp / "case1").glob("*.dcm"))
    _truncate_in_element(files[1])
    rc, text = cli(inp, out)
    assert rc == 2 and files[1].name in text
    assert snapshot(out) == first and not leftovers(out)


def test_rerun_leaves_exactly_this_runs_outputs(tmp_path, cli):
    inp, out, first = _good_run(tmp_path, cli)
    rc, text = cli(inp, out, "--no-dicom", "--no-png")
    assert rc == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["case1.nii.gz"]  # stale case1_dicom/ and case1.png removed
    # the same case name now from a NIfTI file: no DICOM series of the old input stays beside it
    rc, text = cli(inp, out)
    assert sorted(p.name for p in out.iterdir()) == ["case1.nii.gz", "case1.png", "case1_dicom"]
    shutil.rmtree(inp)
    write_test_nifti(inp / "case1.nii.gz", phantom_hu(SHAPE, seed=9))
    rc, text = cli(inp, out)
    assert rc == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["case1.nii.gz", "case1.png"]
    assert not leftovers(out)


@pytest.mark.parametrize("layout", ["series folders", "nifti files"])
@pytest.mark.parametrize("where", ["inside", "deep inside", "equal", "dotdot", "symlink", "empty input"])
def test_output_in_the_input_is_refused(tmp_path, cli, monkeypatch, layout, where):
    inp = tmp_path / "in"
    if layout == "series folders":
        series(inp / "a", seed=1)
        series(inp / "b", seed=2)
    else:
        write_test_nifti(inp / "a.nii.gz", phantom_hu(SHAPE, seed=1))
        write_test_nifti(inp / "b.nii.gz", phantom_hu(SHAPE, seed=2))
    given_in: str = str(inp)
    if where == "inside":
        out = str(inp / "out")
    elif where == "deep inside":
        out = str(inp / "x" / "y" / "out")
    elif where == "equal":
        out = str(inp)
    elif where == "dotdot":
        (inp / "x").mkdir()
        out = str(inp / "x" / ".." / "out")
    elif where == "symlink":
        (inp / "target").mkdir()
        (tmp_path / "link").symlink_to(inp / "target")
        out = str(tmp_path / "link")
    else:
        monkeypatch.chdir(inp)
        given_in, out = "", "out"
    before = snapshot(inp)
    rc, text = cli(given_in, out)
    assert rc == 2 and "Traceback" not in text, text
    assert "input" in text
    assert snapshot(inp) == before


def test_warnings_print_once(tmp_path, tiny_checkpoint, capfd):
    """A reader note is one log line, not also a Python warning with its source line."""
    import subprocess
    import sys

    files = series(tmp_path / "in" / "s", n=5)
    files[2].unlink()  # a gap: the reader notes non-uniform spacing
    r = subprocess.run(
        [sys.executable, "-m", "ldct_clip", "denoise", str(tmp_path / "in"), str(tmp_path / "out"),
         "--checkpoint", str(tiny_checkpoint), "--roi-size", "64", "64", "-q", "--precision", "fp32"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("not uniform") == 1, r.stderr
    assert "UserWarning" not in r.stderr and "warn(" not in r.stderr


def test_sizes_print_as_rows_x_columns(tmp_path, cli):
    write_test_nifti(tmp_path / "in" / "small.nii.gz", np.zeros((20, 40, 2)))  # 20 columns (X), 40 rows (Y)
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    assert rc == 2 and "40 rows x 20 columns" in text


def test_a_reader_warning_is_shown_once_in_words_a_user_can_act_on(tmp_path, cli):
    # pydicom both warns and logs each out-of-standard value, and finding the cases, reading them and copying the
    # headers into the derived series all parse the same files: the user sees one line, naming the case
    files = series(tmp_path / "in" / "s")
    edit(files[1], set_raw(0x00200010, "SH", "A-STUDY-ID-FAR-TOO-LONG-FOR-ITS-VR"))  # StudyID, at most 16 chars
    rc, text = cli(tmp_path / "in", tmp_path / "out")
    assert rc == 0, text
    notes = [line for line in text.splitlines() if "SH element" in line]
    assert len(notes) == 1, text
    assert "s: a DICOM SH element is 34 characters long (at most 16 allowed)" in notes[0] and "re-export" in notes[0]
    assert "Please see <" not in text and "maximum length" not in text
