"""The kernels compile for a Hopper GPU (sm_90) even where there is none, and the PTX keeps the reference's
arithmetic: correctly rounded fp32 division, fp64 rescale, no contraction into FMAs.

The interpreter accepts code the compiler rejects, and computes `/` with numpy (correctly rounded) where the GPU
would not: this test compiles the real kernels with Triton's own ptxas, in a subprocess without TRITON_INTERPRET.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")
pytest.importorskip("torch")

SCRIPT = textwrap.dedent(
    """
    import json, re, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from fused_imgproc._kernels import crop_normalize as K, resample as RK

    target = GPUTarget("cuda", 90, 32)
    flags = ["MAX_C", "FLOAT_SRC", "DO_RESCALE", "DO_NORMALIZE", "ROUND_BF16", "CHANNELS_LAST", "PATCH", "MERGE",
             "TEMPORAL", "INDEX_64", "BLOCK"]
    report = {}
    for name, src, table, out, float_src, index_64, patch in [
        ("uint8-fp32", "*u8", "*fp32", "*fp32", False, False, (0, 1, 1)),
        ("uint8-bf16-int64", "*u8", "*bf16", "*bf16", False, True, (0, 1, 1)),
        ("fp32-bf16", "*fp32", "*fp64", "*bf16", True, False, (0, 1, 1)),
        ("uint8-fp32-patches", "*u8", "*fp32", "*fp32", False, False, (14, 2, 2)),
        ("fp32-bf16-patches-int64", "*fp32", "*fp64", "*bf16", True, True, (16, 2, 2)),
    ]:
        signature = {"src_ptr": src, "desc_ptr": "*i64", "table_ptr": table,
                     "params_ptr": "*fp64" if float_src else table, "out_ptr": out, "tiles_per_image": "i32",
                     **{f: "constexpr" for f in flags}}
        constexprs = dict(MAX_C=3, FLOAT_SRC=float_src, DO_RESCALE=True, DO_NORMALIZE=True,
                          ROUND_BF16=float_src and out == "*bf16", CHANNELS_LAST=False, PATCH=patch[0],
                          MERGE=patch[1], TEMPORAL=patch[2], INDEX_64=index_64, BLOCK=1024)
        ptx = triton.compile(ASTSource(K._crop_normalize_kernel, signature, constexprs), target=target).asm["ptx"]
        ops = ["div.rn.f32", r"div\\.(approx|full)", "fma", r"mul(\\.rn)?\\.f64"]
        report[name] = {op: len(re.findall(op, ptx)) for op in ops}
    signature = {"src_ptr": "*u8", "dst_ptr": "*u8", "desc_ptr": "*i64", "coef_ptr": "*i32", "tiles_ptr": "*i32",
                 "CP": "constexpr", "TAPS": "constexpr", "BLOCK": "constexpr"}
    for cp in (1, 4):
        kernel = triton.compile(ASTSource(RK._resample_kernel, signature, dict(CP=cp, TAPS=RK.TAPS, BLOCK=RK.BLOCK)),
                                target=target)
        report[f"resample-{cp}"] = {"cubin": len(kernel.asm["cubin"])}
    print(json.dumps(report))
    """
)


def test_kernels_compile_for_sm90_with_the_reference_arithmetic():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # the current default, stated (the test checks no FMA appears anyway)
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0 and "ptxas" in result.stderr and "not found" in result.stderr.lower():
        pytest.skip(f"this Triton install cannot compile for CUDA here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("fp32-bf16", "fp32-bf16-patches-int64"):
        assert report[name]["div.rn.f32"] > 0  # tl.math.div_rn, as the reference divides
        assert report[name][r"mul(\.rn)?\.f64"] > 0  # float32(float64(x) * scale), no FMA after it
    for name in ("uint8-fp32", "uint8-bf16-int64", "fp32-bf16", "uint8-fp32-patches", "fp32-bf16-patches-int64"):
        assert report[name][r"div\.(approx|full)"] == 0 and report[name]["fma"] == 0, (name, report[name])
    assert report["resample-1"]["cubin"] > 0 and report["resample-4"]["cubin"] > 0


SEGMENTATION_SCRIPT = textwrap.dedent(
    """
    import json, re, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from fused_imgproc._kernels import segmentation as S

    target = GPUTarget("cuda", 90, 32)
    ints = ["channels", "in_h", "in_w", "sb", "sc", "sh", "sw", "vector_classes", "tiles_per_image"]
    flags = ["DTYPE", "FMA", "CUDA", "VEC_ORDER", "TAIL_ORDER", "INDEX_64", "BLOCK"]
    block, num_warps = S._block_size(1 << 20)
    report = {}
    for name, ptr, dtype_name, fma, index_64, cuda in [
        ("fp32-fma", "*fp32", "float32", True, False, False),
        ("fp32-plain", "*fp32", "float32", False, False, False),
        ("bf16-fma-int64", "*bf16", "bfloat16", True, True, False),
        ("fp16-plain-int64", "*fp16", "float16", False, True, False),
        ("fp32-fma-cuda", "*fp32", "float32", True, False, True),  # TorchArithmetic.CUDA: what a GPU launches
        ("bf16-fma-cuda", "*bf16", "bfloat16", True, False, True),
    ]:
        signature = {"logits_ptr": ptr, "desc_ptr": "*i64", "out_ptr": "*i64", **{k: "i32" for k in ints},
                     **{f: "constexpr" for f in flags}}
        vec_order, tail_order = S._orders(dtype_name)
        constexprs = dict(DTYPE=["float32", "float16", "bfloat16"].index(dtype_name), FMA=fma, CUDA=cuda,
                          VEC_ORDER=S._ORDER_CODE[vec_order], TAIL_ORDER=S._ORDER_CODE[tail_order], INDEX_64=index_64,
                          BLOCK=block)
        for fusion in (False, True):  # False: as launched; True: what contraction would add
            options = {"enable_fp_fusion": fusion, "num_warps": num_warps}
            kernel = triton.compile(ASTSource(S._bilinear_argmax_kernel, signature, constexprs), target=target,
                                    options=options)
            ptx = kernel.asm["ptx"]
            report[f"{name}-fusion-{fusion}"] = {op: len(re.findall(op, ptx))
                                                 for op in ["div.rn.f32", r"div\\.(approx|full)", r"\\bfma"]}
    print(json.dumps(report))
    """
)


def test_segmentation_kernel_compiles_for_sm90_with_torchs_arithmetic():
    """`_bilinear_argmax_kernel` as launched (`enable_fp_fusion=False`): correctly rounded division for the scale,
    no FMA at all in the no-FMA variant (torch's DEFAULT build), and in the FMA variant (its AVX2 build) exactly the
    explicit `tl.fma`s: allowing contraction adds none, so no multiply-add is left for the compiler to fuse."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    result = subprocess.run([sys.executable, "-c", SEGMENTATION_SCRIPT], capture_output=True, text=True, env=env,
                            timeout=600, check=False)
    if result.returncode != 0 and "ptxas" in result.stderr and "not found" in result.stderr.lower():
        pytest.skip(f"this Triton install cannot compile for CUDA here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, counts in report.items():
        assert counts["div.rn.f32"] > 0 and counts[r"div\.(approx|full)"] == 0, (name, counts)
    for name in ("fp32-plain", "fp16-plain-int64"):
        assert report[f"{name}-fusion-False"][r"\bfma"] == 0, report[f"{name}-fusion-False"]
        assert report[f"{name}-fusion-True"][r"\bfma"] > 0  # contraction would change the arithmetic: it is off
    for name in ("fp32-fma", "bf16-fma-int64", "fp32-fma-cuda", "bf16-fma-cuda"):
        explicit = report[f"{name}-fusion-False"][r"\bfma"]
        assert explicit > 0 and report[f"{name}-fusion-True"][r"\bfma"] == explicit, (name, report)
