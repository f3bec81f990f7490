"""The fused bilinear-upsampling + argmax kernel (`fused_imgproc._kernels.segmentation`) against transformers'
arithmetic: per image, `F.interpolate(logits[i][None], size, mode="bilinear", align_corners=False)[0].argmax(0)`.

- Labels EQUAL CPU torch's (the kernel reproduces its arithmetic bit for bit, see the module docstring) on random,
  structured, tied, non-finite, 1-class and 151-class logits, float32/float16/bfloat16, any strides, ragged target
  sizes in one launch, both of torch's code paths (generic, and channels-last taken for H + W <= 128 or
  channels-last logits with C > 3), int32 and int64 indexing.
- The pure-numpy reference (`reference_bilinear`) equals CPU torch's values bit for bit, and the kernel equals it
  under other arithmetic descriptions (no FMA: torch's DEFAULT build; one thread).
- The CUDA arithmetic (`TorchArithmetic.CUDA`, the default for CUDA logits: UpSampleBilinear2d.cu's formula with
  float32 weights, nvcc's contraction assumed) equals its numpy reference, and CPU torch's float32 generic path,
  which has the same formula. On a GPU the kernel's default labels are also compared with CUDA torch's: equal up
  to near-ties (an unverified contraction guess may move a value by an ulp); `make gpu-check` counts them.
- How often FMA contraction alone changes a label on realistic logits is measured (printed, not asserted).
"""

from __future__ import annotations  # noqa: I001 (triton_mode first: it skips this module without torch/triton)

import math

import numpy as np
import pytest
from triton_mode import DEVICE, torch

from fused_imgproc._kernels import segmentation as S

