"""CT data: reading and writing cases (:mod:`ldct_clip.ct.io`), the HU conventions (:mod:`ldct_clip.ct.hu`), the
bundle's datasets (cases to denoise, LDCT/NDCT pairs, training slices) and where each case's outputs go."""
