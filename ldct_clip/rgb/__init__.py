"""The paper's natural-image and sRGB tasks: images on disk, camera noise, test sets, scoring; they run on the
bundle's evaluator (:class:`~ldct_clip.engine.evaluator.CaseEvaluator`), as the CT task does."""
