"""The paper's natural-image and sRGB tasks: reading and writing RGB images, their synthetic noise
(:mod:`~ldct_clip.rgb.noise`), the camera pipeline (:mod:`~ldct_clip.rgb.isp`) and camera noise
(:mod:`~ldct_clip.rgb.camera`) of the sRGB training data, the test sets (clean images with seeded noise, real-noise
pairs), the evaluation's scoring handler and tables, a training-config helper, and the float-image helpers the
noise modules share (:mod:`~ldct_clip.rgb.arrays`).  Their metrics are
:mod:`ldct_clip.metrics.rgb`; they run on the bundle's evaluator (:class:`~ldct_clip.engine.evaluator.CaseEvaluator`),
as the CT task does."""
