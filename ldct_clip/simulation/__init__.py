"""Research simulators of low-dose CT.

- :mod:`~ldct_clip.simulation.protocol`: :class:`ScanProtocol`, the scan every simulator takes (flux, electronic
  noise, geometry, views, reconstruction filter, pixel size), validated once on construction;
- the projection-domain simulator: the numpy reference slice simulator (:mod:`.reference`), its fast torch twin
  (:mod:`.fast`), the volume drivers (:mod:`.runs`), ``simulate_low_dose`` (:mod:`.low_dose`) and
  ``simulate_dose_pair`` (:mod:`.pairs`); the paper's Gaussian noise (:mod:`.gaussian`);
- whole cases on disk (:mod:`.cases`) and the bank of noise realisations for training (:mod:`.noise_bank`);
- procedural phantoms: body regions (:mod:`.phantom`, :mod:`.anatomy`, :mod:`.phantom_drawing`) and the
  task-based image-quality phantoms (:mod:`.iq_phantoms`).

Nothing here reads bundles or runs networks; images are HU, ``(X, Y)`` or ``(X, Y, Z)``.
"""
