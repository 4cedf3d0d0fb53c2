"""Writing a denoised case, as postprocessing transforms: NIfTI, derived DICOM series, PNG preview, then commit.

Each writer puts its file in the case's staging folder (:meth:`~ldct_clip.ct.outputs.CaseOutputs.stage`);
:class:`CommitCaseOutputsd`, last in the chain, swaps them all in together. A case that fails part-way leaves
its earlier outputs as they were (the evaluator discards what was staged).

Every writer reads ``d[key]``: the denoised volume ``(1, X, Y, Z)`` in HU, on the grid of ``d[meta_key]`` (the
loaded input, a ``MetaTensor`` whose meta :class:`~ldct_clip.ct.io.monai_reader.CTSeriesReader` filled) and the case
name ``d[name_key]``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ldct_clip.ct.outputs import CaseOutputs
from ldct_clip.ct.io.derived_series import write_derived_series
from ldct_clip.ct.io.dicom import read_dicom_headers
from ldct_clip.ct.io.monai_reader import affine_from_meta, case_from_meta, volume_array
from ldct_clip.ct.io.nifti_writer import write_nifti
from ldct_clip.reporting.figures import SOFT_TISSUE, save_panels
from ldct_clip.reporting.warnings_log import source_notes_silenced

__all__ = ["CASE_WRITERS", "CommitCaseOutputsd", "SaveDerivedSeriesd", "SaveNiftid", "SavePreviewd"]


class _CaseWriter(MapTransform):
    def __init__(self, keys: KeysCollection, outputs: CaseOutputs, meta_key: str = "image", name_key: str = "name",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.outputs = outputs
        self.meta_key = meta_key
        self.name_key = name_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        meta = d[self.meta_key].meta
        for key in self.key_iterator(d):
            self.write(volume_array(d[key]), meta, str(d[self.name_key]), d)
        return d

    def write(self, hu: np.ndarray, meta: dict[str, Any], name: str, d: dict[Hashable, Any]) -> None:
        raise NotImplementedError


class SaveNiftid(_CaseWriter):
    """Stage ``<name>.nii.gz``: int16 HU on the input's affine (RAS+ qform and sform)."""

    def write(self, hu: np.ndarray, meta: dict[str, Any], name: str, d: dict[Hashable, Any]) -> None:
        write_nifti(hu, affine_from_meta(meta), self.outputs.stage(name, "nifti"), inputs=[case_from_meta(meta).source])


class SaveDerivedSeriesd(_CaseWriter):
    """Stage ``<name>_dicom/``, a derived DICOM series of a DICOM input (when the outputs include DICOM).

    The source headers are read again from the input files, in the volume's slice order
    (:func:`~ldct_clip.ct.io.dicom.read_dicom_headers`); patient, study, frame of reference and geometry are
    kept, the series is new (see :func:`~ldct_clip.ct.io.derived_series.write_derived_series`).

    Args:
        series_description_suffix: appended to the source's SeriesDescription.
        series_number: of the derived series (default: the source's + 1000).
        derivation: its DerivationDescription, which names the weights (``inference.json``:
            :func:`ldct_clip.weights.derivation`); the derived UIDs are a hash of it and the source UIDs.
    """

    def __init__(self, keys: KeysCollection, outputs: CaseOutputs, series_description_suffix: str = " [ldct-clip]",
                 series_number: int | None = None, derivation: str = "ldct-clip denoised", meta_key: str = "image",
                 name_key: str = "name", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, outputs, meta_key, name_key, allow_missing_keys)
        self.series_description_suffix = series_description_suffix
        self.series_number = series_number
        self.derivation = derivation

    def write(self, hu: np.ndarray, meta: dict[str, Any], name: str, d: dict[Hashable, Any]) -> None:
        case = case_from_meta(meta)
        if "dicom" not in self.outputs.wanted(case.kind):
            return
        with source_notes_silenced():  # pydicom's complaints about the source values: the reader logged them
            headers = read_dicom_headers(case)
            write_derived_series(
                hu, headers, self.outputs.stage(name, "dicom"), series_description_suffix=self.series_description_suffix,
                series_number=self.series_number, derivation=self.derivation, inputs=[case.source],
            )


class SavePreviewd(_CaseWriter):
    """Stage ``<name>.png`` (when the outputs include it): the middle slice of the input ``d[reference_key]`` (HU),
    the denoised slice and their difference, side by side."""

    def __init__(self, keys: KeysCollection, outputs: CaseOutputs, reference_key: str = "image_hu",
                 meta_key: str = "image", name_key: str = "name", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, outputs, meta_key, name_key, allow_missing_keys)
        self.reference_key = reference_key

    def write(self, hu: np.ndarray, meta: dict[str, Any], name: str, d: dict[Hashable, Any]) -> None:
        if not self.outputs.write_png:
            return
        k = hu.shape[-1] // 2
        before, after = volume_array(d[self.reference_key])[..., k], hu[..., k]
        save_panels(
            self.outputs.stage(name, "png"),
            [("input", before, SOFT_TISSUE), ("denoised", after, SOFT_TISSUE), ("input - denoised", before - after, (0.0, 200.0))],
        )


class CommitCaseOutputsd(MapTransform):
    """Swap in everything the writers staged for the case, all together (:meth:`CaseOutputs.commit`), and record
    the final paths as ``d[output_key]`` (a list of strings)."""

    def __init__(self, outputs: CaseOutputs, meta_key: str = "image", name_key: str = "name",
                 output_key: str = "outputs") -> None:
        super().__init__([meta_key])
        self.outputs = outputs
        self.meta_key = meta_key
        self.name_key = name_key
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        case = case_from_meta(d[self.meta_key].meta)
        d[self.output_key] = [str(p) for p in self.outputs.commit(str(d[self.name_key]), [case.source])]
        return d


#: The postprocessing transforms that write a case's files: a door that answers with the volume itself (MONAI
#: Label's REST answer) filters these out of ``postprocessing`` and keeps the rest.
CASE_WRITERS = (SaveNiftid, SaveDerivedSeriesd, SavePreviewd, CommitCaseOutputsd)
