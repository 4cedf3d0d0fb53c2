"""Fuzzed corpus: mutated DICOM series and NIfTI files through ``ldct-clip denoise`` and ``monai.bundle run``.

A fixed seed draws a few hundred mutations (truncation, flipped bytes, deleted, emptied and contradictory tags,
odd shapes and dtypes).  Whatever the input, a run must end with status 0 or 2 and no traceback, leave the
input byte-identical, leave no temporary or half-written output, and give every denoised case a complete set
of outputs.
"""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ldct_clip.cli import main
from ct_factory import phantom_hu, write_ct_series
from ct_factory import write_nifti as write_test_nifti
from test_bad_input import SHAPE, denoise, edit, leftovers, set_raw, snapshot
from test_bundle import TINY_OVERRIDES, run_inference

pytestmark = pytest.mark.slow

SEED = 20240517
N_DICOM, N_NIFTI, N_SUBPROCESS = 130, 70, 4

TAGS = {  # keyword: (VR, contradictory or odd values)
    "Rows": ("US", [None, [64, 64], 0, 63, 65]),
    "Columns": ("US", [None, [64, 64], 0, 128]),
    "SamplesPerPixel": ("US", [None, [1, 1], 3]),
    "BitsAllocated": ("US", [None, 8, 12, 32]),
    "BitsStored": ("US", [None, 0, 17]),
    "PixelRepresentation": ("US", [None, 1, 2]),
    "NumberOfFrames": ("IS", ["abc", "1A", "0", "-3", "6"]),
    "RescaleSlope": ("DS", ["0", "1e308", "-1", "x", "nan"]),
    "RescaleIntercept": ("DS", ["1e308", "abc", "inf", ""]),
    "PixelSpacing": ("DS", ["0\\0", "1", "-1\\1", "a\\b"]),
    "ImagePositionPatient": ("DS", ["1\\2", "nan\\0\\0", "0\\0\\0"]),
    "ImageOrientationPatient": ("DS", ["1\\0\\0\\1\\0\\0", "0\\0\\0\\0\\0\\0", "1\\0\\0"]),
    "SliceThickness": ("DS", ["-2", "abc"]),
    "Modality": ("CS", ["MR", ""]),
    "SeriesInstanceUID": ("UI", [""]),
    "SOPInstanceUID": ("UI", [""]),
    "StudyInstanceUID": ("UI", [""]),
}


