"""A precomputed bank of low-dose noise realisations per normal-dose training slice, for slow machines.

Online projection noise (``noise: "projection"`` in ``train.json``) simulates every training slice afresh.  Where
even the fast path is too slow for the data loader, :func:`build_noise_bank` simulates ``N`` realisations per
slice once (:func:`ldct_clip.simulation.low_dose.simulate_low_dose_torch`, the same physics and dose range) and
:class:`RandCTNoised` with ``noise="projection_bank"`` adds one of them, drawn at random, on every visit.

On disk::

    <bank_dir>/<settings key>/bank.json                          what the bank was made with (for people)
    <bank_dir>/<settings key>/<slice name>__<z>__<content>.npy   (N, X, Y) float16 noise in HU

The settings key hashes the dose range, ``N``, the seed and the simulation arguments; ``<content>`` hashes the
slice's HU values, so a bank is never used for other data or other settings (they get other files), and one
``bank_dir`` can hold banks of several settings.  Every file is written atomically
(:func:`ldct_clip.atomic.atomic_path`) and the realisations of a slice depend only on the seed and the
slice's position, so a build that was killed continues where it stopped and gives the same bank as an
uninterrupted one; a file that does not read back as an ``(N, X, Y)`` array is simulated again.

float16 keeps the noise to about 0.05 % of its value (0.05 HU at 100 HU): 512 x 512 slices take 0.5 MB per
realisation, so 8 realisations of 400 slices take 1.7 GB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldct_clip.atomic import atomic_path
from ldct_clip.errors import InputError
from ldct_clip.simulation.protocol import ScanProtocol, dose_range
from ldct_clip.simulation.runs import torch_seeds

__all__ = ["NoiseBank", "build_noise_bank"]

log = logging.getLogger("ldct_clip")

_FORMAT = 1


def _slice_file(name: str, z: int, hu: np.ndarray) -> str:
    """File name of a slice's realisations: readable name, position, and a hash of its HU values."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    content = hashlib.blake2b(np.ascontiguousarray(hu, dtype=np.float32).tobytes(), digest_size=8)
    content.update(repr(hu.shape).encode())
    return f"{safe}__{int(z)}__{content.hexdigest()}.npy"


def _readable(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` holds a complete float16 array of ``shape`` (a truncated or foreign file is not trusted)."""
    try:
        a = np.load(path, mmap_mode="r")
        return a.shape == shape and a.dtype == np.float16 and path.stat().st_size >= a.nbytes
    except (OSError, ValueError, EOFError):
        return False


class NoiseBank:
    """Realisations of a built bank: ``draw(name, z, rng)`` is one ``(X, Y)`` float32 noise image in HU.

    Made by :func:`build_noise_bank`; holds only the file names (workers of a DataLoader share it), and reads one
    realisation per draw (memory-mapped).
    """

    def __init__(self, folder: Path, files: Mapping[tuple[str, int], str], realisations: int) -> None:
        self.folder = Path(folder)
        self.files = dict(files)
        self.realisations = int(realisations)

    def __len__(self) -> int:
        return len(self.files)

    def draw(self, name: str, z: int, rng: np.random.RandomState | np.random.Generator) -> np.ndarray:
        """One realisation, chosen with ``rng``, of slice ``z`` of ``name`` (as :class:`~ldct_clip.ct.training_data.TrainingSlices`
        items name them); ``(X, Y)`` float32 HU."""
        key = (str(name), int(z))
        if key not in self.files:
            raise InputError(
                f"the noise bank in {self.folder} has no realisations of slice {z} of {name!r}. Build the bank from "
                "the training data it is used with (build_noise_bank)."
            )
        j = int(rng.randint(self.realisations) if isinstance(rng, np.random.RandomState) else rng.integers(self.realisations))
        return np.asarray(np.load(self.folder / self.files[key], mmap_mode="r")[j], dtype=np.float32)


def build_noise_bank(
    dataset: Sequence[Mapping[str, Any]],
    bank_dir: str | Path,
    *,
    realisations: int = 8,
    dose_fraction: float | Sequence[float] = 0.25,
    seed: int = 0,
    simulation_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> NoiseBank:
    """Simulate (or finish simulating) ``realisations`` low-dose noise images of every slice of ``dataset``.

    Args:
        dataset: items ``{"label": (1, X, Y) HU, "name": str, "slice": int}``, e.g.
            :class:`~ldct_clip.ct.training_data.TrainingSlices`; ``(name, slice)`` must identify an item.
        bank_dir: folder of banks (created); this bank lives in a sub-folder named by its settings.
        realisations: ``N``, noise images per slice.
        dose_fraction: a dose fraction in (0, 1] or a range ``[lo, hi]``; each realisation draws its own dose.
        seed: the bank's seed; realisation ``j`` of item ``i`` depends only on ``(seed, i, j)`` and the slice.
        simulation_kwargs: fields of the :class:`~ldct_clip.simulation.protocol.ScanProtocol` (``method``,
            ``pixel_size_mm``, ``incident_flux``, ``noise_model``, ...); they also name the bank.
        device: where the noise is simulated.
        progress: called as ``progress(done, total)`` after each slice (done counts slices already on disk).

    Returns:
        The :class:`NoiseBank`.  Slices already in the bank are not simulated again.
    """
    from ldct_clip.simulation.low_dose import simulate_low_dose_torch

    if int(realisations) < 1:
        raise InputError(f"noise bank realisations must be >= 1, got {realisations}.")
    n_real = int(realisations)
    lo, hi = dose_range(dose_fraction)
    kwargs = dict(simulation_kwargs or {})
    protocol = ScanProtocol.of(None, kwargs)
    settings = {"format": _FORMAT, "realisations": n_real, "dose_fraction": [lo, hi], "seed": int(seed),
                "simulation_kwargs": {k: kwargs[k] for k in sorted(kwargs)}}
    try:
        text = json.dumps(settings, sort_keys=True)
    except TypeError as exc:
        raise InputError(f"noise bank simulation_kwargs must be plain numbers and strings ({exc}).") from exc
    folder = Path(bank_dir).expanduser() / hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "bank.json"
    if not manifest.exists():
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    dev = torch.device(device)
    streams = torch_seeds(int(seed), len(dataset), streams=n_real + 1)  # [0]: the doses
    files: dict[tuple[str, int], str] = {}
    made = 0
    for i in range(len(dataset)):
        item = dataset[i]
        hu = np.asarray(item["label"], dtype=np.float32).reshape(np.shape(item["label"])[-2:])
        key = (str(item["name"]), int(item["slice"]))
        if key in files:
            raise InputError(f"two training items are both slice {key[1]} of {key[0]!r}: the bank cannot tell them apart.")
        files[key] = _slice_file(*key, hu)
        path = folder / files[key]
        if not _readable(path, (n_real,) + hu.shape):
            rng = np.random.default_rng(streams[i][0])
            doses = torch.as_tensor(rng.uniform(lo, hi, n_real) if hi > lo else np.full(n_real, lo))
            planes = torch.from_numpy(hu).to(dev)[None].expand(n_real, -1, -1)
            noise = simulate_low_dose_torch(planes, doses, protocol, seeds=streams[i][1:]) - planes
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, noise.cpu().numpy().astype(np.float16))
            made += 1
        if progress is not None:
            progress(i + 1, len(dataset))
    log.info("noise bank %s: %d slices x %d realisations (%d simulated now, %d already there)", folder, len(files),
             n_real, made, len(files) - made)
    return NoiseBank(folder, files, n_real)
