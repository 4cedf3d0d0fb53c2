"""CT data: reading and writing cases (:mod:`ldct_clip.ct.io`, and the MONAI ``ImageReader`` over it), the HU
conventions (:mod:`ldct_clip.ct.hu`), the bundle's datasets (cases to denoise, LDCT/NDCT pairs, training slices),
pairing low-dose with normal-dose cases, and where each case's outputs go."""
