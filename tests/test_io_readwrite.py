"""ldct_clip.ct.io on real files: discovery, DICOM/NIfTI/MHA reading, derived-series and NIfTI writing, errors."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from ct_factory import DEFAULT_ORIGIN, can_encode, ct_affine, phantom_hu, write_ct_series, write_enhanced_ct
from ct_factory import write_nifti as factory_write_nifti
from pydicom.uid import UID, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless

import ldct_clip.ct.io.derived_series as series_mod
from ldct_clip.errors import InputError, LdctClipError
from ldct_clip.ct.io import (
    Case,
    CTVolume,
    find_cases,
    hu_to_int16,
    read_case,
    read_path,
    sanitize_name,
    write_derived_series,
    write_nifti,
)

SHAPE = (48, 40, 6)  # (X, Y, Z): non-square so that a transposed slice cannot pass


def _only_case(root: Path) -> Case:
    cases = find_cases(root)
    assert len(cases) == 1, cases
    return cases[0]


def _read_files(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def _no_leftovers(folder: Path) -> list[str]:
    """Hidden temporary names a writer may have left behind."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.exists() else []


# ------------------------------------------------------------------------------------------- DICOM read


def test_series_reads_hu_and_geometry(tmp_path: Path) -> None:
    hu = phantom_hu(SHAPE)
    write_ct_series(tmp_path / "series", hu, spacing=(0.7, 0.8, 2.5))
    case = _only_case(tmp_path)
    assert case.kind == "dicom" and case.name == "series" and len(case.paths) == SHAPE[2]

    vol = read_case(case)
    assert vol.hu.dtype == np.float32 and vol.hu.shape == SHAPE
    np.testing.assert_array_equal(vol.hu, hu)
    np.testing.assert_allclose(vol.affine, ct_affine((0.7, 0.8, 2.5)), atol=1e-5)
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5))
    assert vol.kind == "dicom" and vol.source == tmp_path / "series" and vol.warnings == []
    assert len(vol.dicom_headers) == SHAPE[2] and not vol.is_multiframe
    assert all("PixelData" not in ds for ds in vol.dicom_headers)
    # RAS: DICOM's +x (patient left) is RAS -x, so voxel (0,0,0) sits at (-ox, -oy, oz).
    np.testing.assert_allclose(
        vol.affine[:3, 3], [-DEFAULT_ORIGIN[0], -DEFAULT_ORIGIN[1], DEFAULT_ORIGIN[2]], atol=1e-5
    )


def test_shuffled_files_and_reversed_positions_sort_by_position(tmp_path: Path) -> None:
    hu = phantom_hu(SHAPE, seed=1)
    # Slices written with decreasing positions along the normal, then given scrambled file names.
    paths = write_ct_series(tmp_path / "s", hu, z_positions=[-2.0 * k for k in range(SHAPE[2])])
    names = [f"x{n}.dcm" for n in random.Random(3).sample(range(100), len(paths))]
    for p, n in zip(paths, names, strict=True):
        p.rename(p.parent / n)
    vol = read_path(tmp_path / "s")
    np.testing.assert_array_equal(vol.hu, hu[:, :, ::-1])
    expected = ct_affine(origin=np.add(DEFAULT_ORIGIN, (0, 0, -2.0 * (SHAPE[2] - 1))))
    np.testing.assert_allclose(vol.affine, expected, atol=1e-5)
    positions = [float(ds.ImagePositionPatient[2]) for ds in vol.dicom_headers]
    assert positions == sorted(positions)


def test_oblique_orientation_affine(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    orientation = (c, s, 0.0, 0.0, 0.0, -1.0)  # rotated coronal-ish plane
    hu = phantom_hu((32, 36, 4), seed=2)
    write_ct_series(tmp_path / "obl", hu, orientation=orientation, spacing=(0.9, 0.6, 3.0))
    vol = read_path(tmp_path / "obl")
    np.testing.assert_array_equal(vol.hu, hu)
    np.testing.assert_allclose(vol.affine, ct_affine((0.9, 0.6, 3.0), orientation=orientation), atol=1e-5)


def test_gantry_tilt_shears_the_affine(tmp_path: Path) -> None:
    hu = phantom_hu((32, 32, 4))
    paths = write_ct_series(tmp_path / "t", hu)
    for k, p in enumerate(paths):  # tilt: each slice origin also moves 0.5 mm along y (posterior)
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            float(ds.ImagePositionPatient[1]) + 0.5 * k,
            ds.ImagePositionPatient[2],
        ]
        ds.save_as(p)
    with pytest.warns(UserWarning, match="gantry tilt"):
        vol = read_path(tmp_path / "t")
    np.testing.assert_allclose(vol.affine[:3, 2], [0.0, -0.5, 2.0], atol=1e-6)  # RAS: +y LPS is -y RAS
    np.testing.assert_array_equal(vol.hu, hu)


