"""Low-level output helpers shared by every layer: PNG figures, CSV/markdown tables, progress bars and the
once-only reader warnings.  No CT or model knowledge lives here."""
