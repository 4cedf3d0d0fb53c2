"""Running a slice simulator over a volume: the input check, per-slice random streams, progress, and the device
and batch arguments of the torch paths.

Array conventions (MONAI): a volume is ``(X, Y, Z)`` in HU with axial slices ``vol[:, :, k]``; a single slice is
``(X, Y)``.  Every slice draws from its own child of ``np.random.SeedSequence(seed)``, so an integer seed makes a
result reproducible whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np
import torch

from ldct_clip.errors import InputError
from ldct_clip.simulation.protocol import ScanProtocol, check_dose_fraction

__all__ = ["ProgressArg", "as_hu_image", "check_batch_size", "checked_inputs", "progress_step", "run_slices",
           "slice_rngs", "torch_device", "torch_seeds"]

#: Progress reporting: a callable ``progress(done, total)``, ``True`` for a tqdm bar, or ``None``/``False``.
ProgressArg = Union[Callable[[int, int], None], bool, None]


def as_hu_image(image_hu: np.ndarray, name: str = "image_hu", min_side: int = 8) -> np.ndarray:
    """Return ``image_hu`` as a float64 array of shape (X, Y) or (X, Y, Z), or raise :class:`InputError`."""
    arr = np.asarray(image_hu)
    if arr.ndim not in (2, 3):
        raise InputError(
            f"{name} must be a 2D slice (X, Y) or a 3D volume (X, Y, Z) in HU, got an array of shape {arr.shape}. "
            "Squeeze channel/batch axes first."
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must hold real numbers (HU), got dtype {arr.dtype}.")
    if min(arr.shape[:2]) < min_side:
        raise InputError(f"{name} slices must be at least {min_side}x{min_side} pixels, got {arr.shape[:2]}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values; replace them (e.g. with -1000 HU for air) first.")
    return arr


def checked_inputs(
    image_hu: np.ndarray, dose_fraction: float, protocol: ScanProtocol | None, fields: Mapping[str, Any],
    name: str = "image_hu",
) -> tuple[np.ndarray, float, ScanProtocol]:
    """The checked ``(image, dose, scan)`` of a simulation entry point: the image (:func:`as_hu_image`), the dose
    fraction in (0, 1], and ``protocol`` with ``fields`` replaced that fits the image's size; or :class:`InputError`."""
    image = as_hu_image(image_hu, name)
    k = check_dose_fraction(dose_fraction)
    scan = ScanProtocol.of(protocol, fields)
    scan.check_fits(max(image.shape[:2]))
    return image, k, scan


def progress_step(progress: ProgressArg, total: int) -> Callable[[int], None]:
    """Turn the ``progress`` argument into a ``step(done)`` function (done = slices finished so far)."""
    if progress is None or progress is False:
        return lambda done: None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="simulating", unit="slice")

        def step(done: int) -> None:
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return step
    if callable(progress):
        return lambda done: progress(done, total)
    raise InputError(f"progress must be a callable(done, total), True (tqdm) or None, got {type(progress).__name__}.")


def slice_rngs(seed: int | None, n: int, streams: int = 1) -> list[list[np.random.Generator]]:
    """Independent generators per slice (and per noise stream), reproducible for an integer seed."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [[np.random.default_rng(s) for s in child.spawn(streams)] for child in children]


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` (slices simulated at once) as a positive int, or :class:`InputError`."""
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer (slices simulated at once), got {batch_size!r}.")
    return int(batch_size)


def run_slices(image: np.ndarray, work: Callable[[np.ndarray, int], np.ndarray], progress: ProgressArg) -> np.ndarray:
    """Apply ``work(slice, index)`` to a 2D slice or to each axial slice ``vol[:, :, k]`` of a volume."""
    if image.ndim == 2:
        step = progress_step(progress, 1)
        out = work(image, 0)
        step(1)
        return out
    nz = image.shape[2]
    step = progress_step(progress, nz)
    out = np.empty(image.shape, dtype=np.float32)
    for k in range(nz):
        out[:, :, k] = work(image[:, :, k], k)
        step(k + 1)
    return out


def torch_seeds(seed: int | None, n: int, streams: int = 1) -> list[list[int]]:
    """Per-slice (and per-stream) integer seeds from the slice's child :class:`np.random.SeedSequence`."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [[int(c.generate_state(1, np.uint64)[0] >> 1) for c in child.spawn(streams)] for child in children]


def torch_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None``: CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}.") from exc