@pytest.mark.filterwarnings("ignore:NvImgCodec")
def test_matches_monai_loadimage(tmp_path: Path) -> None:
    """The same arrays and affine as MONAI's own DICOM and NIfTI readers (the bundle mixes both)."""
    monai_transforms = pytest.importorskip("monai.transforms")
    orientation = (0.9553365, 0.2955202, 0.0, 0.0, 0.0, -1.0)
    write_ct_series(tmp_path / "s", phantom_hu(SHAPE, seed=11), orientation=orientation)
    vol = read_path(tmp_path / "s")
    ref = monai_transforms.LoadImage(reader="PydicomReader", image_only=True)(str(tmp_path / "s"))
    np.testing.assert_array_equal(np.asarray(ref), vol.hu)
    np.testing.assert_allclose(np.asarray(ref.affine), vol.affine, atol=1e-4)
    nifti = write_nifti(vol.hu, vol.affine, tmp_path / "v.nii.gz")
    ref = monai_transforms.LoadImage(image_only=True)(str(nifti))
    np.testing.assert_array_equal(np.asarray(ref), vol.hu)
    np.testing.assert_allclose(np.asarray(ref.affine), vol.affine, atol=1e-4)


def test_pydicom_ct_small_reads_as_rescaled_pixels() -> None:
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    vol = read_path(path)
    assert vol.hu.shape == (ds.Columns, ds.Rows, 1)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.hu[:, :, 0], expected.T.astype(np.float32))
    ipp = np.array(ds.ImagePositionPatient, float)
    np.testing.assert_allclose(vol.affine[:3, 3], [-ipp[0], -ipp[1], ipp[2]])
    assert vol.spacing[:2] == pytest.approx((float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])))


@pytest.mark.parametrize(
    "ts", [ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless], ids=["implicit", "rle", "jpeg2000"]
)
def test_compressed_series_decodes(tmp_path: Path, ts: str) -> None:
    if UID(ts).is_compressed and not can_encode(ts):
        pytest.skip(f"no encoder for {ts} here")
    hu = phantom_hu((32, 32, 3), seed=4)
    paths = write_ct_series(tmp_path / "c", hu, transfer_syntax=ts)
    assert pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == ts
    vol = read_path(tmp_path / "c")
    np.testing.assert_array_equal(vol.hu, hu)
    # Derived output of a compressed source is uncompressed.
    out = write_derived_series(vol.hu, vol.dicom_headers, tmp_path / "out")
    assert pydicom.dcmread(out[0]).file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_pydicom_jpeg2000_ct_reads_as_rescaled_pixels() -> None:
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("693_J2KI.dcm"))  # a real 512x512 CT slice, JPEG 2000 compressed
    ds = pydicom.dcmread(path)
    vol = read_path(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.hu[:, :, 0], expected.T.astype(np.float32))


def test_missing_codec_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ct_series(tmp_path / "c", phantom_hu((32, 32, 2)), transfer_syntax=RLELossless)

    class _NoDecoder:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-rle>=2.0"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: _NoDecoder())
    with pytest.raises(InputError, match="no installed decoder.*RLE Lossless.*pylibjpeg"):
        read_path(tmp_path / "c")


def test_missing_rescale_defaults_with_warning(tmp_path: Path) -> None:
    hu = phantom_hu((32, 32, 3))
    paths = write_ct_series(tmp_path / "s", hu, intercept=0.0, signed=True)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.save_as(p)
    with pytest.warns(UserWarning, match="RescaleSlope/RescaleIntercept"):
        vol = read_path(tmp_path / "s")
    np.testing.assert_array_equal(vol.hu, hu)
    assert any("slope 1" in w for w in vol.warnings)


# ----------------------------------------------------------------------------------------- enhanced CT


