"""Pillow's resampling as data (fused_imgproc.resample): the coefficient tables and pass order the GPU executes,
checked against the installed `PIL.Image.resize` with a numpy evaluation of the passes (fast, CPU only)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from fused_imgproc import resample as R

FILTERS = [R.NEAREST, R.BOX, R.BILINEAR, R.HAMMING, R.BICUBIC, R.LANCZOS]


def random_size(rng) -> int:
    """Mostly small, sometimes large: large factors up and down, 1-pixel sides, extreme aspect ratios."""
    return int(rng.integers(1, [3, 40, 300, 1200][int(rng.integers(0, 4))]))


def pillow(image: np.ndarray, out_hw, resample) -> np.ndarray:
    mode_image = PIL.Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    result = np.asarray(mode_image.resize(out_hw[::-1], resample=resample))
    return result[..., None] if result.ndim == 2 else result


@pytest.mark.parametrize("resample", FILTERS)
def test_tables_and_pass_order_reproduce_pillow(resample):
    rng = np.random.default_rng(resample)
    checked = both_axes = vertical_first = 0
    while checked < 400:
        in_hw, out_hw = (random_size(rng), random_size(rng)), (random_size(rng), random_size(rng))
        if in_hw[0] * in_hw[1] > 300_000 or out_hw[0] * out_hw[1] > 300_000:
            continue
        image = rng.integers(0, 256, (*in_hw, 3 if checked % 2 else 1), dtype=np.uint8)
        expected = pillow(image, out_hw, resample)
        got = R.resize_reference(image, out_hw, resample)
        np.testing.assert_array_equal(got, expected, err_msg=f"{in_hw}->{out_hw}")
        axes = R.passes(in_hw, out_hw)
        both_axes += len(axes) == 2
        vertical_first += axes == [0, 1]
        checked += 1
    assert both_axes > 200 and vertical_first > 20  # both pass orders were exercised


def test_skipped_axes_and_same_size():
    assert R.passes((10, 20), (10, 20)) == []
    assert R.passes((10, 20), (10, 7)) == [1]
    assert R.passes((10, 20), (3, 20)) == [0]


def test_fixed_point_coefficients_sum_to_about_one():
    for resample in FILTERS[1:]:
        for n_in, n_out in [(100, 7), (7, 100), (1, 5), (5, 1), (640, 224)]:
            table = R.axis_coefficients(n_in, n_out, resample)
            sums = table.coef.sum(axis=1)
            assert np.all(np.abs(sums - (1 << 22)) <= table.count), (resample, n_in, n_out)
            assert np.all(table.first >= 0) and np.all(table.first + table.count <= n_in)


def _pillow_loop(in_size: int, out_size: int, resample: int):
    """Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` transcribed loop for loop, one scalar at a time (the
    oracle of the vectorised `axis_coefficients`)."""
    import math

    def bicubic(x):
        a, x = -0.5, abs(x)
        if x < 1.0:
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
        return (((x - 5) * x + 8) * x - 4) * a if x < 2.0 else 0.0

    def sinc(x):
        return 1.0 if x == 0.0 else math.sin(x * math.pi) / (x * math.pi)

    def hamming(x):
        x = abs(x)
        if x == 0.0:
            return 1.0
        if x >= 1.0:
            return 0.0
        x = x * math.pi
        return math.sin(x) / x * (float(np.float32(0.54)) + float(np.float32(0.46)) * math.cos(x))

    filters = {
        R.BOX: (lambda x: 1.0 if -0.5 < x <= 0.5 else 0.0, 0.5),
        R.BILINEAR: (lambda x: 1.0 - abs(x) if abs(x) < 1.0 else 0.0, 1.0),
        R.HAMMING: (hamming, 1.0),
        R.BICUBIC: (bicubic, 2.0),
        R.LANCZOS: (lambda x: sinc(x) * sinc(x / 3) if -3.0 <= x < 3.0 else 0.0, 3.0),
    }
    fn, filter_support = filters[resample]
    scale = float(np.float32(in_size)) / out_size
    filterscale = max(scale, 1.0)
    support = filter_support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    first, count, coef = [], [], np.zeros((out_size, ksize), np.int64)
    for j in range(out_size):
        center = (j + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [fn((x + xmin - center + 0.5) * (1.0 / filterscale)) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            coef[j, x] = int(-0.5 + w * (1 << 22)) if w < 0 else int(0.5 + w * (1 << 22))
        first.append(xmin)
        count.append(xmax)
    return np.array(first), np.array(count), coef


@pytest.mark.parametrize("resample", FILTERS[1:])
def test_vectorised_tables_equal_pillows_loop(resample):
    rng = np.random.default_rng(50 + resample)
    pairs = [(random_size(rng), random_size(rng)) for _ in range(300)] + [(1, 1), (1, 9), (9, 1), (640, 298), (2, 2999)]
    for n_in, n_out in pairs:
        first, count, coef = _pillow_loop(n_in, n_out, resample)
        table = R.axis_coefficients(n_in, n_out, resample)
        assert np.array_equal(table.first, first) and np.array_equal(table.count, count), (n_in, n_out)
        assert np.array_equal(table.coef, coef), (n_in, n_out)


def test_nearest_indices_accumulate_like_pillow():
    for n_in, n_out in [(1, 1), (7, 3), (3, 7), (640, 224), (224, 640), (1000, 999), (5, 5000)]:
        step, x, expected = n_in / n_out, 0.5 * n_in / n_out, []
        for _ in range(n_out):
            expected.append(min(int(x), n_in - 1))
            x += step
        assert np.array_equal(R.axis_coefficients(n_in, n_out, R.NEAREST).first, expected), (n_in, n_out)
