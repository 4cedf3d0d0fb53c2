"""Research simulators of low-dose CT: the projection-domain reference simulator and its fast torch twin, the
driver that simulates whole cases, the bank of noise realisations for training, and the procedural phantoms
(anatomy-like and the task-based image-quality phantoms).

Nothing here reads bundles or runs networks; arrays are HU, ``(X, Y)`` or ``(X, Y, Z)``.
"""
