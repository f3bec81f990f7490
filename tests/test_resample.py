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