def test_enhanced_multiframe_functional_groups(tmp_path: Path) -> None:
    hu = phantom_hu(SHAPE, seed=5)
    intercepts = [-1024.0, -1000.0, -1024.0, -990.0, -1024.0, -1010.0]  # per-frame rescale
    frame_order = [3, 0, 5, 1, 4, 2]  # frames stored out of position order
    path = write_enhanced_ct(tmp_path / "enh" / "ct.dcm", hu, intercept=intercepts, frame_order=frame_order)
    case = _only_case(tmp_path)
    assert case.kind == "dicom" and case.paths == [path]

    vol = read_case(case)
    np.testing.assert_array_equal(vol.hu, hu)
    np.testing.assert_allclose(vol.affine, ct_affine(), atol=1e-5)
    assert vol.is_multiframe and vol.source == path
    assert all(h is vol.dicom_headers[0] for h in vol.dicom_headers)
    per_frame = vol.dicom_headers[0].PerFrameFunctionalGroupsSequence
    z = [float(item.PlanePositionSequence[0].ImagePositionPatient[2]) for item in per_frame]
    assert z == sorted(z)  # item k describes hu[:, :, k]

    out = write_derived_series(vol.hu, vol.dicom_headers, tmp_path / "out")
    assert [p.name for p in out] == ["0001.dcm"]
    ds = pydicom.dcmread(out[0])
    assert ds.SOPClassUID == pydicom.uid.EnhancedCTImageStorage and int(ds.NumberOfFrames) == SHAPE[2]
    assert ds.ImageType[0] == "DERIVED"
    assert ds.SharedFunctionalGroupsSequence[0].CTImageFrameTypeSequence[0].FrameType[0] == "DERIVED"
    src_ref = ds.SharedFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert src_ref.ReferencedSOPInstanceUID == vol.dicom_headers[0].SOPInstanceUID
    again = read_path(out[0])
    np.testing.assert_array_equal(again.hu, hu)
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-6)