def _mutate_dicom(rng: random.Random, files: list[Path]) -> str:
    """Apply one random mutation to one (or all) slices; returns its description."""
    target = rng.choice(files)
    raw = target.read_bytes()
    kind = rng.choice(["truncate", "flip", "junk", "delete", "odd", "all_odd", "drop_preamble", "meta_ts", "pixels"])
    if kind == "truncate":
        cut = rng.randrange(0, len(raw))
        target.write_bytes(raw[:cut])
        return f"{kind} {target.name} at {cut}"
    if kind == "flip":
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(data))
        return f"{kind} {target.name}"
    if kind == "junk":
        target.write_bytes(raw + bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
        return f"{kind} {target.name}"
    if kind == "drop_preamble":
        for p in files:
            p.write_bytes(p.read_bytes()[132:])
        return kind
    if kind == "meta_ts":
        ts = rng.choice([b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.2\x00", b"1.2.840.10008.1.2\x00\x00\x00"])
        target.write_bytes(raw.replace(b"1.2.840.10008.1.2.1\x00", ts.ljust(20, b"\x00")[:20], 1))
        return f"{kind} {ts!r}"
    if kind == "pixels":
        dtype = rng.choice([np.uint8, np.float32, np.int32])

        def change(ds):
            ds.PixelData = np.zeros((64, 64), dtype).tobytes()

        edit(target, change)
        return f"{kind} {np.dtype(dtype).name}"
    keyword = rng.choice(list(TAGS))
    vr, values = TAGS[keyword]
    value = rng.choice(values)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if kind == "delete":
        edit(target, lambda ds: ds.pop(tag, None))
        return f"{kind} {keyword}"
    for p in files if kind == "all_odd" else [target]:
        edit(p, set_raw(tag, vr, value))
    return f"{kind} {keyword}={value!r}"


def _mutate_nifti(rng: random.Random, path: Path) -> Path:
    kind = rng.choice(["truncate", "flip", "shape", "dtype", "affine", "scale"])
    hu = phantom_hu(SHAPE, seed=rng.randrange(100))
    if kind == "shape":
        shape = rng.choice([(64, 64, 0), (64, 64), (64, 64, 2, 2), (0, 64, 4), (64, 64, 1, 1), (32, 64, 3), (64, 64, 1)])
        nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), path)
    elif kind == "dtype":
        dtype = rng.choice([np.uint8, np.int8, np.float64, np.complex64, np.uint16, np.float32])
        data = hu.astype(dtype) if dtype is not np.float32 else np.where(hu > 500, np.nan, hu).astype(dtype)
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    elif kind == "affine":
        affine = rng.choice([np.zeros((4, 4)), np.diag([1.0, 1.0, 0.0, 1.0]), np.full((4, 4), np.nan), np.eye(4) * 1e-9])
        img = nib.Nifti1Image(hu.astype(np.int16), None)
        img.header.set_sform(affine, code=rng.choice([0, 1]))
        img.header["qform_code"] = 0
        nib.save(img, path)
    else:
        write_test_nifti(path, hu)
        raw = bytearray(path.read_bytes()) if path.suffix == ".nii" else None
        if raw is None:
            return path
        if kind == "truncate":
            raw = raw[: rng.randrange(len(raw))]
        elif kind == "flip":
            for _ in range(rng.randint(1, 6)):
                raw[rng.randrange(min(len(raw), 352))] ^= 1 << rng.randrange(8)
        else:  # scale: scl_slope / scl_inter (float32 at 112 / 116)
            import struct

            raw[112:120] = struct.pack("<ff", rng.choice([1e38, -1e38, float("nan"), 0.0]), rng.choice([0.0, 3e38]))
        path.write_bytes(bytes(raw))
    return path


def _check(rc: int, text: str, inp: Path, before: dict, out: Path, what: str) -> None:
    assert rc in (0, 2), (what, rc, text[-2000:])
    assert "Traceback" not in text, (what, text[-2000:])
    assert snapshot(inp) == before, f"{what}: the input was modified"
    assert not leftovers(out), (what, leftovers(out))
    if out.exists():
        names = {p.name for p in out.iterdir()}
        for nii in [n for n in names if n.endswith(".nii.gz")]:
            case = nii[: -len(".nii.gz")]
            assert f"{case}.png" in names, (what, names)  # a denoised case has all its outputs
            nib.load(out / nii).get_fdata()  # and they are complete files
        if rc == 2 and "done: 0 of" in text:
            assert not names, (what, names)


def _corpus(tmp_path: Path, rng: random.Random, i: int) -> tuple[Path, str]:
    inp = tmp_path / f"in{i}"
    if i < N_DICOM:
        files = write_ct_series(inp / "s", phantom_hu((SHAPE[0], SHAPE[1], rng.randint(1, 5)), seed=i))
        what = _mutate_dicom(rng, files)
    else:
        inp.mkdir()
        what = "nifti " + str(_mutate_nifti(rng, inp / rng.choice(["c.nii", "c.nii.gz"])).name)
    return inp, what


def test_fuzzed_corpus_in_process(tmp_path, tiny_checkpoint, caplog, capsys):
    rng = random.Random(SEED)
    outcomes = {0: 0, 2: 0}
    for i in range(N_DICOM + N_NIFTI):
        inp, what = _corpus(tmp_path, rng, i)
        before = snapshot(inp)
        out = tmp_path / f"out{i}"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ldct_clip"), warnings.catch_warnings(record=True) as leaked:
            warnings.simplefilter("always")
            try:
                rc = denoise(inp, out, tiny_checkpoint)
            except BaseException as exc:  # a traceback: report which mutation caused it
                raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
        assert not leaked, (what, [str(w.message) for w in leaked])  # warnings are log lines, not Python warnings
        text = capsys.readouterr().err + caplog.text
        _check(rc, text, inp, before, out, what)
        outcomes[rc] += 1
        shutil.rmtree(inp)
        shutil.rmtree(out, ignore_errors=True)
    # the corpus exercises both outcomes, so a change that refuses (or accepts) everything shows
    print("fuzz outcomes (exit status: cases):", outcomes)
    assert outcomes[0] >= 20 and outcomes[2] >= 80, outcomes


def test_fuzzed_corpus_through_subprocesses(tmp_path, tiny_checkpoint):
    """A handful through the real doors: ``python -m ldct_clip denoise`` and ``python -m monai.bundle run``."""
    rng = random.Random(SEED + 1)
    for i in range(N_SUBPROCESS):
        inp, what = _corpus(tmp_path, rng, rng.choice([rng.randrange(N_DICOM), N_DICOM]))
        before = snapshot(inp)
        out = tmp_path / f"out{i}"
        if i % 2:
            r = run_inference(inp, out, "--ckpt_path", str(tiny_checkpoint), *TINY_OVERRIDES, "--roi_size", "[64,64]",
                              "--precision", "fp32")
        else:
            r = subprocess.run(
                [sys.executable, "-m", "ldct_clip", "denoise", str(inp), str(out), "--checkpoint", str(tiny_checkpoint),
                 "--roi-size", "64", "64", "-q", "--precision", "fp32"], capture_output=True, text=True, timeout=300,
            )
        _check(r.returncode, r.stdout + r.stderr, inp, before, out, what)
        shutil.rmtree(inp)
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("preamble", [True, False], ids=["part10", "no-preamble"])
@pytest.mark.parametrize("position", [0, 2, 4], ids=["first", "middle", "last"])
def test_a_series_with_a_truncated_slice_is_refused_whole(tmp_path, tiny_checkpoint, capsys, caplog, position,
                                                          preamble):
    # a slice cut short anywhere (inside the file meta, the header, or the pixel data) must not turn into a
    # missing slice: the series is refused, naming the file, with exit 2 and each reader warning at most once
    for cut in (400, 1500, -10):
        inp, out = tmp_path / f"in{cut}", tmp_path / f"out{cut}"
        files = sorted(write_ct_series(inp / "s", phantom_hu((SHAPE[0], SHAPE[1], 5), seed=position)))
        if not preamble:
            for p in files:
                p.write_bytes(p.read_bytes()[132:])
        raw = files[position].read_bytes()
        files[position].write_bytes(raw[:cut])
        before = snapshot(inp)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ldct_clip"):
            rc = denoise(inp, out, tiny_checkpoint)
        err = capsys.readouterr().err + caplog.text
        assert rc == 2, (cut, err)
        assert files[position].name in err and "Traceback" not in err, (cut, err)
        assert not (out / "s.nii.gz").exists() and not leftovers(out)
        assert snapshot(inp) == before
        lines = [line for line in err.splitlines() if "warning" in line.lower()]
        assert len(lines) == len(set(lines)), lines
