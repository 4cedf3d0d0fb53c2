"""Low-contrast detectability (LCD) with model observers: channelized Hotelling (LG, DoG, Gabor) and NPW.

The study follows the conventions of the FDA LCD-CT toolbox (github.com/DIDSR/LCD_CT; Vaishnav et al., Med.
Phys. 41:071904, 2014), written here from those conventions:

* the task is signal-known-exactly detection of each insert of the MITA CCT189 phantom: ROIs centred on the
  insert in signal-present images and at the same place in signal-absent images (located on the noise-free
  image, :func:`find_inserts`);
* a "reader" is one random split of the images into training (``train_fraction``, default 1/2) and test sets;
  the observer's template is trained on the training ROIs and rates the test ROIs; ``readers`` (default 10)
  splits give the mean and SD of AUC and d';
* channelized Hotelling: channel outputs ``v = U^T g``, template ``w = K^+ (mean v_present - mean v_absent)``
  with ``K`` the average of the two classes' channel covariances; Laguerre-Gauss channels of width 2/3 of the
  insert radius (:mod:`ldct_clip.metrics.channels`);
* NPW (non-prewhitening): the template is the training mean difference image itself, ``t = w . g``;
* AUC: the Wilcoxon-Mann-Whitney statistic of the test scores (ties count 1/2); d' =
  ``(mean t_p - mean t_a) / sqrt((var t_p + var t_a) / 2)``; for Gaussian scores ``AUC = Phi(d' / sqrt 2)``.

Arrays: an image stack is ``(X, Y, N)`` in HU (N images along the last axis, the MONAI volume layout), the
noise-free image ``(X, Y)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from ldct_clip.errors import InputError
from ldct_clip.metrics.channels import dog_channels, gabor_channels, laguerre_gauss_channels

__all__ = [
    "LCD_COLUMNS",
    "OBSERVERS",
    "Insert",
    "ReaderStudy",
    "auc_from_dprime",
    "auc_from_scores",
    "dprime_from_auc",
    "dprime_from_scores",
    "extract_rois",
    "find_inserts",
    "measure_lcd",
    "observer_scores",
    "default_roi_size",
    "reader_splits",
    "reader_study",
]

OBSERVERS = ("LG_CHO", "DOG_CHO", "GABOR_CHO", "NPW")

#: Columns of ``lcd.csv``: the issue's seven, then the 95% bootstrap intervals and the study's sizes.
LCD_COLUMNS = ("insert_hu", "insert_diameter_mm", "observer", "auc_mean", "auc_sd", "dprime_mean", "dprime_sd",
               "dprime_ci95_low", "dprime_ci95_high", "auc_ci95_low", "auc_ci95_high", "readers", "n_present",
               "n_absent", "roi_px")


# ----------------------------------------------------------------------------------------------------------
# scores -> AUC and d'
# ----------------------------------------------------------------------------------------------------------


def auc_from_scores(t_present: np.ndarray, t_absent: np.ndarray) -> float:
    """Area under the ROC curve: the Wilcoxon-Mann-Whitney probability ``P(t_p > t_a) + P(t_p = t_a) / 2``."""
    tp, ta = np.ravel(t_present).astype(np.float64), np.ravel(t_absent).astype(np.float64)
    if tp.size == 0 or ta.size == 0:
        raise InputError("AUC needs at least one signal-present and one signal-absent score.")
    ranks = rankdata(np.concatenate([tp, ta]))  # average ranks: ties count one half
    return float((ranks[: tp.size].sum() - tp.size * (tp.size + 1) / 2.0) / (tp.size * ta.size))


def dprime_from_scores(t_present: np.ndarray, t_absent: np.ndarray) -> float:
    """Detectability index ``(mean t_p - mean t_a) / sqrt((var t_p + var t_a) / 2)`` (sample variances)."""
    tp, ta = np.ravel(t_present).astype(np.float64), np.ravel(t_absent).astype(np.float64)
    if tp.size < 2 or ta.size < 2:
        raise InputError("d' needs at least two scores of each class.")
    pooled = math.sqrt((tp.var(ddof=1) + ta.var(ddof=1)) / 2.0)
    return float((tp.mean() - ta.mean()) / pooled) if pooled > 0 else math.copysign(math.inf, tp.mean() - ta.mean())


def auc_from_dprime(dprime: float | np.ndarray) -> float | np.ndarray:
    """``AUC = Phi(d' / sqrt(2))``, exact for equal-variance Gaussian scores."""
    return ndtr(np.asarray(dprime, dtype=np.float64) / math.sqrt(2.0))


def dprime_from_auc(auc: float | np.ndarray) -> float | np.ndarray:
    """The inverse of :func:`auc_from_dprime`: ``d' = sqrt(2) Phi^-1(AUC)``."""
    return math.sqrt(2.0) * ndtri(np.asarray(auc, dtype=np.float64))


# ----------------------------------------------------------------------------------------------------------
# inserts and ROIs
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    """An insert located on the noise-free image: centre (pixels, fractional), radius (pixels), contrast (HU
    relative to the background) and diameter (mm)."""

    centre_px: tuple[float, float]
    radius_px: float
    contrast_hu: float
    diameter_mm: float


def find_inserts(truth_hu: np.ndarray, pixel_size_mm: float, *, min_contrast_hu: float = 0.5,
                 edge_margin_px: int = 3) -> list[Insert]:
    """Locate the circular inserts of a noise-free phantom image.

    The background is the median of the object (pixels above -500 HU); an insert is a connected region
    differing from it by more than ``min_contrast_hu`` at least ``edge_margin_px`` pixels inside the object.
    Its contrast is the signed 95th percentile of ``|truth - background|`` over the region, its extent the
    pixels beyond half that contrast (the FWHM edge of a blurred disk): centre = their centroid, radius =
    ``sqrt(area / pi)``.

    Args:
        truth_hu: ``(X, Y)`` noise-free image in HU (a trailing axis of length 1 is accepted).
        pixel_size_mm: pixel spacing (mm), for the diameters.

    Returns:
        the inserts, by decreasing contrast magnitude then position.

    Raises:
        InputError: no insert found, or an image that is not 2D.
    """
    truth = np.asarray(truth_hu, dtype=np.float64)
    if truth.ndim == 3 and truth.shape[2] == 1:
        truth = truth[:, :, 0]
    if truth.ndim != 2:
        raise InputError(f"the noise-free image must be one 2D slice (X, Y), got shape {truth.shape}.")
    body = truth > -500.0
    if not body.any():
        raise InputError("the noise-free image has no object (no pixel above -500 HU).")
    background = float(np.median(truth[body]))
    diff = truth - background
    inside = ndimage.binary_erosion(body, iterations=max(1, int(edge_margin_px)))
    labels, count = ndimage.label(inside & (np.abs(diff) > float(min_contrast_hu)))
    inserts = []
    for index in range(1, count + 1):
        region = labels == index
        values = diff[region]
        peak = float(np.percentile(np.abs(values), 95))
        contrast = math.copysign(peak, float(values[np.argmax(np.abs(values))]))
        grown = ndimage.binary_dilation(region, iterations=2) & inside
        extent = grown & (np.sign(contrast) * diff >= peak / 2.0)
        if extent.sum() < 1:
            continue
        cx, cy = ndimage.center_of_mass(extent)
        radius = math.sqrt(float(extent.sum()) / math.pi)
        inserts.append(Insert((float(cx), float(cy)), radius, round(contrast, 1), 2.0 * radius * float(pixel_size_mm)))
    if not inserts:
        raise InputError(
            f"no insert found in the noise-free image (no region differing from the background {background:.1f} HU "
            f"by more than {min_contrast_hu} HU); is it the phantom's noise-free image?"
        )
    return sorted(inserts, key=lambda i: (-abs(i.contrast_hu), i.centre_px))


def extract_rois(stack_hu: np.ndarray, centre_px: Sequence[float], size: int) -> np.ndarray:
    """Square ROIs ``(N, size, size)`` of an ``(X, Y, N)`` stack (or one ``(X, Y)`` image) centred on the pixel
    nearest ``centre_px``; ``size`` must be odd so that the ROI has a centre pixel."""
    arr = np.asarray(stack_hu)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if arr.ndim != 3:
        raise InputError(f"an image stack must be (X, Y, N), got shape {arr.shape}.")
    if size < 3 or size % 2 == 0:
        raise InputError(f"the ROI size must be odd and >= 3 pixels, got {size}.")
    half = size // 2
    i, j = (int(round(float(c))) for c in centre_px)
    if i - half < 0 or j - half < 0 or i + half >= arr.shape[0] or j + half >= arr.shape[1]:
        raise InputError(f"a {size}x{size} ROI at pixel ({i}, {j}) does not fit in images of {arr.shape[:2]}.")
    return np.moveaxis(arr[i - half : i + half + 1, j - half : j + half + 1, :], 2, 0).astype(np.float64)


# ----------------------------------------------------------------------------------------------------------
# observers
# ----------------------------------------------------------------------------------------------------------


def _channels(observer: str, size: int, radius_px: float) -> np.ndarray | None:
    if observer == "LG_CHO":
        return laguerre_gauss_channels(size, 2.0 / 3.0 * radius_px)
    if observer == "DOG_CHO":
        return dog_channels(size)
    if observer == "GABOR_CHO":
        return gabor_channels(size)
    if observer == "NPW":
        return None
    raise InputError(f"unknown observer {observer!r}; choose from {', '.join(OBSERVERS)}.")


def _features(rois: np.ndarray, channels: np.ndarray | None) -> np.ndarray:
    flat = rois.reshape(len(rois), -1)
    return flat if channels is None else flat @ channels


def _template(train_p: np.ndarray, train_a: np.ndarray, hotelling: bool) -> np.ndarray:
    delta = train_p.mean(axis=0) - train_a.mean(axis=0)
    if not hotelling:
        return delta
    cov = (np.cov(train_p, rowvar=False) + np.cov(train_a, rowvar=False)) / 2.0
    return np.linalg.pinv(np.atleast_2d(cov)) @ delta


def observer_scores(train_p: np.ndarray, train_a: np.ndarray, test_p: np.ndarray, test_a: np.ndarray,
                    observer: str = "LG_CHO", *, radius_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train ``observer`` on ROI stacks ``(n, s, s)`` and return its test scores ``(t_present, t_absent)``.

    ``radius_px`` (the insert radius) sets the Laguerre-Gauss channel width; other observers ignore it.
    """
    size = train_p.shape[-1]
    if observer == "LG_CHO" and not radius_px:
        raise InputError("the LG_CHO observer needs the insert radius (pixels) for its channel width.")
    ch = _channels(observer, size, float(radius_px or 1.0))
    fp, fa, gp, ga = (_features(r, ch) for r in (train_p, train_a, test_p, test_a))
    w = _template(fp, fa, hotelling=ch is not None)
    return gp @ w, ga @ w


def reader_splits(n_present: int, n_absent: int, readers: int, train_fraction: float = 0.5,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """One random train/test split of the image indices per reader: ``(train_p, test_p, train_a, test_a)``.

    Each class is split on its own: ``round(n * train_fraction)`` images train, the rest test; the splits of
    one seed are reproducible.
    """
    if not 0.0 < train_fraction < 1.0:
        raise InputError(f"train_fraction must be in (0, 1), got {train_fraction}.")
    if readers < 1:
        raise InputError(f"readers must be >= 1, got {readers}.")
    out = []
    for rng in (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(readers)):
        parts = []
        for n in (n_present, n_absent):
            k = int(round(n * train_fraction))
            if k < 2 or n - k < 2:
                raise InputError(f"{n} images per class leave fewer than 2 to train or to test; give at least 4.")
            perm = rng.permutation(n)
            parts.append((perm[:k], perm[k:]))
        out.append((parts[0][0], parts[0][1], parts[1][0], parts[1][1]))
    return out


@dataclass
class ReaderStudy:
    """AUC and d' of every reader, and 95% bootstrap intervals of their means (NaN without a bootstrap)."""

    auc: np.ndarray
    dprime: np.ndarray
    auc_ci95: tuple[float, float]
    dprime_ci95: tuple[float, float]


def reader_study(present_rois: np.ndarray, absent_rois: np.ndarray, observer: str = "LG_CHO", *,
                 radius_px: float | None = None, readers: int = 10, train_fraction: float = 0.5, seed: int = 0,
                 bootstrap: int = 200) -> ReaderStudy:
    """The LCD-CT reader study of one insert: ``readers`` random train/test splits, AUC and d' per reader.

    The 95% interval of the reader mean is a percentile bootstrap over the test images: each replicate redraws,
    with replacement, every reader's signal-present and signal-absent test scores (the templates stay as
    trained) and averages the readers again.  It carries the test set's finite-sample uncertainty, which the
    SD over readers (splits of the same images) does not; the training set's share is in the reader spread.
    (Resampling the *training* images with replacement would duplicate them and bias a Hotelling template.)

    Args:
        present_rois, absent_rois: ``(N, s, s)`` ROI stacks (:func:`extract_rois`), HU.
        observer: one of :data:`OBSERVERS`.
        radius_px: insert radius in pixels (channel width of ``LG_CHO``).
    """
    if present_rois.shape[1:] != absent_rois.shape[1:]:
        raise InputError(f"present and absent ROIs differ in shape: {present_rois.shape} vs {absent_rois.shape}.")
    if observer == "LG_CHO" and not radius_px:
        raise InputError("the LG_CHO observer needs the insert radius (pixels) for its channel width.")
    splits = reader_splits(len(present_rois), len(absent_rois), readers, train_fraction, seed)
    ch = _channels(observer, present_rois.shape[-1], float(radius_px or 1.0))
    fp, fa = _features(present_rois, ch), _features(absent_rois, ch)  # channelize once; splits reuse them

    scores = []
    for trp, tep, tra, tea in splits:
        w = _template(fp[trp], fa[tra], hotelling=ch is not None)
        scores.append((fp[tep] @ w, fa[tea] @ w))
    auc = np.array([auc_from_scores(tp, ta) for tp, ta in scores])
    dprime = np.array([dprime_from_scores(tp, ta) for tp, ta in scores])
    auc_ci = dp_ci = (math.nan, math.nan)
    if bootstrap > 0:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        means = np.empty((bootstrap, 2))
        for b in range(bootstrap):
            a, d = [], []
            for tp, ta in scores:
                rp, ra = tp[rng.integers(0, tp.size, tp.size)], ta[rng.integers(0, ta.size, ta.size)]
                a.append(auc_from_scores(rp, ra))
                d.append(dprime_from_scores(rp, ra))
            means[b] = np.mean(a), np.mean(d)
        with np.errstate(invalid="ignore"):  # a replicate of identical scores has an infinite d'
            auc_ci = tuple(float(v) for v in np.percentile(means[:, 0], [2.5, 97.5]))
            dp_ci = tuple(float(v) for v in np.percentile(means[:, 1], [2.5, 97.5]))
    return ReaderStudy(auc, dprime, auc_ci, dp_ci)


# ----------------------------------------------------------------------------------------------------------
# the whole measurement
# ----------------------------------------------------------------------------------------------------------


def default_roi_size(inserts: Sequence[Insert]) -> int:
    """ROI side (pixels, odd): ``2 * ceil(2 r_max) + 1``, twice the largest insert's diameter, the same for every
    insert (the LCD-CT toolbox crops one ROI size for all inserts, about the largest insert's diameter; the
    extra margin keeps the higher Laguerre-Gauss channels and the insert's blurred edge inside the ROI)."""
    return 2 * int(math.ceil(2.0 * max(i.radius_px for i in inserts))) + 1


def measure_lcd(present_hu: np.ndarray, absent_hu: np.ndarray, truth_hu: np.ndarray, *, pixel_size_mm: float,
                observers: Sequence[str] = ("LG_CHO",), readers: int = 10, train_fraction: float = 0.5,
                seed: int = 0, bootstrap: int = 200, roi_size: int | None = None,
                inserts: Sequence[Insert] | None = None) -> list[dict]:
    """Low-contrast detectability of every insert, for every observer.

    Args:
        present_hu, absent_hu: ``(X, Y, N)`` stacks of signal-present and signal-absent images in HU (N may
            differ between them; at least 4 each).
        truth_hu: ``(X, Y)`` noise-free image that locates the inserts (:func:`find_inserts`).
        pixel_size_mm: pixel spacing (mm).
        observers: names from :data:`OBSERVERS`.
        readers, train_fraction, seed, bootstrap: see :func:`reader_study`.
        roi_size: ROI side in pixels (odd; default :func:`default_roi_size`).
        inserts: skip the search and use these inserts.

    Returns:
        one row per (insert, observer) with the keys of :data:`LCD_COLUMNS`; ``insert_hu`` is the insert's
        contrast against the background (HU).
    """
    present, absent = (np.asarray(a) for a in (present_hu, absent_hu))
    for name, arr in (("signal-present", present), ("signal-absent", absent)):
        if arr.ndim != 3:
            raise InputError(f"the {name} images must be a stack (X, Y, N), got shape {arr.shape}.")
    if present.shape[:2] != absent.shape[:2] or present.shape[:2] != np.shape(truth_hu)[:2]:
        raise InputError(f"image sizes differ: present {present.shape[:2]}, absent {absent.shape[:2]}, "
                         f"noise-free {np.shape(truth_hu)[:2]}.")
    unknown = [o for o in observers if o not in OBSERVERS]
    if unknown:
        raise InputError(f"unknown observer(s) {unknown}; choose from {', '.join(OBSERVERS)}.")
    inserts = list(inserts) if inserts is not None else find_inserts(truth_hu, pixel_size_mm)
    size = default_roi_size(inserts) if roi_size is None else int(roi_size)
    rows = []
    for ins in inserts:
        p, a = extract_rois(present, ins.centre_px, size), extract_rois(absent, ins.centre_px, size)
        for obs in observers:
            study = reader_study(p, a, obs, radius_px=ins.radius_px, readers=readers, train_fraction=train_fraction,
                                 seed=seed, bootstrap=bootstrap)
            rows.append({
                "insert_hu": ins.contrast_hu, "insert_diameter_mm": round(ins.diameter_mm, 2), "observer": obs,
                "auc_mean": float(study.auc.mean()), "auc_sd": float(study.auc.std(ddof=1)) if readers > 1 else 0.0,
                "dprime_mean": float(study.dprime.mean()),
                "dprime_sd": float(study.dprime.std(ddof=1)) if readers > 1 else 0.0,
                "dprime_ci95_low": study.dprime_ci95[0], "dprime_ci95_high": study.dprime_ci95[1],
                "auc_ci95_low": study.auc_ci95[0], "auc_ci95_high": study.auc_ci95[1],
                "readers": readers, "n_present": present.shape[2], "n_absent": absent.shape[2], "roi_px": size,
            })
    return rows
