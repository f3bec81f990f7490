"""Segmentation post-processing speed: our `post_process_semantic_segmentation` against transformers'
`SegformerImageProcessorPil`'s, same run, on Segformer-B0 ADE20K-shaped logits (150 classes at 128 x 128, target
512 x 512), and the host work of the fused GPU path.

    make bench        # or: .venv/bin/python -m pytest benchmarks/test_bench_segmentation.py --benchmark-only

CPU: our CPU path is transformers' own arithmetic (bilinear `interpolate`, then `argmax`), so the ratio measures
only the call's overhead; the fused kernel runs on CUDA logits (benchmarks/gpu, `make gpu-check`). Our case also
times transformers' post-processing right after itself (3 calls) and reports both medians, the ratio of the
medians (`ratio_vs_transformers_pil`: above 1 ours is faster) and of the minimums in `extra_info`.

Host work: the fused path under Triton's interpreter on CPU tensors with the kernel launch replaced by a no-op:
what is timed is what a GPU call does on the host (checks, the per-image table, the launch's arguments).

The logits are smooth random fields (low-resolution noise, upsampled), like a model's. Nothing here asserts a time:
the equality checks only make sure a speed is never that of a wrong answer.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from host_mode import host_skip_reason, record_ratio

HOST_SKIP = host_skip_reason(torch)

import fused_imgproc as fi

if HOST_SKIP is None:
    from triton.runtime import interpreter


class Outputs:
    def __init__(self, logits):
        self.logits = logits


def ade20k_logits(batch: int, seed: int = 0) -> torch.Tensor:
    """Segformer-B0 ADE20K-shaped logits (batch, 150, 128, 128): per-class smooth fields."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 150, 16, 16, generator=generator) * 4
    return torch.nn.functional.interpolate(coarse, size=(128, 128), mode="bilinear", align_corners=False)


TARGET = (512, 512)
# batch 16 is the GPU benchmark's (benchmarks/gpu); on the CPU one such batch takes 7-11 s per implementation here,
# so the CPU cases stop at 4. The host-work case takes both.
CASES = {"batch1": 1, "batch4": 4, "batch16": 16}
CPU_CASES = ["batch1", "batch4"]
IMPLEMENTATIONS = {
    "fused_imgproc": fi.SegformerImageProcessor(),
    "transformers": transformers.SegformerImageProcessorPil(),
}
REFERENCE_REPEATS = 3


def _labels(processor, outputs) -> list:
    return processor.post_process_semantic_segmentation(outputs, target_sizes=[TARGET] * len(outputs.logits))


@pytest.fixture(scope="module")
def logits():
    return {name: Outputs(ade20k_logits(batch)) for name, batch in CASES.items()}


@pytest.fixture(scope="module")
def reference_labels(logits):
    return {name: _labels(IMPLEMENTATIONS["transformers"], logits[name]) for name in CPU_CASES}


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("case", CPU_CASES)
def test_post_process_cpu(benchmark, logits, reference_labels, case, impl):
    benchmark.group = f"Segformer-B0 ADE20K post-processing {case} (150x128x128 -> 512x512), CPU"
    processor, outputs = IMPLEMENTATIONS[impl], logits[case]
    labels = benchmark.pedantic(lambda: _labels(processor, outputs), rounds=3 if case == "batch1" else 1,
                                iterations=1)
    assert all(torch.equal(a, b) for a, b in zip(labels, reference_labels[case], strict=True))
    if impl == "fused_imgproc":
        record_ratio(benchmark, lambda: _labels(IMPLEMENTATIONS["transformers"], outputs), REFERENCE_REPEATS)


@pytest.mark.skipif(HOST_SKIP is not None, reason=HOST_SKIP or "")
@pytest.mark.parametrize("case", list(CASES))
def test_host_post_process_fused(benchmark, monkeypatch, logits, case):
    """The fused path's host work per call (kernel launch stubbed): the labels are allocated, not computed."""
    monkeypatch.setattr(interpreter.InterpretedFunction, "run", lambda self, *args, **kwargs: None)
    benchmark.group = "Segmentation post-processing host work per call (fused path, launch stubbed)"
    processor = fi.SegformerImageProcessor(backend="triton")
    outputs = logits[case]
    labels = benchmark(lambda: _labels(processor, outputs))
    assert len(labels) == len(outputs.logits) and all(tuple(x.shape) == TARGET for x in labels)
    assert all(x.dtype == torch.int64 for x in labels)
    if benchmark.stats is not None:
        benchmark.extra_info["median_us"] = round(benchmark.stats.stats.median * 1e6, 1)