F = torch.nn.functional
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NP_NAME = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def torch_values(logits: torch.Tensor, i: int, size) -> torch.Tensor:
    return F.interpolate(logits[i][None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def check(logits: torch.Tensor, sizes, *, compare_cuda: bool = True, ties: bool = False,
          **kwargs) -> list[torch.Tensor]:
    """Runs the kernel on DEVICE and asserts its labels equal CPU torch's exactly (and, on a GPU, CUDA torch's up to
    near-ties, which `ties` says the logits were built to have). `logits` may live anywhere."""
    on_device = logits.to(DEVICE)
    kwargs.setdefault("arithmetic", S.TorchArithmetic.current())  # CPU torch's, on any device
    got = S.bilinear_argmax(on_device, sizes, **kwargs)
    host = logits.cpu()  # channels-last strides survive a copy: torch's CPU path choice stays the kernel's
    assert len(got) == len(sizes)
    for i, (size, labels) in enumerate(zip(sizes, got)):
        assert labels.dtype == torch.int64 and tuple(labels.shape) == tuple(size)
        assert labels.device == on_device.device
        expected = torch_values(host, i, size).argmax(dim=0)
        assert torch.equal(labels.cpu(), expected), f"image {i} {tuple(host.shape)} -> {size}: " \
            f"{int((labels.cpu() != expected).sum())} labels differ"
    if DEVICE == "cuda" and compare_cuda:  # the default on CUDA logits: CUDA torch's arithmetic
        for i, (size, labels) in enumerate(zip(sizes, S.bilinear_argmax(on_device, sizes))):
            assert_equal_up_to_near_ties(labels, torch_values(on_device, i, size), rare=not ties)
    return got


def assert_equal_up_to_near_ties(labels: torch.Tensor, values: torch.Tensor, rare: bool) -> None:
    """CUDA torch's own arithmetic: where its argmax differs from ours, its values of both classes must be within a
    few ulps of the logits' dtype (float32 weights against CPU torch's 16-bit ones move values by about an ulp of
    the largest logit), and for float32 logits such pixels rare unless the logits were built to tie."""
    expected = values.argmax(dim=0)
    differ = labels != expected
    if not bool(differ.any()):
        return
    ours = values.gather(0, labels[None])[0][differ].float()
    theirs = values.gather(0, expected[None])[0][differ].float()
    eps = torch.finfo(values.dtype).eps
    atol = 4 * eps * float(values.float().abs().max())
    assert torch.allclose(ours, theirs, rtol=4 * eps, atol=atol), (ours[:8], theirs[:8])
    if rare and values.dtype == torch.float32:  # a few pixels at most (tiny maps: a pixel is a large fraction)
        assert int(differ.sum()) <= max(2, 1e-3 * differ.numel())


def smooth_logits(rng, batch: int, classes: int, h: int, w: int, scale: float = 4.0) -> np.ndarray:
    """Low-frequency random fields per class (a few random cosines) plus a bias: logits that look like a model's."""
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.zeros((batch, classes, h, w), np.float64)
    for k in range(3):
        shape = (batch, classes, 1, 1)
        fy, fx = rng.uniform(0, 3, shape), rng.uniform(0, 3, shape)
        phase, amp = rng.uniform(0, 2 * np.pi, shape), rng.normal(0, 1, shape)
        out += amp * np.cos(2 * np.pi * (fy * y + fx * x) + phase)
    out += rng.normal(0, 1, (batch, classes, 1, 1))
    return (scale * out).astype(np.float32)


# Target sizes: up- and downscaling, equal, non-integer ratios, 1-pixel sides; H + W <= 128 takes torch's
# channels-last path, the 70 x 60 and 1 x 130 ones its generic path.
RAGGED = [(13, 20), (7, 9), (70, 60), (3, 2), (1, 130)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_random_logits_ragged_batch_in_one_launch(dtype, monkeypatch):
    launches = []
    real = S.launch_on
    monkeypatch.setattr(S, "launch_on", lambda *a, **k: (launches.append(a[1]), real(*a, **k)))
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.standard_normal((len(RAGGED), 19, 7, 9)).astype(np.float32)).to(dtype)
    check(logits, RAGGED)
    assert len(launches) == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("classes", [1, 3, 4, 17, 151])
def test_class_counts_across_torch_vector_and_tail_classes(classes, dtype):
    """torch's channels-last path computes the first C - C % lanes classes with vector code and the rest with scalar
    code, in different orders; the generic path is one formula."""
    rng = np.random.default_rng(classes)
    logits = torch.from_numpy(rng.standard_normal((2, classes, 6, 5)).astype(np.float32) * 3).to(dtype)
    labels = check(logits, [(11, 17), (40, 100)])
    if classes == 1:
        assert all(not bool(map_.any()) for map_ in labels)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_smooth_fields_and_one_pixel_sides(dtype):
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(smooth_logits(rng, 4, 12, 16, 12)).to(dtype)
    check(logits, [(1, 37), (29, 1), (16, 12), (8, 5)])
    one_row = torch.from_numpy(smooth_logits(rng, 2, 9, 1, 7)).to(dtype)  # 1-pixel logits sides
    check(one_row, [(5, 30), (1, 1)])
    check(one_row.transpose(2, 3), [(30, 5), (2, 150)])


def test_constant_logits_tie_everywhere_and_the_first_class_wins():
    logits = torch.full((2, 7, 4, 5), 0.25)
    labels = check(logits, [(9, 9), (80, 70)])
    assert all(not bool(map_.any()) for map_ in labels)


def test_one_hot_planes_and_exact_ties_between_two_classes():
    rng = np.random.default_rng(2)
    logits = torch.from_numpy(rng.standard_normal((2, 8, 6, 6)).astype(np.float32))
    logits[:, 5] = logits[:, 2]  # class 5 ties class 2 everywhere: 2 wins where they are the maximum
    logits[:, 6] = logits.max(dim=1).values  # at least the maximum at every logits pixel: wins between them
    labels = check(logits, [(13, 7), (64, 70)], ties=True)
    assert not any(bool((map_ == 5).any()) for map_ in labels)
    one_hot = torch.zeros(1, 4, 5, 5)
    one_hot[0, 3, 1:4, 1:4] = 1.0
    one_hot[0, 1, 0, :] = 1.0
    check(one_hot, [(23, 23)], ties=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_values_equal_only_after_rounding_to_the_dtype(dtype):
    """Two classes one ulp apart in the logits' dtype: their float32 interpolations differ, but torch rounds each to
    the dtype before the argmax, so many pixels tie and the first class wins there."""
    rng = np.random.default_rng(3)
    base = torch.from_numpy(rng.standard_normal((2, 1, 6, 7)).astype(np.float32)).to(dtype)
    up = (base.view(torch.int16) + 1).view(dtype)  # one ulp further from zero in the dtype
    logits = torch.cat([base, up, base], dim=1)
    labels = check(logits, [(17, 23), (100, 31)], ties=True)
    assert bool((labels[0] == 0).any()) and bool((labels[0] == 1).any())


def test_non_contiguous_logits():
    rng = np.random.default_rng(4)
    base = torch.from_numpy(rng.standard_normal((3, 10, 9, 8)).astype(np.float32)).to(DEVICE)  # views made there
    sizes = [(20, 17), (90, 40), (5, 4)]
    channels_last = base.contiguous(memory_format=torch.channels_last)  # C > 3: torch's channels-last path always
    check(channels_last, sizes)
    check(base[:, ::2], sizes)  # class slice
    check(base[:, :, 1:-1, ::3], sizes)  # spatial slice
    check(base[:, :1].expand(3, 6, 9, 8), sizes)  # stride 0 over classes: all tie, class 0
    check(base.transpose(2, 3).contiguous().transpose(2, 3), sizes)
    few = base[:, :3].contiguous(memory_format=torch.channels_last)  # C <= 3 channels-last: the generic path
    check(few, sizes)


def test_nan_and_inf_follow_torch():
    """NaN is the maximum (the first NaN wins); inf logits make NaN where a zero weight meets them (0 * inf), which
    torch's CPU kernel computes too (also at equal sizes). CUDA torch copies at equal sizes: CPU torch only here."""
    rng = np.random.default_rng(5)
    logits = torch.from_numpy(rng.standard_normal((3, 6, 5, 6)).astype(np.float32))
    logits[0, 2, 1, 1] = float("nan")
    logits[0, 4, 1, 2] = float("nan")
    logits[1, 1, 2, 3] = float("inf")
    logits[1, 3, 2, 3] = float("inf")
    logits[1, 0, 4, 5] = float("-inf")
    logits[2, :, 0, 0] = float("nan")
    logits[2, 5, 3, :] = float("inf")
    for dtype in DTYPES:
        check(logits.to(dtype), [(11, 13), (5, 6), (70, 80)], compare_cuda=False)


def test_int64_indexing(monkeypatch):
    """The int64 offset path, forced by pretending int32 ends at 10**4."""
    monkeypatch.setattr(S, "INT32_MAX", 10**4)
    rng = np.random.default_rng(6)
    logits = torch.from_numpy(rng.standard_normal((2, 5, 8, 7)).astype(np.float32))
    check(logits.transpose(1, 3), [(9, 4), (3, 30)])


def test_numpy_reference_equals_cpu_torch_values_bit_for_bit():
    arithmetic = S.TorchArithmetic.current()
    rng = np.random.default_rng(7)
    cases = [(19, 7, 9, (13, 20)), (19, 7, 9, (70, 60)), (151, 4, 5, (9, 31)), (3, 5, 6, (64, 80)), (17, 1, 6, (3, 3))]
    for dtype in DTYPES:
        for classes, h, w, size in cases:
            logits = torch.from_numpy(rng.standard_normal((1, classes, h, w)).astype(np.float32) * 5).to(dtype)
            expected = torch_values(logits, 0, size).float().numpy()
            got = S.reference_bilinear(logits[0].float().numpy(), size, dtype_name=NP_NAME[dtype],
                                       arithmetic=arithmetic)
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("arithmetic", [S.TorchArithmetic(fma=False), S.TorchArithmetic(single_thread=True),
                                        S.TorchArithmetic(lanes=16)], ids=["no-fma", "one-thread", "avx512"])
def test_other_cpu_builds_follow_the_numpy_reference(arithmetic):
    """The arithmetic of other torch builds (DEFAULT: no FMA; one thread; 16 float lanes), against the numpy
    reference evaluated for them (the DEFAULT formulas were checked against torch under ATEN_CPU_CAPABILITY=default
    when the kernel was written)."""
    rng = np.random.default_rng(8)
    for dtype in DTYPES:
        logits = torch.from_numpy(rng.standard_normal((3, 35, 5, 4)).astype(np.float32)).to(dtype)
        sizes = [(9, 11), (80, 61), (6, 1)]
        got = S.bilinear_argmax(logits.to(DEVICE), sizes, arithmetic=arithmetic)
        for i, size in enumerate(sizes):
            expected = S.reference_labels(logits[i].float().numpy(), size, dtype_name=NP_NAME[dtype],
                                          arithmetic=arithmetic)
            np.testing.assert_array_equal(got[i].cpu().numpy(), expected)
    three = torch.from_numpy(rng.standard_normal((1, 3, 5, 4)).astype(np.float32))
    got = S.bilinear_argmax(three.to(DEVICE), [(70, 90)], arithmetic=arithmetic)[0]
    np.testing.assert_array_equal(got.cpu().numpy(), S.reference_labels(three[0].numpy(), (70, 90),
                                                                         arithmetic=arithmetic))


def label_changes(values: np.ndarray, size, a: S.TorchArithmetic, b: S.TorchArithmetic, **kwargs) -> tuple[int, int]:
    la = S.reference_labels(values, size, arithmetic=a, **kwargs)
    lb = S.reference_labels(values, size, arithmetic=b, **kwargs)
    return int((la != lb).sum()), la.size


def test_fma_contraction_label_difference_rate(record_property):
    """Measured, not asserted: on realistic logits (150 smooth classes, 32x32 -> 128x128, torch's generic path) how
    many labels FMA contraction alone changes (torch's AVX2 build against its DEFAULT build; the 2-level FMA formula
    is also the plausible contraction of UpSampleBilinear2d.cu for float32), plus near-tie constructions. The
    kernel's labels on the realistic batch equal CPU torch's."""
    rng = np.random.default_rng(9)
    logits = smooth_logits(rng, 2, 150, 32, 32)
    fma, plain = S.TorchArithmetic(fma=True), S.TorchArithmetic(fma=False)
    changed = total = 0
    for image in logits:
        c, t = label_changes(image, (128, 128), fma, plain)
        changed, total = changed + c, total + t
    near = logits[:1].copy()
    near[0, 1] = near[0, 0]  # class 1 is class 0, nudged up by one ulp in every other row
    near[0, 1, ::2] = np.nextafter(near[0, 0, ::2], np.float32(np.inf))
    near[0, 2:] -= 100  # classes 0 and 1 are the only candidates
    near_changed, near_total = label_changes(near[0], (128, 128), fma, plain)
    generic = S.reference_labels(logits[0], (128, 128), path="generic")
    channels_last = S.reference_labels(logits[0], (128, 128), path="channels_last")
    paths_changed = int((generic != channels_last).sum())
    report = {
        "realistic_fma_vs_no_fma": f"{changed}/{total} = {changed / total:.2e}",
        "near_tie_fma_vs_no_fma": f"{near_changed}/{near_total} = {near_changed / near_total:.2e}",
        "realistic_generic_vs_channels_last_path": f"{paths_changed}/{generic.size}",
    }
    for key, value in report.items():
        record_property(key, value)
    print(report)
    check(torch.from_numpy(logits), [(128, 128), (128, 128)])


def test_bad_inputs_are_refused():
    logits = torch.zeros(2, 3, 4, 4, device=DEVICE)
    with pytest.raises(ValueError, match="as many target sizes as the batch dimension of the logits"):
        S.bilinear_argmax(logits, [(4, 4)])
    with pytest.raises(ValueError, match="4-D"):
        S.bilinear_argmax(logits[0], [(4, 4)] * 3)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        S.bilinear_argmax(logits.to(torch.int64), [(4, 4)] * 2)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        S.bilinear_argmax(logits.double(), [(4, 4)] * 2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        S.bilinear_argmax(np.zeros((2, 3, 4, 4), np.float32), [(4, 4)] * 2)
    with pytest.raises(ValueError, match="at least one class"):
        S.bilinear_argmax(torch.zeros(2, 0, 4, 4, device=DEVICE), [(4, 4)] * 2)
    for sizes in ([(4, 0), (4, 4)], [(4, 4), (-1, 3)]):
        with pytest.raises(ValueError, match="positive integers"):
            S.bilinear_argmax(logits, sizes)
    for sizes in ([(4, 4, 4), (4, 4)], [4, (4, 4)], [(4,), (4, 4)], ["ab", (4, 4)]):
        with pytest.raises(ValueError, match=r"\(height, width\) pair"):
            S.bilinear_argmax(logits, sizes)
    for sizes in ([(4.0, 4), (4, 4)], [(True, 4), (4, 4)], torch.ones(2, 2)):
        with pytest.raises(TypeError, match="integers"):
            S.bilinear_argmax(logits, sizes)
    with pytest.raises(TypeError, match="sequence"):
        S.bilinear_argmax(logits, 4)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        S.bilinear_argmax(logits, torch.ones(2, 3, dtype=torch.int64))
    if DEVICE == "cuda":
        with pytest.raises(ValueError, match="CUDA device"):
            S.bilinear_argmax(logits.cpu(), [(4, 4)] * 2)


def test_sizes_as_a_tensor_and_numpy_ints_and_an_empty_batch():
    rng = np.random.default_rng(10)
    logits = torch.from_numpy(rng.standard_normal((2, 5, 4, 6)).astype(np.float32))
    by_list = S.bilinear_argmax(logits.to(DEVICE), [(np.int64(7), 9), (3, 14)])
    by_tensor = S.bilinear_argmax(logits.to(DEVICE), torch.tensor([[7, 9], [3, 14]]))
    assert all(torch.equal(a, b) for a, b in zip(by_list, by_tensor))
    assert S.bilinear_argmax(torch.zeros(0, 5, 4, 6, device=DEVICE), []) == []
    assert math.prod(by_list[0].shape) == 63


# --- CUDA torch's arithmetic (TorchArithmetic.CUDA) --------------------------------------------------------------

CUDA_SIZES = [(13, 20), (7, 9), (70, 60), (3, 2), (1, 130), (6, 5)]  # the last: the logits' own size (a copy)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_arithmetic_equals_its_reference(dtype):
    rng = np.random.default_rng(7)
    logits = torch.from_numpy(smooth_logits(rng, len(CUDA_SIZES), 11, 6, 5)).to(dtype)
    logits[0, 3, 2, 2] = float("inf")
    got = S.bilinear_argmax(logits.to(DEVICE), CUDA_SIZES, arithmetic=S.TorchArithmetic.CUDA)
    for i, (size, labels) in enumerate(zip(CUDA_SIZES, got)):
        values = logits[i].float().numpy()
        expected = S.reference_labels(values, size, dtype_name=NP_NAME[dtype], arithmetic=S.TorchArithmetic.CUDA)
        assert np.array_equal(labels.cpu().numpy(), expected), (i, size)


@pytest.mark.skipif(not S.TorchArithmetic.current().fma, reason="this CPU torch does not contract into FMAs")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_arithmetic_is_cpu_torchs_generic_formula_in_float32(dtype):
    """On sizes where CPU torch takes its generic path (H + W > 128, sizes differ) its float32 arithmetic is the
    formula assumed for CUDA torch; 16-bit logits are interpolated in float32 with float32 weights and rounded once,
    which is F.interpolate on the float32 logits, rounded."""
    rng = np.random.default_rng(8)
    sizes = [(70, 60), (1, 130), (129, 3)]
    logits = torch.from_numpy(smooth_logits(rng, len(sizes), 9, 7, 6)).to(dtype)
    got = S.bilinear_argmax(logits.to(DEVICE), sizes, arithmetic=S.TorchArithmetic.CUDA)
    for i, (size, labels) in enumerate(zip(sizes, got)):
        expected = torch_values(logits.float(), i, size).to(dtype).argmax(dim=0)
        assert torch.equal(labels.cpu(), expected), (i, size)
