"""Research simulators of low-dose CT.

- :mod:`~ldct_clip.simulation.protocol`: :class:`ScanProtocol`, the scan every simulator takes (flux, electronic
  noise, geometry, views, reconstruction filter, pixel size), validated once on construction;
- the projection-domain simulator: the numpy reference slice simulator (:mod:`.reference`), its fast torch twin
  (:mod:`.fast`), the volume drivers (:mod:`.runs`), ``simulate_low_dose`` (:mod:`.low_dose`) and
  ``simulate_dose_pair`` (:mod:`.pairs`); the paper's Gaussian noise (:mod:`.gaussian`);
- whole cases on disk (:mod:`.cases`) and the bank of noise realisations for training (:mod:`.noise_bank`);
- procedural phantoms: body regions (:mod:`.phantom`, :mod:`.anatomy`, :mod:`.phantom_drawing`) and the
  task-based image-quality phantoms (:mod:`.iq_phantoms`);
- training content with real-world statistics (none of it reads a real CT image): random 2D fields with the
  statistics of anatomy (:mod:`.textures`: power-law and lumpy backgrounds, vessel trees, trabecular bone,
  fat/muscle interleaving, lung parenchyma), 15-45 cm bodies built from them (:mod:`.textured_phantom`), the
  natural images bundled with scikit-image mapped to HU (:mod:`.natural_content`), and training cases of any of
  these with unit-SD projection-domain noise rescaled to 10-150 HU per crop (:mod:`.training_bank`).

Nothing here reads bundles or runs networks; images are HU, ``(X, Y)`` or ``(X, Y, Z)``.
"""