def test_pydicom_data_enhanced_ct() -> None:
    data = pytest.importorskip("pydicom.data")
    try:
        path = Path(data.get_testdata_file("eCT_Supplemental.dcm", download=False) or "")
    except Exception:  # pragma: no cover - depends on pydicom-data being installed
        path = Path("")
    if not path.is_file():
        pytest.skip("pydicom-data (eCT_Supplemental.dcm) not installed")
    ds = pydicom.dcmread(path)
    vol = read_path(path)
    assert vol.hu.shape == (512, 512, 2) and vol.is_multiframe
    iop = np.array(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])  # (0, 0, -1) here: rows run right-to-left
    along = [
        np.array(f.PlanePositionSequence[0].ImagePositionPatient, float) @ normal
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    order = np.argsort(along)
    expected = ds.pixel_array[order].astype(np.float64) - 1024.0  # shared transform: slope 1, intercept -1024
    np.testing.assert_array_equal(vol.hu, expected.transpose(2, 1, 0).astype(np.float32))
    assert vol.spacing == pytest.approx((0.388672, 0.388672, 10.0))


# ----------------------------------------------------------------------------------- derived DICOM write


@pytest.mark.parametrize(
    ("slope", "intercept", "signed", "integer", "tol"),
    [
        (1.0, -1024.0, False, True, 0.0),
        (1.0, 0.0, True, True, 0.0),
        (1.0, -1024.0, None, False, 0.5),
        (0.5, -1024.0, None, False, 0.25),
    ],
    ids=["uint16", "int16", "float-hu", "slope0.5"],
)
def test_derived_series_round_trip(
    tmp_path: Path, slope: float, intercept: float, signed: bool | None, integer: bool, tol: float
) -> None:
    hu = phantom_hu(SHAPE, seed=7, integer=True)
    write_ct_series(
        tmp_path / "in",
        hu,
        slope=slope,
        intercept=intercept,
        signed=signed,
        series_number=3,
        series_description="Low dose",
    )
    vol = read_path(tmp_path / "in")
    result = vol.hu
    if not integer:  # sub-HU values, kept >= -1024 HU, the lowest value a uint16 / -1024 source can store
        result = np.maximum(vol.hu + np.random.default_rng(0).uniform(-0.5, 0.5, vol.hu.shape), -1024).astype(
            np.float32
        )

    out = write_derived_series(result, vol.dicom_headers, tmp_path / "out" / "denoised")
    assert [p.name for p in out] == [f"{k + 1:04d}.dcm" for k in range(SHAPE[2])]
    assert _no_leftovers(tmp_path / "out") == []
    again = read_path(tmp_path / "out" / "denoised")
    assert np.abs(again.hu - result).max() <= tol + 1e-4
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-6)

    src, new = vol.dicom_headers, _read_files(tmp_path / "out" / "denoised")
    assert len({ds.SeriesInstanceUID for ds in new}) == 1
    assert new[0].SeriesInstanceUID != src[0].SeriesInstanceUID
    assert {ds.SOPInstanceUID for ds in new}.isdisjoint({ds.SOPInstanceUID for ds in src})
    assert len({ds.SOPInstanceUID for ds in new}) == len(new)
    for s, d in zip(src, new, strict=True):
        assert (
            d.StudyInstanceUID == s.StudyInstanceUID and d.PatientID == s.PatientID and d.PatientName == s.PatientName
        )
        assert d.FrameOfReferenceUID == s.FrameOfReferenceUID
        assert list(d.ImagePositionPatient) == list(s.ImagePositionPatient)
        assert list(d.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert d.SeriesDescription == "Low dose [ldct-clip]" and int(d.SeriesNumber) == 1003
        assert d.DerivationDescription == "ldct-clip denoised"
        assert d.SourceImageSequence[0].ReferencedSOPInstanceUID == s.SOPInstanceUID
        assert d.SourceImageSequence[0].ReferencedSOPClassUID == s.SOPClassUID
        for kw in (
            "Rows",
            "Columns",
            "BitsAllocated",
            "BitsStored",
            "PixelRepresentation",
            "RescaleSlope",
            "RescaleIntercept",
        ):
            assert d[kw].value == s[kw].value, kw
        assert d.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.file_meta.MediaStorageSOPClassUID == d.SOPClassUID == pydicom.uid.CTImageStorage


def test_derived_series_uids_are_the_same_on_a_rerun(tmp_path: Path) -> None:
    # a rerun (e.g. after a PACS store was cut short) must name the same series and instances, so the PACS
    # sees them as already stored instead of getting a duplicate series; another derivation is another series
    write_ct_series(tmp_path / "in", phantom_hu((32, 32, 3)), series_number=3)
    vol = read_path(tmp_path / "in")

    def uids(folder: str, **kwargs) -> tuple[str, list[str]]:
        write_derived_series(vol.hu, vol.dicom_headers, tmp_path / folder, **kwargs)
        new = _read_files(tmp_path / folder)
        return str(new[0].SeriesInstanceUID), [str(ds.SOPInstanceUID) for ds in new]

    first, again = uids("a"), uids("b")
    assert first == again and len(set(first[1])) == 3
    assert uids("c", derivation="another method")[0] != first[0]
    assert uids("d", series_description_suffix=" [other]")[0] != first[0]
    assert set(uids("e", series_number=7)[1]).isdisjoint(first[1])
    assert all(pydicom.uid.UID(u).is_valid for u in [first[0], *first[1]])


def test_derived_series_clips_to_stored_range(tmp_path: Path) -> None:
    hu = phantom_hu((32, 32, 2))
    write_ct_series(tmp_path / "in", hu, signed=False)  # uint16 with intercept -1024: HU below -1024 cannot be stored
    vol = read_path(tmp_path / "in")
    result = vol.hu.copy()
    result[0, 0, 0], result[1, 0, 0] = -3000.0, 70000.0
    write_derived_series(result, vol.dicom_headers, tmp_path / "out")
    again = read_path(tmp_path / "out")
    assert again.hu[0, 0, 0] == -1024.0 and again.hu[1, 0, 0] == 65535 - 1024


def test_derived_series_validates_shapes(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", phantom_hu((32, 32, 3)))
    vol = read_path(tmp_path / "in")
    with pytest.raises(InputError, match="one source header per slice"):
        write_derived_series(vol.hu[:, :, :2], vol.dicom_headers, tmp_path / "a")
    with pytest.raises(InputError, match="rows x .* columns"):
        write_derived_series(vol.hu[:16], vol.dicom_headers, tmp_path / "b")
    bad = vol.hu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="1 NaN/inf"):
        write_derived_series(bad, vol.dicom_headers, tmp_path / "c")


def _dciodvfy_errors(path: Path) -> list[str]:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed (apt-get install dicom3tools)")
def test_derived_output_passes_dciodvfy(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    hu = phantom_hu((32, 32, 2))
    write_ct_series(tmp_path / "series", hu)
    write_enhanced_ct(tmp_path / "enhanced" / "e.dcm", hu, intercept=[-1024.0, -1000.0])
    sources = {
        "series": tmp_path / "series",
        "enhanced": tmp_path / "enhanced" / "e.dcm",
        "ct_small": Path(get_testdata_file("CT_small.dcm")),
    }
    for name, source in sources.items():
        vol = read_path(source)
        for out in write_derived_series(vol.hu - 5.0, vol.dicom_headers, tmp_path / "out" / name):
            assert _dciodvfy_errors(out) == [], (name, out)
    # The synthetic sources are clean too, so any error above comes from the writer.
    assert _dciodvfy_errors(tmp_path / "series" / "IM0001.dcm") == []
    assert _dciodvfy_errors(tmp_path / "enhanced" / "e.dcm") == []


# ------------------------------------------------------------------------------------ NIfTI / MHA / NRRD


@pytest.mark.filterwarnings("ignore:NvImgCodec")
def test_nifti_voxels_are_monais_and_the_affine_is_the_stored_sform(tmp_path: Path) -> None:
    """NIfTI voxels come from MONAI's NibabelReader: scaled float data and a sheared affine read as LoadImage reads
    them.  Where MONAI's header correction swaps an sform that disagrees with pixdim for the qform, the reader
    keeps the sform, which NIfTI makes authoritative when sform_code > 0 (the reason given in image_files)."""
    monai_transforms = pytest.importorskip("monai.transforms")
    sheared = ct_affine((0.7, 0.8, 2.5))
    sheared[1, 2] = 0.4  # gantry tilt
    img = nib.Nifti1Image(phantom_hu(SHAPE, seed=12).astype(np.int16), sheared)
    img.header.set_slope_inter(0.5, -3.0)  # stored values are scaled: MONAI applies scl_slope/scl_inter
    nib.save(img, tmp_path / "scaled.nii.gz")
    vol = read_path(tmp_path / "scaled.nii.gz")
    ref = monai_transforms.LoadImage(reader="NibabelReader", image_only=True, dtype=None)(str(tmp_path / "scaled.nii.gz"))
    np.testing.assert_array_equal(vol.hu, np.asarray(ref, dtype=np.float32))
    np.testing.assert_array_equal(vol.affine, np.asarray(ref.affine, dtype=np.float64))
    np.testing.assert_array_equal(vol.hu, phantom_hu(SHAPE, seed=12).astype(np.int16) * np.float32(0.5) - 3)

    img = nib.Nifti1Image(phantom_hu(SHAPE, seed=13).astype(np.int16), None)
    img.header.set_qform(np.eye(4), code=1)  # pixdim 1 mm, as the qform says
    img.header.set_sform(ct_affine((0.7, 0.8, 2.5)), code=1)  # the scanner's geometry
    nib.save(img, tmp_path / "sform.nii.gz")
    vol = read_path(tmp_path / "sform.nii.gz")
    np.testing.assert_allclose(vol.affine, ct_affine((0.7, 0.8, 2.5)), atol=1e-5)  # stored as float32
    ref = monai_transforms.LoadImage(reader="NibabelReader", image_only=True)(str(tmp_path / "sform.nii.gz"))
    np.testing.assert_array_equal(vol.hu, np.asarray(ref))
    assert not np.allclose(np.asarray(ref.affine), vol.affine)  # MONAI took the qform


def test_nifti_round_trip_keeps_affine_and_shape(tmp_path: Path) -> None:
    hu = phantom_hu(SHAPE, seed=8, integer=False)
    affine = ct_affine((0.7, 0.8, 2.5))
    out = write_nifti(hu, affine, tmp_path / "out" / "vol.nii.gz")
    img = nib.load(str(out))
    assert img.shape == SHAPE and img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(img.get_qform(), affine, atol=1e-5)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert img.header.get_xyzt_units()[0] == "mm"
    assert _no_leftovers(tmp_path / "out") == []

    vol = read_case(_only_case(out))
    assert vol.kind == "nifti" and vol.name == "vol" and vol.source == out
    np.testing.assert_array_equal(vol.hu, np.rint(hu))
    np.testing.assert_allclose(vol.affine, affine)


def test_hu_to_int16_rounds_then_clips() -> None:
    got = hu_to_int16(np.array([-0.7, 0.7, 1.5, -1024.4, 40000.0, -40000.0]))
    assert got.dtype == np.int16
    assert got.tolist() == [-1, 1, 2, -1024, 32767, -32768]
    with pytest.raises(InputError, match="NaN"):
        hu_to_int16(np.array([np.nan]))


def test_nifti_2d_is_promoted_and_4d_or_nan_rejected(tmp_path: Path) -> None:
    vol = read_path(factory_write_nifti(tmp_path / "2d.nii", np.zeros((20, 24))))
    assert vol.hu.shape == (20, 24, 1)

    factory_write_nifti(tmp_path / "4d" / "v.nii.gz", np.zeros((8, 8, 4, 3)))
    with pytest.raises(InputError, match=r"shape \(8, 8, 4, 3\).*3D"):
        read_path(tmp_path / "4d")
    # A trailing singleton time axis is just a 3D volume.
    assert read_path(factory_write_nifti(tmp_path / "t1.nii.gz", np.zeros((8, 8, 4, 1)))).hu.shape == (8, 8, 4)

    data = np.zeros((8, 8, 4), np.float32)
    data[0, 0, 0], data[1, 2, 3] = np.nan, np.inf
    factory_write_nifti(tmp_path / "nan" / "v.nii.gz", data, dtype=np.float32)
    with pytest.raises(InputError, match="2 voxel"):
        read_path(tmp_path / "nan")


def test_mha_and_nrrd_via_simpleitk(tmp_path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    hu = phantom_hu((20, 24, 5), seed=9)
    img = sitk.GetImageFromArray(hu.transpose(2, 1, 0).astype(np.int16))  # ITK arrays are (Z, Y, X)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin(DEFAULT_ORIGIN)  # ITK physical space is LPS, like DICOM
    for suffix in (".mha", ".nrrd"):
        path = tmp_path / f"vol{suffix}"
        sitk.WriteImage(img, str(path))
        vol = read_case(_only_case(path))
        assert vol.kind == "image" and vol.name == "vol"
        np.testing.assert_array_equal(vol.hu, hu)
        np.testing.assert_allclose(vol.affine, ct_affine((0.7, 0.8, 2.5)), atol=1e-6)


# ------------------------------------------------------------------------------------------- discovery


def test_mixed_series_in_one_folder_become_two_cases(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    study = pydicom.uid.generate_uid()
    write_ct_series(
        folder,
        phantom_hu((32, 32, 3)),
        series_description="LDCT/quarter dose",
        series_number=2,
        study_uid=study,
        prefix="A",
    )
    write_ct_series(
        folder, phantom_hu((32, 32, 4), seed=3), series_description="NDCT", series_number=3, study_uid=study, prefix="B"
    )
    (folder / "notes.txt").write_text("not dicom")
    (folder / "README").write_bytes(b"\x00\x01junk" * 10)
    cases = find_cases(folder)
    assert [c.name for c in cases] == ["study_2_LDCT_quarter_dose", "study_3_NDCT"]
    assert [len(c.paths) for c in cases] == [3, 4]
    assert [read_case(c).hu.shape[2] for c in cases] == [3, 4]
    with pytest.raises(InputError, match="holds 2 cases"):
        read_path(folder)


def test_discovery_recurses_names_uniquely_and_sanitizes(tmp_path: Path) -> None:
    hu = phantom_hu((32, 32, 2))
    write_ct_series(tmp_path / "a" / "CT 1", hu)
    write_ct_series(tmp_path / "b" / "CT 1", hu)
    factory_write_nifti(tmp_path / "c" / "ct 1.nii.gz", hu)
    write_enhanced_ct(tmp_path / "d" / "multi.dcm", hu)
    (tmp_path / ".hidden").mkdir()
    write_ct_series(tmp_path / ".hidden", hu)  # hidden folders (e.g. writer temporaries) are skipped
    cases = find_cases(tmp_path)
    assert [c.name for c in cases] == ["CT_1", "CT_1_2", "ct_1_3", "multi"]  # unique even case-insensitively
    assert len({c.name.lower() for c in cases}) == len(cases)
    assert [c.kind for c in cases] == ["dicom", "dicom", "nifti", "dicom"]
    assert sanitize_name("../..//x y:z*") == "x_y_z" and sanitize_name("...") == "case"


def test_empty_or_unusable_input_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No DICOM series or NIfTI"):
        find_cases(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="No DICOM series"):
        find_cases(tmp_path / "junk")
    with pytest.raises(InputError, match="does not exist"):
        find_cases(tmp_path / "nope")
    with pytest.raises(InputError, match="neither a DICOM image"):
        find_cases(tmp_path / "junk" / "a.txt")
    assert issubclass(InputError, LdctClipError)


# ---------------------------------------------------------------------------------------- input errors


def test_truncated_dicom_names_the_file(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "s", phantom_hu((32, 32, 3)))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 700])  # cut inside the pixel data
    case = _only_case(tmp_path / "s")
    with pytest.raises(InputError, match=paths[1].name):
        read_case(case)


def test_corrupt_dicom_header_names_the_file(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "s", phantom_hu((32, 32, 2)))
    paths[0].write_bytes(paths[0].read_bytes()[:200])  # DICM magic, then the header breaks off
    with pytest.raises(InputError, match=paths[0].name):
        read_path(tmp_path / "s")


def test_non_ct_modality_is_rejected(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "mr", phantom_hu((32, 32, 2)), modality="MR")
    with pytest.raises(InputError, match="Modality is 'MR'"):
        read_path(tmp_path / "mr")


def test_missing_slice_warns_and_still_reads(tmp_path: Path) -> None:
    hu = phantom_hu((32, 32, 6))
    paths = write_ct_series(tmp_path / "s", hu)
    paths[3].unlink()
    with pytest.warns(UserWarning, match="not uniform.*1 slice"):
        vol = read_path(tmp_path / "s")
    assert vol.hu.shape == (32, 32, 5)
    np.testing.assert_array_equal(vol.hu, np.delete(hu, 3, axis=2))
    assert any("missing" in w for w in vol.warnings)
    assert vol.spacing[2] == pytest.approx(2.0)  # median step, not the gap


def test_duplicate_positions_are_rejected(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "s", phantom_hu((32, 32, 3)), z_positions=[0.0, 2.0, 2.0])
    with pytest.raises(InputError, match="same position"):
        read_path(tmp_path / "s")


@pytest.mark.parametrize("what", ["size", "orientation"])
def test_inconsistent_slices_in_one_series_fail(tmp_path: Path, what: str) -> None:
    uid, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    write_ct_series(tmp_path / "s", phantom_hu((32, 32, 2)), series_uid=uid, study_uid=study, prefix="A")
    if what == "size":
        write_ct_series(
            tmp_path / "s", phantom_hu((32, 40, 1)), series_uid=uid, study_uid=study, prefix="B", z_positions=[10.0]
        )
        match = "Inconsistent image size"
    else:
        write_ct_series(
            tmp_path / "s",
            phantom_hu((32, 32, 1)),
            series_uid=uid,
            study_uid=study,
            prefix="B",
            orientation=(1, 0, 0, 0, 0, -1),
        )
        match = "Inconsistent ImageOrientationPatient"
    with pytest.raises(InputError, match=match):
        read_path(tmp_path / "s")


# ---------------------------------------------------------------------------------------- output errors


def test_output_under_a_regular_file_is_an_input_error(tmp_path: Path) -> None:
    # chmod does not stop root, so make folder creation impossible instead: a parent that is a file.
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    write_ct_series(tmp_path / "in", phantom_hu((32, 32, 2)))
    vol = read_path(tmp_path / "in")
    with pytest.raises(InputError, match=str(blocker)):
        write_nifti(vol.hu, vol.affine, blocker / "sub" / "out.nii.gz")
    with pytest.raises(InputError, match=str(blocker)):
        write_derived_series(vol.hu, vol.dicom_headers, blocker / "sub" / "out")
    with pytest.raises(InputError, match="not a folder"):
        write_derived_series(vol.hu, vol.dicom_headers, blocker)


def test_writers_refuse_to_write_into_inputs(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", phantom_hu((32, 32, 2)))
    vol = read_path(tmp_path / "in")
    before = {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    for target in (tmp_path / "in", tmp_path / "in" / "denoised"):
        with pytest.raises(InputError, match="Refusing"):
            write_derived_series(vol.hu, vol.dicom_headers, target, overwrite=True)
    with pytest.raises(InputError, match="Refusing"):
        write_nifti(vol.hu, vol.affine, tmp_path / "in" / "x.nii.gz", inputs=[vol.source])
    # Replacing a folder that contains the input would delete it.
    with pytest.raises(InputError, match="contains the input"):
        write_derived_series(vol.hu, vol.dicom_headers, tmp_path, overwrite=True)
    assert {p: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before

    nifti = factory_write_nifti(tmp_path / "n.nii.gz", phantom_hu((8, 8, 2)))
    nvol = read_path(nifti)
    with pytest.raises(InputError, match="is the input"):
        write_nifti(nvol.hu, nvol.affine, nifti, inputs=[nvol.source])


def test_non_empty_output_needs_overwrite(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", phantom_hu((32, 32, 2)))
    vol = read_path(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.dcm").write_text("old")
    with pytest.raises(InputError, match="not empty"):
        write_derived_series(vol.hu, vol.dicom_headers, out)
    written = write_derived_series(vol.hu, vol.dicom_headers, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in written]
    assert _no_leftovers(tmp_path) == []
    (tmp_path / "empty").mkdir()
    assert len(write_derived_series(vol.hu, vol.dicom_headers, tmp_path / "empty")) == 2


def test_failed_series_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ct_series(tmp_path / "in", phantom_hu((32, 32, 5)))
    vol = read_path(tmp_path / "in")
    real_save, calls = series_mod._save, []

    def flaky_save(ds: pydicom.Dataset, path: Path) -> None:
        calls.append(path)
        if len(calls) == 3:
            path.write_bytes(b"partial")  # a half-written file, then the disk fills up
            raise OSError(28, "No space left on device", str(path))
        real_save(ds, path)

    monkeypatch.setattr(series_mod, "_save", flaky_save)
    out_root = tmp_path / "results"
    with pytest.raises(InputError, match="No space left"):
        write_derived_series(vol.hu, vol.dicom_headers, out_root / "denoised")
    assert len(calls) == 3
    assert not (out_root / "denoised").exists()
    assert list(out_root.iterdir()) == []  # no temporary folder either

    # An existing result survives a failed overwrite untouched.
    monkeypatch.setattr(series_mod, "_save", real_save)
    first = write_derived_series(vol.hu, vol.dicom_headers, out_root / "denoised")
    snapshot = {p.name: p.read_bytes() for p in first}
    calls.clear()
    monkeypatch.setattr(series_mod, "_save", flaky_save)
    with pytest.raises(InputError):
        write_derived_series(vol.hu + 1, vol.dicom_headers, out_root / "denoised", overwrite=True)
    assert {p.name: p.read_bytes() for p in (out_root / "denoised").iterdir()} == snapshot
    assert _no_leftovers(out_root) == []


def test_failed_nifti_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(img: object, filename: str) -> None:
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(InputError, match="No space left"):
        write_nifti(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "out" / "v.nii.gz")
    assert list((tmp_path / "out").iterdir()) == []


def test_ctvolume_checks_its_fields(tmp_path: Path) -> None:
    vol = CTVolume(
        hu=np.zeros((4, 5, 6), np.float32),
        affine=np.diag([-0.5, -0.6, 2.0, 1.0]),
        name="x",
        source=tmp_path,
        kind="nifti",
    )
    assert vol.spacing == pytest.approx((0.5, 0.6, 2.0)) and vol.shape == (4, 5, 6) and not vol.is_multiframe
    with pytest.raises(ValueError, match="3D"):
        CTVolume(hu=np.zeros((4, 5)), affine=np.eye(4), name="x", source=tmp_path, kind="nifti")
    with pytest.raises(ValueError, match="kind"):
        CTVolume(hu=np.zeros((4, 5, 1)), affine=np.eye(4), name="x", source=tmp_path, kind="png")


def test_case_source_is_series_folder(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "s", phantom_hu((32, 32, 2)))
    assert _only_case(tmp_path).source == tmp_path / "s"
    assert os.path.isdir(_only_case(tmp_path).source)
