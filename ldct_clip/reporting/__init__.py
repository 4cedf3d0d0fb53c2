"""Low-level output helpers shared by every layer: PNG figures (slices at a display window, line plots),
CSV/markdown tables, progress bars and the once-only reader warnings.  No model, metric or case logic lives here."""
