"""Tests for ldct_clip.rgb.isp and ldct_clip.rgb.camera: the CBDNet-style camera pipeline used to make sRGB training pairs.

Images come from scikit-image (``astronaut``, public domain), scaled to [0, 1].  The round trip
sRGB -> raw -> sRGB loses information only at mosaicing (2 of 3 samples per pixel dropped):

* without mosaicing the pipeline is exact (float precision);
* with Malvar demosaicing, a band-limited natural image (a 32 x 32 astronaut crop upsampled 4x
  with bicubic interpolation, i.e. as smooth as a full-resolution camera photo) passes 40 dB
  (measured 43.6 dB with the default camera);
* a sharp 128 x 128 crop at the original resolution gives about 28 dB (measured 28.2 dB): that is
  the demosaicing error of any linear method on aliasing-prone detail, amplified by the colour
  matrix and the tone curve, not a pipeline error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose
from scipy import ndimage
from skimage import data, transform

from ldct_clip.errors import InputError
from ldct_clip.rgb.camera import RandCameraNoise, RandCameraNoised, add_raw_noise, synthesize_camera_noise
from ldct_clip.rgb.isp import (
    BAYER_PATTERNS,
    CAMERA_CCMS,
    ISPParams,
    camera_to_srgb,
    demosaic_malvar,
    linear_to_srgb,
    mosaic,
    random_isp_params,
    raw_to_srgb,
    srgb_to_camera,
    srgb_to_linear,
    srgb_to_raw,
)

CAMERAS = [
    ISPParams(),
    ISPParams(gamma=2.2, s_curve=1.0, ccm="strong", wb_gains=(2.3, 1.0, 1.4), bayer_pattern="BGGR"),
    ISPParams(gamma=1.9, s_curve=0.4, ccm="mild", bayer_pattern="GRBG"),
    ISPParams(ccm="identity", wb_gains=(1.0, 1.0, 1.0), bayer_pattern="GBRG"),
]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _astronaut() -> np.ndarray:
    return data.astronaut().astype(np.float64) / 255.0  # (512, 512, 3) uint8 -> [0, 1]


@pytest.fixture(scope="module")
def sharp_crop() -> np.ndarray:
    """Astronaut face/suit crop at native resolution, (3, 128, 128) float32 RGB in [0, 1]."""
    return np.ascontiguousarray(_astronaut()[100:228, 180:308].transpose(2, 0, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def smooth_crop() -> np.ndarray:
    """Band-limited natural image: 32 x 32 astronaut crop upsampled 4x (bicubic), (3, 128, 128) float32."""
    small = _astronaut()[100:132, 180:212]
    up = transform.resize(small, (128, 128), order=3, mode="reflect").clip(0.0, 1.0)
    return np.ascontiguousarray(up.transpose(2, 0, 1)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("params", CAMERAS, ids=lambda p: f"{p.gamma}-{p.bayer_pattern}")
def test_round_trip_of_smooth_natural_image_exceeds_40db(smooth_crop: np.ndarray, params: ISPParams) -> None:
    raw = srgb_to_raw(smooth_crop, params)
    assert raw.shape == (128, 128) and raw.dtype == np.float32
    out = raw_to_srgb(raw, params)
    assert out.shape == smooth_crop.shape and out.dtype == np.float32
    assert _psnr(out, smooth_crop) > 40.0


def test_round_trip_of_sharp_crop_is_limited_by_demosaicing_only(sharp_crop: np.ndarray) -> None:
    out = raw_to_srgb(srgb_to_raw(sharp_crop))
    assert 27.0 < _psnr(out, sharp_crop) < 40.0  # measured 28.2 dB


@pytest.mark.parametrize("params", CAMERAS, ids=lambda p: f"{p.gamma}-{p.bayer_pattern}")
def test_pipeline_without_mosaicing_is_exact(sharp_crop: np.ndarray, params: ISPParams) -> None:
    # In float64 the inverse and forward pipelines cancel to rounding error.  (In float32, storing
    # the intermediate linear image costs up to about 1e-5 near black, where the power-law tone
    # curve's slope is unbounded.)
    x = sharp_crop.astype(np.float64)
    cam = srgb_to_camera(x, params)
    assert cam.dtype == np.float64
    np.testing.assert_allclose(camera_to_srgb(cam, params), x, atol=1e-9)
    np.testing.assert_allclose(camera_to_srgb(srgb_to_camera(sharp_crop, params), params), sharp_crop, atol=2e-5)


def test_tone_curves() -> None:
    lin = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose(linear_to_srgb(0.18), 0.46135612950044164, atol=1e-9)  # sRGB of 18 % grey
    # The two pieces of the sRGB curve meet (continuity at the threshold).
    eps = 1e-9
    assert abs(float(linear_to_srgb(0.0031308 + eps)) - float(linear_to_srgb(0.0031308 - eps))) < 1e-6
    p = ISPParams(gamma=2.2)
    np.testing.assert_allclose(linear_to_srgb(lin, p), lin ** (1 / 2.2), atol=1e-12)
    for params in CAMERAS:
        encoded = linear_to_srgb(lin, params)
        assert np.all(np.diff(encoded) > 0)  # strictly increasing: invertible
        assert encoded[0] == pytest.approx(0.0, abs=1e-12) and encoded[-1] == pytest.approx(1.0)
        np.testing.assert_allclose(srgb_to_linear(encoded, params), lin, atol=1e-9)
    # The S-curve steepens mid-tones.
    k1 = ISPParams(gamma=2.2, s_curve=1.0)
    mid = 0.5 ** 2.2
    slope = (linear_to_srgb(mid + 1e-6, k1) - linear_to_srgb(mid - 1e-6, k1)) / 2e-6
    slope0 = (linear_to_srgb(mid + 1e-6, p) - linear_to_srgb(mid - 1e-6, p)) / 2e-6
    assert slope == pytest.approx(1.5 * slope0, rel=1e-4)  # smoothstep slope 1.5 at t = 0.5


def test_inverse_white_balance_and_colour_matrix_on_grey() -> None:
    # Rows of a camera-to-sRGB matrix sum to 1: grey stays grey, so raw = linear grey / gains.
    p = ISPParams(wb_gains=(2.0, 1.0, 1.6))
    grey = np.full((3, 4, 4), 0.5, dtype=np.float32)
    lin = float(srgb_to_linear(0.5))
    cam = srgb_to_camera(grey, p)
    np.testing.assert_allclose(cam[:, 0, 0], [lin / 2.0, lin, lin / 1.6], rtol=1e-6)
    for ccm in CAMERA_CCMS.values():
        np.testing.assert_allclose(ccm.sum(axis=1), 1.0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# mosaic and demosaicing


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_mosaic_layout(pattern: str) -> None:
    cam = np.stack([np.full((4, 6), v, dtype=np.float32) for v in (0.1, 0.2, 0.3)])
    raw = mosaic(cam, pattern)
    value = {"R": 0.1, "G": 0.2, "B": 0.3}
    expected = np.array([[value[pattern[0]], value[pattern[1]]], [value[pattern[2]], value[pattern[3]]]])
    np.testing.assert_allclose(raw[:2, :2], expected)
    np.testing.assert_allclose(raw, np.tile(expected, (2, 3)))


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
@pytest.mark.parametrize("shape", [(16, 16), (15, 21)])
def test_malvar_is_exact_on_constant_colour(pattern: str, shape: tuple[int, int]) -> None:
    colour = np.array([0.7, 0.35, 0.1])
    cam = np.broadcast_to(colour[:, None, None], (3,) + shape).astype(np.float64)
    out = demosaic_malvar(mosaic(cam, pattern), pattern)
    # Exact everywhere, borders included (mirror padding keeps the Bayer phase), odd sizes too.
    np.testing.assert_allclose(out, cam, atol=1e-12)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_malvar_is_exact_on_linear_ramps_away_from_border(pattern: str) -> None:
    yy, xx = np.mgrid[0:24, 0:24] / 24.0
    cam = np.stack([0.1 + 0.5 * xx + 0.2 * yy, 0.3 + 0.2 * xx - 0.1 * yy, 0.2 - 0.1 * xx + 0.6 * yy])
    out = demosaic_malvar(mosaic(cam, pattern), pattern)
    np.testing.assert_allclose(out[:, 2:-2, 2:-2], cam[:, 2:-2, 2:-2], atol=1e-12)
    # Sampled values are kept as they are.
    np.testing.assert_array_equal(mosaic(out, pattern), mosaic(cam, pattern))


def _bilinear_rggb(raw: np.ndarray) -> np.ndarray:
    masks = np.zeros((3,) + raw.shape)
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = 1
    masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
    k_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0
    return np.stack([ndimage.correlate(raw * masks[c], k_g if c == 1 else k_rb, mode="mirror") for c in range(3)])


def test_malvar_beats_bilinear_on_natural_image(sharp_crop: np.ndarray) -> None:
    # The gradient correction is what distinguishes Malvar from bilinear interpolation; a swapped
    # kernel (row/column, R/B) makes it worse than bilinear.  Measured: 37.8 vs 34.8 dB.
    cam = srgb_to_camera(sharp_crop.astype(np.float64))
    raw = mosaic(cam, "RGGB")
    peak = cam.max()
    malvar = _psnr(demosaic_malvar(raw, "RGGB") / peak, cam / peak)
    bilinear = _psnr(_bilinear_rggb(raw) / peak, cam / peak)
    assert malvar > bilinear + 2.0


# ----------------------------------------------------------------------------------------------
# raw noise


@pytest.mark.parametrize(("level", "sd"), [(0.1, 0.0302655), (0.5, 0.0360555), (0.8, 0.0438634)])
def test_reference_raw_noise_sd_is_proportional_to_the_signal(level: float, sd: float) -> None:
    # the paper's code and CBDNet: clip(x + N1 * (sigma_s * x) + N2 * sigma_c, 0, 1), sigma_s 0.04, sigma_c 0.03;
    # sd = sqrt((0.04 x)^2 + 0.03^2), pinned as numbers (0.036 at x = 0.5, not the 0.145 of variance sigma_s * x)
    raw = np.full((512, 512), level, dtype=np.float32)
    noisy = add_raw_noise(raw, 0.04, 0.03, np.random.default_rng(0)).astype(np.float64)
    assert noisy.mean() == pytest.approx(level, abs=4 * sd / 512)
    assert noisy.std() == pytest.approx(sd, rel=0.01)  # sampling SE of the SD about 0.14 %


def test_reference_raw_noise_is_clipped_to_the_unit_range() -> None:
    noisy = add_raw_noise(np.full((256, 256), 0.99, dtype=np.float32), 0.04, 0.03, 3)
    assert noisy.max() == 1.0 and noisy.min() >= 0.0 and (noisy == 1.0).mean() > 0.3
    assert add_raw_noise(np.full((64, 64), 0.01), 0.04, 0.03, 3).min() == 0.0


@pytest.mark.parametrize("level", [0.05, 0.3, 0.9])
def test_poisson_gaussian_raw_noise_variance_is_sigma_s_x_plus_sigma_c_squared(level: float) -> None:
    sigma_s, sigma_c = 0.04, 0.03
    raw = np.full((512, 512), level, dtype=np.float32)
    noisy = add_raw_noise(raw, sigma_s, sigma_c, np.random.default_rng(0), "poisson_gaussian").astype(np.float64)
    expected = sigma_s * level + sigma_c**2
    assert noisy.mean() == pytest.approx(level, abs=4 * np.sqrt(expected / raw.size))
    assert noisy.var() == pytest.approx(expected, rel=0.03)  # sampling SE about 0.3 %


def test_raw_noise_read_only_and_shot_only() -> None:
    raw = np.full((256, 256), 0.5, dtype=np.float32)
    assert add_raw_noise(raw, 0.0, 0.02, 1).var() == pytest.approx(0.02**2, rel=0.03)
    assert add_raw_noise(raw, 0.02, 0.0, 1).std() == pytest.approx(0.02 * 0.5, rel=0.03)
    assert add_raw_noise(raw, 0.01, 0.0, 1, "poisson_gaussian").var() == pytest.approx(0.01 * 0.5, rel=0.03)
    # Negative raw (below black level) gets read noise only, not a NaN.
    neg = add_raw_noise(np.full((256, 256), -0.1), 0.04, 0.03, 1, "poisson_gaussian")
    assert np.all(np.isfinite(neg)) and neg.var() == pytest.approx(0.03**2, rel=0.03)
    with pytest.raises(InputError, match="noise_model"):
        add_raw_noise(raw, 0.04, 0.03, 1, "cbdnet")
    np.testing.assert_array_equal(add_raw_noise(raw, 0.04, 0.03, 7), add_raw_noise(raw, 0.04, 0.03, 7))


# ----------------------------------------------------------------------------------------------
# camera-noise synthesis


def test_synthesize_camera_noise_basic(sharp_crop: np.ndarray) -> None:
    y = synthesize_camera_noise(sharp_crop, seed=0)
    assert y.shape == sharp_crop.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0
    np.testing.assert_array_equal(y, synthesize_camera_noise(sharp_crop, seed=0))
    assert not np.array_equal(y, synthesize_camera_noise(sharp_crop, seed=1))
    # Zero noise reduces to the clean round trip.
    clean = synthesize_camera_noise(sharp_crop, sigma_s=0.0, sigma_c=0.0, seed=0)
    np.testing.assert_allclose(clean, raw_to_srgb(srgb_to_raw(sharp_crop)), atol=1e-6)
    # More raw noise, more sRGB noise.
    err = [
        np.mean((synthesize_camera_noise(sharp_crop, sigma_s=s, sigma_c=0.01, seed=0) - clean) ** 2)
        for s in (0.005, 0.02, 0.08)
    ]
    assert err[0] < err[1] < err[2]


def test_camera_noise_is_signal_dependent_and_spatially_correlated() -> None:
    p = ISPParams()
    dark = np.full((3, 128, 128), 0.25, dtype=np.float32)
    bright = np.full((3, 128, 128), 0.75, dtype=np.float32)

    def noise_of(img: np.ndarray) -> np.ndarray:
        noisy = synthesize_camera_noise(img, sigma_s=0.01, sigma_c=0.005, params=p, seed=3)
        return noisy - raw_to_srgb(srgb_to_raw(img, p), p)

    nd, nb = noise_of(dark), noise_of(bright)
    assert nd.std() != pytest.approx(nb.std(), rel=0.1)  # heteroscedastic, unlike AWGN
    # Demosaicing spreads each raw sample over neighbours: sRGB noise is correlated, unlike raw noise.
    g = nb[1].astype(np.float64)
    rho = np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1]
    assert rho > 0.1


def test_sampled_noise_levels_and_cameras_vary_with_seed(smooth_crop: np.ndarray) -> None:
    clean = raw_to_srgb(srgb_to_raw(smooth_crop))
    fixed = [float(np.std(synthesize_camera_noise(smooth_crop, seed=s) - clean)) for s in range(6)]
    sampled = [float(np.std(synthesize_camera_noise(smooth_crop, sample=True, seed=s) - smooth_crop)) for s in range(6)]
    assert max(fixed) / min(fixed) < 1.05
    assert max(sampled) / min(sampled) > 1.5
    again = [synthesize_camera_noise(smooth_crop, sample=True, seed=4) for _ in range(2)]
    np.testing.assert_array_equal(again[0], again[1])
    cams = {random_isp_params(s).bayer_pattern for s in range(20)}
    assert cams == set(BAYER_PATTERNS)


def test_torch_input_keeps_type(smooth_crop: np.ndarray) -> None:
    t = torch.from_numpy(smooth_crop.copy())
    y = synthesize_camera_noise(t, seed=5)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == t.shape
    np.testing.assert_allclose(y.numpy(), synthesize_camera_noise(smooth_crop, seed=5), atol=1e-7)
    raw = srgb_to_raw(t)
    assert isinstance(raw, torch.Tensor) and raw.shape == (128, 128)
    assert isinstance(raw_to_srgb(raw), torch.Tensor)


# ----------------------------------------------------------------------------------------------
# MONAI transforms


def test_dict_transform_keeps_clean_label_and_is_deterministic(smooth_crop: np.ndarray) -> None:
    def pipeline() -> Compose:
        return Compose([RandCameraNoised(keys=["image"], sigma_s=0.04, sigma_c=0.03, target_key="label")])

    a = pipeline().set_random_state(1)({"image": smooth_crop})
    b = pipeline().set_random_state(1)({"image": smooth_crop})
    c = pipeline().set_random_state(2)({"image": smooth_crop})
    np.testing.assert_array_equal(a["label"], smooth_crop)
    assert not np.array_equal(a["image"], smooth_crop)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], c["image"])
    skip = RandCameraNoised(keys="image", prob=0.0, target_key="label")({"image": smooth_crop})
    np.testing.assert_array_equal(skip["image"], smooth_crop)
    np.testing.assert_array_equal(skip["label"], smooth_crop)


def test_quantize_rounds_the_noisy_image_to_8_bits(smooth_crop: np.ndarray) -> None:
    # the sRGB training config quantises the camera noise as the reference's noisy PNGs are
    def noisy(quantize: bool) -> torch.Tensor:
        t = RandCameraNoised(keys="image", quantize=quantize).set_random_state(3)
        return t({"image": torch.from_numpy(smooth_crop.astype(np.float32))})["image"]

    plain, rounded = noisy(False), noisy(True)
    assert rounded.dtype == torch.float32
    levels = rounded.double() * 255.0
    np.testing.assert_allclose(levels, torch.round(levels), atol=1e-4)  # on the 8-bit grid
    assert float((rounded - plain).abs().max()) <= 0.5 / 255.0 + 1e-6  # the nearest level of the same noise
    assert torch.unique(torch.round(levels)).numel() > 64


def test_array_transform_is_deterministic(smooth_crop: np.ndarray) -> None:
    t1 = RandCameraNoise(sample=True).set_random_state(3)
    t2 = RandCameraNoise(sample=True).set_random_state(3)
    first = t1(smooth_crop)
    np.testing.assert_array_equal(first, t2(smooth_crop))
    assert not np.array_equal(first, t1(smooth_crop))  # fresh draw on each call


def test_old_names_warn_and_give_the_same_noise(smooth_crop: np.ndarray) -> None:
    from ldct_clip.rgb.camera import SimulateCameraNoise, SimulateCameraNoised

    with pytest.warns(FutureWarning, match="RandCameraNoise"):
        old = SimulateCameraNoise(sample=True)
    np.testing.assert_array_equal(old.set_random_state(3)(smooth_crop),
                                  RandCameraNoise(sample=True).set_random_state(3)(smooth_crop))
    with pytest.warns(FutureWarning, match="RandCameraNoised"):
        oldd = SimulateCameraNoised(keys="image", target_key="label")
    a = oldd.set_random_state(4)({"image": smooth_crop})
    b = RandCameraNoised(keys="image", target_key="label").set_random_state(4)({"image": smooth_crop})
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], smooth_crop)


# ----------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gamma": "linear"},
        {"gamma": -2.2},
        {"s_curve": 1.5},
        {"ccm": "canon"},
        {"ccm": np.ones((3, 3))},  # singular
        {"ccm": np.eye(2)},
        {"wb_gains": (2.0, 0.0, 1.5)},
        {"wb_gains": (2.0, 1.0)},
        {"bayer_pattern": "RGBG"},
    ],
)
def test_bad_isp_params_raise_input_error(kwargs: dict) -> None:
    with pytest.raises(InputError):
        ISPParams(**kwargs)


def test_bad_arrays_and_noise_levels_raise_input_error(smooth_crop: np.ndarray) -> None:
    hwc = np.ascontiguousarray(smooth_crop.transpose(1, 2, 0))
    cases = [
        lambda: srgb_to_raw(hwc),  # channel-last
        lambda: srgb_to_raw(smooth_crop[:1]),  # grey
        lambda: srgb_to_raw((smooth_crop * 255).astype(np.uint8)),
        lambda: raw_to_srgb(smooth_crop),  # not a mosaic
        lambda: demosaic_malvar(np.zeros((8, 8)), "RGB"),
        lambda: add_raw_noise(np.zeros((8, 8)), -0.01, 0.03, 0),
        lambda: add_raw_noise(np.zeros((8, 8)), 0.04, float("inf"), 0),
        lambda: synthesize_camera_noise(smooth_crop, sigma_c=-1.0, seed=0),
        lambda: synthesize_camera_noise(smooth_crop, sample=True, sigma_s_range=(0.1, 0.0), seed=0),
        lambda: synthesize_camera_noise(smooth_crop, params="RGGB", seed=0),
        lambda: RandCameraNoise(sigma_s=-0.1),
        lambda: RandCameraNoised(keys=["image"], target_key="image"),
    ]
    for case in cases:
        with pytest.raises(InputError):
            case()
