"""Make the built-in low-dose CT example offline: a procedural abdomen phantom with simulated quarter-dose noise.

Writes ``OUT/ldct_example/`` (a CT DICOM series, 256x256x8, RescaleIntercept -1024) and
``OUT/../reference/ldct_example_ndct.nii.gz`` (the normal-dose reference, kept out of the input folder so the
denoiser does not pick it up as a case).

    python scripts/make_example.py example_output/input
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ct_factory import ct_affine, write_ct_series  # noqa: E402  (the test suite's CT writer: a real DICOM series)
from ldct_clip.simulation.phantom import make_low_dose_example

SHAPE = (256, 256, 8)
SPACING = (1.5, 1.5, 2.5)  # mm: a 384 mm field of view, like an abdominal scan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the example input series")
    parser.add_argument("--dose", type=float, default=0.25, help="simulated dose fraction (default 0.25)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    series_dir = args.out / "ldct_example"
    if series_dir.exists() and any(series_dir.iterdir()):
        print(f"example already there: {series_dir}")
        return 0
    print(f"simulating a {args.dose:.0%} dose scan of a {SHAPE} phantom (projection domain) ...", file=sys.stderr)
    ldct, ndct = make_low_dose_example(SHAPE, dose_fraction=args.dose, seed=args.seed, pixel_size_mm=SPACING[0], progress=True)
    write_ct_series(
        series_dir, np.rint(ldct), spacing=SPACING, series_description=f"simulated {args.dose:.0%} dose",
        patient_name="Example^Phantom", patient_id="LDCTCLIP-EXAMPLE",
    )
    reference = args.out.parent / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.rint(ndct).astype(np.int16), ct_affine(SPACING)), reference / "ldct_example_ndct.nii.gz")
    print(f"wrote {series_dir} ({SHAPE[2]} slices) and the normal-dose reference in {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
