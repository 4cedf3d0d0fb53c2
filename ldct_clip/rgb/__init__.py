"""The paper's natural-image and sRGB tasks: reading and writing RGB images, their synthetic noise
(:mod:`~ldct_clip.rgb.noise`), the camera pipeline (:mod:`~ldct_clip.rgb.isp`) and camera noise
(:mod:`~ldct_clip.rgb.camera`) of the sRGB training data, the test sets (clean images with seeded noise, real-noise
pairs), the evaluation's scoring handler and tables, and a training-config helper.  Their metrics are
:mod:`ldct_clip.metrics.rgb`; they run on the bundle's evaluator (:class:`~ldct_clip.engine.evaluator.CaseEvaluator`),
as the CT task does."""
