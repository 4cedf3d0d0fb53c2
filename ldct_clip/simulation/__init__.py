"""Research simulators of low-dose CT: the projection-domain reference simulator and its fast torch twin, the
driver that simulates whole cases, the bank of noise realisations for training, and the procedural phantoms
(anatomy-like and the task-based image-quality phantoms).

Training content with real-world statistics (none of it reads a real CT image):

* :mod:`ldct_clip.simulation.textures` -- random 2D fields with the statistics of anatomy (power-law and lumpy
  backgrounds, vessel trees, trabecular bone, fat/muscle interleaving, lung parenchyma);
* :mod:`ldct_clip.simulation.textured_phantom` -- a body slice of 15-45 cm assembled from those textures;
* :mod:`ldct_clip.simulation.natural_content` -- the natural photographs that ship inside scikit-image,
  mapped into plausible HU inside a body outline;
* :mod:`ldct_clip.simulation.training_bank` -- training cases (clean slice and its projection-domain noise at a
  unit SD, rescaled to 10-150 HU at training time) and the crop stream that feeds the trainer.

Nothing here reads bundles or runs networks; arrays are HU, ``(X, Y)`` or ``(X, Y, Z)``.
"""
