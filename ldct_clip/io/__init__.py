"""Reading CT cases to HU and writing results back (NIfTI, derived DICOM series)."""
