"""Synthetic training content for the CT denoiser: textured body phantoms and natural images mapped to HU.

Modules:

* :mod:`ldct_clip.simulation.textures` -- random 2D fields with real-world statistics (power-law and lumpy
  backgrounds, vessel trees, trabecular bone, fat/muscle interleaving, lung parenchyma);
* :mod:`ldct_clip.simulation.natural_content` -- the natural photographs that ship inside scikit-image,
  mapped into plausible HU inside a body outline;
* :mod:`ldct_clip.simulation.textured_phantom` -- a body slice of 15-45 cm assembled from those textures;
* :mod:`ldct_clip.simulation.training_bank` -- training cases (clean slice and its projection-domain noise at a
  unit SD, rescaled to 10-150 HU at training time) and the crop stream that feeds the trainer.

None of it reads a real CT image.
"""
