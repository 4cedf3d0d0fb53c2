"""Evaluation of denoised CT against references: scoring LDCT/NDCT pairs, the classical baselines (tuned NLM,
correlated-noise BM3D with its noise PSD), the task-based image-quality study, and their reports (tables, PNGs).

The model itself reaches this package only as a callable or as the bundle's outputs; the doors
(:mod:`ldct_clip.workflows`, :mod:`ldct_clip.cli`) connect the two.
"""
