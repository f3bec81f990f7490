"""Tests for `fused_imgproc.batch`: `BatchFeature` and `TensorType`, compared with transformers where they agree."""

import collections
import copy
import importlib.util
import pickle
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from fused_imgproc.batch import BatchFeature, TensorType

try:
    from transformers import BatchFeature as HFBatchFeature
except ImportError:  # pragma: no cover - transformers is a test dependency
    HFBatchFeature = None

needs_hf = pytest.mark.skipif(HFBatchFeature is None, reason="transformers is not installed")
ROUNDTRIPS = pytest.mark.parametrize(
    "roundtrip", [lambda bf: pickle.loads(pickle.dumps(bf)), copy.deepcopy], ids=["pickle", "deepcopy"]
)


def _images(n=3, shape=(3, 5, 7), dtype=np.float32):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(shape) + i).astype(dtype) for i in range(n)]


# --- TensorType ---


def test_tensor_type_values():
    assert TensorType.PYTORCH == "pt" and TensorType("pt") is TensorType.PYTORCH
    assert TensorType.NUMPY == "np" and TensorType("np") is TensorType.NUMPY
    assert TensorType.JAX == "jax" and TensorType("jax") is TensorType.JAX
    assert TensorType.TENSORFLOW == "tf" and TensorType("tf") is TensorType.TENSORFLOW
    assert isinstance(TensorType.NUMPY, str)


def test_tensor_type_invalid_lists_valid_values():
    with pytest.raises(ValueError) as info:
        TensorType("foo")
    message = str(info.value)
    assert "foo" in message
    for valid in ("pt", "np", "jax", "tf"):
        assert f"'{valid}'" in message


@needs_hf
def test_tensor_type_accepts_transformers_enum():
    from transformers import TensorType as HFTensorType

    assert TensorType(HFTensorType.PYTORCH) is TensorType.PYTORCH
    assert TensorType(HFTensorType.NUMPY) is TensorType.NUMPY
    bf = BatchFeature({"x": [np.ones(2), np.ones(2)]}, tensor_type=HFTensorType.NUMPY)
    assert isinstance(bf["x"], np.ndarray) and bf["x"].shape == (2, 2)


# --- Dictionary behaviour and attribute access ---


def test_is_userdict_not_dict():
    bf = BatchFeature({"pixel_values": np.zeros(1)})
    assert isinstance(bf, collections.UserDict)
    assert not isinstance(bf, dict)
    assert isinstance(bf.data, dict)
    if HFBatchFeature is not None:
        assert isinstance(HFBatchFeature(), collections.UserDict) and not isinstance(HFBatchFeature(), dict)


def test_empty_and_default_construction():
    assert len(BatchFeature()) == 0
    assert BatchFeature().data == {}
    assert len(BatchFeature(None, tensor_type="np")) == 0


def test_mapping_interface():
    pixel_values, sizes = np.ones((2, 3)), [[4, 5], [6, 7]]
    bf = BatchFeature({"pixel_values": pixel_values, "image_sizes": sizes})
    assert bf["pixel_values"] is pixel_values
    assert list(bf.keys()) == ["pixel_values", "image_sizes"]
    first, second = bf.values()
    assert first is pixel_values and second is sizes
    assert dict(bf.items()) == {"pixel_values": pixel_values, "image_sizes": sizes}
    assert "pixel_values" in bf and "missing" not in bf
    assert len(bf) == 2
    assert bf.get("missing") is None and bf.get("image_sizes") is sizes
    assert dict(**bf)["image_sizes"] is sizes
    bf["extra"] = 1
    assert bf.extra == 1
    del bf["extra"]
    assert "extra" not in bf


def test_attribute_access():
    pixel_values = np.arange(6).reshape(2, 3)
    bf = BatchFeature({"pixel_values": pixel_values})
    assert bf.pixel_values is pixel_values
    assert bf.data is bf.__dict__["data"]


def test_missing_attribute_raises_attribute_error_not_key_error():
    bf = BatchFeature({"pixel_values": np.zeros(1)})
    with pytest.raises(AttributeError, match="missing") as info:
        _ = bf.missing
    assert not isinstance(info.value, KeyError)
    assert info.value.name == "missing"
    assert not hasattr(bf, "missing")
    assert getattr(bf, "missing", "default") == "default"
    if HFBatchFeature is not None:
        with pytest.raises(AttributeError):
            _ = HFBatchFeature({"x": 1}).missing


def test_missing_and_integer_keys_raise_key_error():
    bf = BatchFeature({"pixel_values": np.zeros(1)})
    with pytest.raises(KeyError):
        bf["missing"]
    with pytest.raises(KeyError, match="Indexing with integers"):
        bf[0]
    if HFBatchFeature is not None:
        with pytest.raises(KeyError, match="Indexing with integers"):
            HFBatchFeature({"pixel_values": np.zeros(1)})[0]


def test_getattr_without_data_does_not_recurse():
    bare = BatchFeature.__new__(BatchFeature)  # what pickle / deepcopy create before __setstate__
    with pytest.raises(AttributeError):
        _ = bare.data
    with pytest.raises(AttributeError):
        _ = bare.pixel_values
    assert not hasattr(bare, "__deepcopy__")


def test_dunder_lookups_do_not_hit_data():
    bf = BatchFeature({"__array__": "not a method"})
    assert not hasattr(bf, "__array__")
    assert bf["__array__"] == "not a method"


# --- convert_to_tensors: NumPy ---


def test_none_tensor_type_is_a_noop():
    images = _images()
    bf = BatchFeature({"pixel_values": images})
    assert bf.convert_to_tensors(None) is bf
    assert bf["pixel_values"] is images


@pytest.mark.parametrize("tensor_type", ["np", TensorType.NUMPY])
def test_np_stacks_list_of_arrays(tensor_type):
    images = _images(dtype=np.float32)
    bf = BatchFeature({"pixel_values": images}, tensor_type=tensor_type)
    out = bf["pixel_values"]
    assert isinstance(out, np.ndarray)
    assert out.shape == (3, 3, 5, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.stack(images))


def test_np_stacks_tuple_and_nested_lists_of_arrays():
    frames = _images(n=2, shape=(3, 4, 4))
    videos = [frames, [f * 2 for f in frames]]
    bf = BatchFeature({"pixel_values_videos": videos, "t": tuple(frames)}, tensor_type="np")
    assert bf["pixel_values_videos"].shape == (2, 2, 3, 4, 4)
    np.testing.assert_array_equal(bf["pixel_values_videos"][1, 0], frames[0] * 2)
    assert bf["t"].shape == (2, 3, 4, 4)


def test_np_converts_python_numbers_and_lists():
    bf = BatchFeature({"sizes": [[224, 224], [112, 96]], "scalar": 3, "flag": True, "f": 0.5}, tensor_type="np")
    assert bf["sizes"].dtype == np.int64 and bf["sizes"].tolist() == [[224, 224], [112, 96]]
    assert bf["scalar"].shape == () and bf["scalar"] == 3
    assert bf["flag"].dtype == np.bool_
    assert bf["f"].dtype == np.float64


def test_np_keeps_numpy_arrays_identical():
    pixel_values = np.ones((2, 3, 4, 4), dtype=np.float16)
    bf = BatchFeature({"pixel_values": pixel_values}, tensor_type="np")
    assert bf["pixel_values"] is pixel_values


def test_np_matches_transformers_dtypes_and_values():
    if HFBatchFeature is None:
        pytest.skip("transformers is not installed")
    data = {
        "pixel_values": _images(dtype=np.float32),
        "uint8": [np.full((2, 2), 7, dtype=np.uint8)] * 2,
        "sizes": [[3, 4], [5, 6]],
        "scalar": 5,
    }
    ours = BatchFeature(dict(data), tensor_type="np")
    theirs = HFBatchFeature(dict(data), tensor_type="np")
    assert list(ours.keys()) == list(theirs.keys())
    for key in data:
        assert ours[key].dtype == theirs[key].dtype, key
        np.testing.assert_array_equal(ours[key], theirs[key])


def test_non_numeric_values_are_left_alone():
    strings, none, mapping, text = ["a", "b"], None, {"a": 1}, "hello"
    data = {"strings": strings, "none": none, "mapping": mapping, "text": text, "nones": [None, None]}
    for tensor_type in ("np",) + (("pt",) if importlib.util.find_spec("torch") else ()):
        bf = BatchFeature(dict(data), tensor_type=tensor_type)
        assert bf["strings"] is strings and bf["mapping"] is mapping and bf["text"] is text
        assert bf["none"] is None and bf["nones"] == [None, None]
        if HFBatchFeature is not None:
            theirs = HFBatchFeature(dict(data), tensor_type=tensor_type)
            assert theirs["strings"] is strings and theirs["mapping"] is mapping


def test_skip_tensor_conversion():
    sizes = [[1, 2], [3, 4]]
    bf = BatchFeature({"sizes": sizes, "other": [[1, 2]]}, tensor_type="np", skip_tensor_conversion=["sizes"])
    assert bf["sizes"] is sizes
    assert isinstance(bf["other"], np.ndarray)
    bf2 = BatchFeature({"sizes": sizes}, skip_tensor_conversion={"sizes"})
    bf2.convert_to_tensors("np")
    assert bf2["sizes"] is sizes
    assert bf2.convert_to_tensors("np", skip_tensor_conversion=[]) is bf2
    assert isinstance(bf2["sizes"], np.ndarray)


@pytest.mark.parametrize(
    "ragged",
    [
        [np.ones((3, 4, 4)), np.ones((3, 5, 4))],
        [np.ones((4, 4, 3)), np.ones((5, 4, 3))],
        [np.ones(2), np.ones(3)],
        [[1, 2], [3]],
    ],
    ids=["chw", "hwc", "1d", "lists"],
)
@pytest.mark.parametrize("tensor_type", ["np", "pt"])
def test_ragged_raises_value_error_mentioning_padding(ragged, tensor_type):
    if tensor_type == "pt":
        pytest.importorskip("torch")
    with pytest.raises(ValueError, match="padding") as info:
        BatchFeature({"pixel_values": ragged}, tensor_type=tensor_type)
    assert "pixel_values" in str(info.value)


def test_unknown_tensor_type_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        BatchFeature({"x": [1]}, tensor_type="mlx")
    message = str(info.value)
    assert "mlx" in message
    for valid in ("pt", "np", "jax", "tf"):
        assert valid in message


@pytest.mark.parametrize(
    ("tensor_type", "module", "pretty"), [("jax", "jax", "JAX"), ("tf", "tensorflow", "TensorFlow")]
)
def test_missing_framework_raises_import_error(tensor_type, module, pretty):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed; the ImportError path cannot be exercised")
    with pytest.raises(ImportError, match=pretty) as info:
        BatchFeature({"x": [np.ones(2)]}, tensor_type=tensor_type)
    assert module in str(info.value)


def test_missing_torch_raises_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    bf = BatchFeature({"x": [np.ones(2), np.ones(2)]})
    with pytest.raises(ImportError, match="torch"):
        bf.convert_to_tensors("pt")
    with pytest.raises(ImportError, match="torch"):
        bf.to("cpu")
    assert bf.convert_to_tensors("np")["x"].shape == (2, 2)  # NumPy still works without torch


def test_module_imports_and_converts_to_numpy_without_torch():
    code = textwrap.dedent(
        """
        import sys
        import fused_imgproc.batch
        assert "torch" not in sys.modules, "importing fused_imgproc.batch loaded torch"
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from fused_imgproc.batch import BatchFeature
        bf = BatchFeature({"x": [[1, 2], [3, 4]], "s": ["a"]}, tensor_type="np")
        assert bf.x.shape == (2, 2), bf.x
        try:
            bf.convert_to_tensors("pt")
        except ImportError as e:
            assert "torch" in str(e), e
        else:
            raise AssertionError("no ImportError")
        print("ok")
        """
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- convert_to_tensors: PyTorch ---


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.int64])
def test_pt_stacks_list_of_arrays(dtype):
    torch = pytest.importorskip("torch")
    images = _images(dtype=np.float32)
    images = [(im * 10).astype(dtype) for im in images]
    bf = BatchFeature({"pixel_values": images}, tensor_type="pt")
    out = bf["pixel_values"]
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 3, 5, 7)
    assert out.dtype == torch.from_numpy(np.zeros(1, dtype=dtype)).dtype
    np.testing.assert_array_equal(out.numpy(), np.stack(images))
    if HFBatchFeature is not None:
        theirs = HFBatchFeature({"pixel_values": images}, tensor_type="pt")["pixel_values"]
        assert theirs.dtype == out.dtype and torch.equal(theirs, out)


def test_pt_from_array_shares_memory():
    torch = pytest.importorskip("torch")
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = BatchFeature({"x": array}, tensor_type="pt")["x"]
    assert isinstance(out, torch.Tensor)
    assert np.shares_memory(out.numpy(), array)  # zero-copy, like transformers' torch.from_numpy


def test_pt_from_negative_stride_and_big_endian_arrays():
    torch = pytest.importorskip("torch")
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    flipped = BatchFeature({"x": array[:, ::-1]}, tensor_type="pt")["x"]
    assert torch.equal(flipped, torch.from_numpy(array.copy()).flip(1))
    big = array.astype(">f4")
    out = BatchFeature({"x": big}, tensor_type="pt")["x"]
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(array))


def test_pt_stacks_list_of_tensors_and_nested_lists():
    torch = pytest.importorskip("torch")
    tensors = [torch.randn(3, 4, 4) for _ in range(2)]
    bf = BatchFeature({"x": tensors, "nested": [tensors, tensors], "arrays": [[np.ones(2)] * 2] * 3}, tensor_type="pt")
    assert torch.equal(bf["x"], torch.stack(tensors))
    assert bf["nested"].shape == (2, 2, 3, 4, 4)
    assert bf["arrays"].shape == (3, 2, 2) and bf["arrays"].dtype == torch.float64


def test_pt_converts_python_numbers():
    torch = pytest.importorskip("torch")
    bf = BatchFeature({"sizes": [[224, 224]], "scalar": 3, "f": np.float32(0.5), "empty": []}, tensor_type="pt")
    assert bf["sizes"].dtype == torch.int64 and bf["sizes"].tolist() == [[224, 224]]
    assert bf["scalar"].shape == () and bf["scalar"].item() == 3
    assert bf["f"].dtype == torch.float32
    assert bf["empty"].shape == (0,)
    if HFBatchFeature is not None:
        theirs = HFBatchFeature({"sizes": [[224, 224]], "scalar": 3, "f": np.float32(0.5)}, tensor_type="pt")
        for key in ("sizes", "scalar", "f"):
            assert theirs[key].dtype == bf[key].dtype


def test_pt_keeps_tensors_identical():
    torch = pytest.importorskip("torch")
    pixel_values = torch.randn(2, 3, 4, 4)
    bf = BatchFeature({"pixel_values": pixel_values}, tensor_type="pt")
    assert bf["pixel_values"] is pixel_values
    assert bf.convert_to_tensors(TensorType.PYTORCH)["pixel_values"] is pixel_values


def test_pt_ragged_tensors_raise_value_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="padding"):
        BatchFeature({"x": [torch.ones(2), torch.ones(3)]}, tensor_type="pt")


def test_np_from_tensors():
    torch = pytest.importorskip("torch")
    tensor = torch.randn(2, 3)
    bf = BatchFeature({"x": tensor, "l": [tensor, tensor], "g": torch.ones(2, requires_grad=True)}, tensor_type="np")
    assert isinstance(bf["x"], np.ndarray) and bf["x"].dtype == np.float32
    np.testing.assert_array_equal(bf["x"], tensor.numpy())
    assert bf["l"].shape == (2, 2, 3)
    assert isinstance(bf["g"], np.ndarray)


@pytest.mark.parametrize("as_list", [False, True])
def test_bfloat16_to_np_casts_to_float32(as_list):
    torch = pytest.importorskip("torch")
    tensor = torch.tensor([[1.5, -2.25], [3.0, 0.1]], dtype=torch.bfloat16)
    value = [tensor, tensor] if as_list else tensor
    out = BatchFeature({"x": value}, tensor_type="np")["x"]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    expected = tensor.float().numpy()
    np.testing.assert_array_equal(out, np.stack([expected] * 2) if as_list else expected)


def test_cuda_tensor_is_kept_for_pt():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    tensor = torch.randn(2, 3, device="cuda")
    bf = BatchFeature({"x": tensor, "l": [tensor, tensor]}, tensor_type="pt")
    assert bf["x"] is tensor
    assert bf["l"].device == tensor.device
    out = BatchFeature({"x": tensor.bfloat16()}, tensor_type="np")["x"]
    np.testing.assert_array_equal(out, tensor.bfloat16().float().cpu().numpy())


# --- to() ---


def _torch_batch(torch):
    Pair = namedtuple("Pair", "a b")
    return BatchFeature(
        {
            "pixel_values": torch.randn(2, 3, 4, 4),
            "mask": torch.ones(2, 4, 4, dtype=torch.int64),
            "flags": torch.ones(2, dtype=torch.bool),
            "list": [torch.randn(2), torch.arange(3)],
            "pair": Pair(torch.randn(1), torch.arange(1)),
            "array": np.ones(3, dtype=np.float64),
            "text": "hello",
        }
    )


def _check_cast(bf, torch, dtype):
    assert bf["pixel_values"].dtype == dtype
    assert bf["list"][0].dtype == dtype and bf["list"][1].dtype == torch.int64
    assert type(bf["pair"]).__name__ == "Pair" and bf["pair"].a.dtype == dtype and bf["pair"].b.dtype == torch.int64
    assert bf["mask"].dtype == torch.int64  # integer tensors are never cast
    assert bf["flags"].dtype == torch.bool
    assert bf["array"].dtype == np.float64  # non-tensors untouched
    assert bf["text"] == "hello"


@pytest.mark.parametrize(
    "call",
    [
        lambda bf, torch: bf.to(torch.float16),
        lambda bf, torch: bf.to(dtype=torch.float16),
        lambda bf, torch: bf.to("cpu", torch.float16),
        lambda bf, torch: bf.to(torch.device("cpu"), torch.float16),
        lambda bf, torch: bf.to("cpu", dtype=torch.float16),
        lambda bf, torch: bf.to(device="cpu", dtype=torch.float16, non_blocking=True),
        lambda bf, torch: bf.to(torch.float16, non_blocking=True),
        lambda bf, torch: bf.to("cpu", torch.float16, True),
    ],
    ids=["dtype", "dtype-kw", "device-dtype", "torch.device-dtype", "device-dtype-kw", "all-kw", "dtype-nb", "pos-nb"],
)
def test_to_casts_only_floating_tensors(call):
    torch = pytest.importorskip("torch")
    bf = _torch_batch(torch)
    array, mask = bf["array"], bf["mask"]
    expected = bf["pixel_values"].to(torch.float16)
    result = call(bf, torch)
    assert result is bf
    _check_cast(bf, torch, torch.float16)
    assert torch.equal(bf["pixel_values"], expected)
    assert bf["array"] is array and bf["mask"] is mask  # same device, no cast: the same tensor
    assert all(v.device.type == "cpu" for v in (bf["pixel_values"], bf["mask"], bf["list"][1]))


@pytest.mark.parametrize(
    "call",
    [
        lambda bf, torch: bf.to("cpu"),
        lambda bf, torch: bf.to(torch.device("cpu")),
        lambda bf, torch: bf.to(device="cpu"),
        lambda bf, torch: bf.to(device=torch.device("cpu"), non_blocking=True),
        lambda bf, torch: bf.to("cpu", non_blocking=True),
    ],
    ids=["str", "torch.device", "kw", "kw-non-blocking", "str-non-blocking"],
)
def test_to_device_only_keeps_dtypes(call):
    torch = pytest.importorskip("torch")
    bf = _torch_batch(torch)
    pixel_values = bf["pixel_values"]
    assert call(bf, torch) is bf
    _check_cast(bf, torch, torch.float32)
    assert bf["pixel_values"] is pixel_values  # already on that device


def test_to_without_arguments_is_a_noop():
    torch = pytest.importorskip("torch")
    bf = _torch_batch(torch)
    before = dict(bf.data)
    assert bf.to() is bf
    assert all(bf[k] is before[k] for k in ("pixel_values", "mask", "array", "text"))


def test_to_dtype_then_device_raises_torchs_type_error():
    """The issue's case: `to(dtype, device)` is not a form `torch.Tensor.to` accepts, so it fails as in torch."""
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError) as expected:
        torch.ones(1).to(torch.bfloat16, "cpu")
    bf = _torch_batch(torch)
    before = dict(bf.data)
    with pytest.raises(TypeError) as info:
        bf.to(torch.bfloat16, "cpu")
    assert str(info.value) == str(expected.value)
    assert all(bf[key] is value for key, value in before.items())  # a failed call leaves the batch as it was


def _to_calls(torch):
    """`(id, args, kwargs)` for `BatchFeature.to`: valid forms, and forms torch or transformers reject."""
    f16 = torch.float16
    return [
        ("none", (), {}),
        ("device", ("cpu",), {}),
        ("torch.device", (torch.device("cpu"),), {}),
        ("dtype", (torch.float64,), {}),
        ("device-dtype", ("cpu", torch.bfloat16), {}),
        ("device-kw", (), {"device": "cpu"}),
        ("dtype-kw", (), {"dtype": f16}),
        ("both-kw", (), {"device": torch.device("cpu"), "dtype": f16}),
        ("device-dtype-kw", ("cpu",), {"dtype": f16}),
        ("non-blocking", ("cpu",), {"non_blocking": True}),
        ("dtype-non-blocking", (f16,), {"non_blocking": True}),
        ("positional-non-blocking", ("cpu", f16, True), {}),
        ("copy", ("cpu",), {"copy": True}),
        ("memory-format", (), {"memory_format": torch.contiguous_format}),
        ("dtype-name", ("float16",), {}),
        # Rejected by torch (for floating tensors) with its own TypeError / RuntimeError.
        ("dtype-device", (torch.bfloat16, "cpu"), {}),
        ("dtype-device-kw", (f16,), {"device": "cpu"}),
        ("device-twice", ("cpu",), {"device": "cpu"}),
        ("dtype-twice", ("cpu", f16), {"dtype": f16}),
        ("two-dtypes", (f16, torch.float32), {}),
        ("dtype-as-string-kw", (), {"dtype": "float16"}),
        ("unknown-kw", (), {"bogus": 1}),
        ("bad-device", ("not_a_device",), {}),
        ("five-positional", ("cpu", f16, False, False, 1), {}),
        ("garbage-with-device-kw", (1.5,), {"device": "cpu"}),
        # Rejected by BatchFeature itself (the first positional argument is neither a device nor a dtype).
        ("float", (1.5,), {}),
        ("none-positional", (None,), {}),
        ("list", ([1],), {}),
        ("tensor", (torch.zeros(1, dtype=torch.float64),), {}),
    ]


def _to_batches(torch):
    """Batches without namedtuples (transformers cannot rebuild them, see test_to_rebuilds_namedtuples)."""
    return {
        "mixed": lambda: {
            "pixel_values": torch.randn(2, 3, 4, 4),
            "mask": torch.ones(2, 4, dtype=torch.int64),
            "flags": torch.ones(2, dtype=torch.bool),
            "list": [torch.randn(2), torch.arange(3), "s"],
            "tuple": (torch.randn(1, dtype=torch.float64),),
            "array": np.ones(3),
            "text": "hello",
        },
        "integer-only": lambda: {"mask": torch.ones(2, dtype=torch.int64), "list": [torch.arange(2)]},
        "numpy-only": lambda: {"array": np.ones(3), "text": ["a"]},
    }


def _outcome(cls, data, args, kwargs):
    try:
        return cls(dict(data)).to(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        return None, e


def _assert_same_value(ours, theirs, original, torch, where):
    assert type(ours) is type(theirs), where
    if isinstance(theirs, torch.Tensor):
        assert (ours.dtype, ours.device) == (theirs.dtype, theirs.device), where
        assert torch.equal(ours, theirs), where
        assert (ours is original) == (theirs is original), f"{where}: copied in one and not the other"
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), where
        for i, (o, t, orig) in enumerate(zip(ours, theirs, original)):
            _assert_same_value(o, t, orig, torch, f"{where}[{i}]")
    else:
        assert ours is theirs, where


@needs_hf
@pytest.mark.parametrize("batch", ["mixed", "integer-only", "numpy-only"])
def test_to_matches_transformers_for_every_form(batch):
    """Same results, same exception types, and the same messages where the exception comes from torch."""
    torch = pytest.importorskip("torch")
    data = _to_batches(torch)[batch]()
    for name, args, kwargs in _to_calls(torch):
        where = f"{batch}: to({name})"
        ours, our_error = _outcome(BatchFeature, data, args, kwargs)
        theirs, their_error = _outcome(HFBatchFeature, data, args, kwargs)
        if their_error is not None:
            assert our_error is not None, f"{where}: transformers raised {their_error!r}, ours did not"
            assert type(our_error) is type(their_error), f"{where}: {our_error!r} != {their_error!r}"
            assert str(our_error) == str(their_error), where
            continue
        assert our_error is None, f"{where}: ours raised {our_error!r}, transformers did not"
        assert ours.keys() == theirs.keys(), where
        for key in theirs:
            _assert_same_value(ours[key], theirs[key], data[key], torch, f"{where}[{key!r}]")


def test_to_torch_errors_are_torchs_own():
    torch = pytest.importorskip("torch")
    tensor = torch.ones(1)
    for args, kwargs in [
        ((torch.float16,), {"device": "cpu"}),
        (("cpu",), {"device": "cpu"}),
        ((), {"memory_format": "channels_last"}),
        (("not_a_device",), {}),
    ]:
        with pytest.raises((TypeError, RuntimeError)) as expected:
            tensor.to(*args, **kwargs)
        with pytest.raises(type(expected.value)) as info:
            BatchFeature({"x": tensor, "mask": torch.ones(1, dtype=torch.long)}).to(*args, **kwargs)
        assert str(info.value) == str(expected.value)


def test_to_copy_and_memory_format_reach_floating_tensors_only():
    torch = pytest.importorskip("torch")
    images, mask = torch.randn(1, 3, 2, 2), torch.ones(1, 3, 2, 2, dtype=torch.long)
    bf = BatchFeature({"pixel_values": images, "mask": mask}).to("cpu", copy=True)
    assert bf["pixel_values"] is not images and torch.equal(bf["pixel_values"], images)
    assert bf["mask"] is mask  # moved with `device` and `non_blocking` only, as in transformers
    bf.to(memory_format=torch.channels_last)
    assert bf["pixel_values"].is_contiguous(memory_format=torch.channels_last)
    assert bf["mask"] is mask


@pytest.mark.parametrize("bad", [1.5, [1], None.__class__, None, True, False])
def test_to_rejects_non_device_non_dtype(bad):
    pytest.importorskip("torch")
    bf = BatchFeature({"x": np.ones(1)})
    with pytest.raises(ValueError, match="not supported"):
        bf.to(bad)


@needs_hf
def test_to_bool_positional_differs_from_transformers():
    """Deliberate difference: transformers takes a bool for a device index and casts floats to torch.bool."""
    torch = pytest.importorskip("torch")
    theirs = HFBatchFeature({"pixel_values": torch.randn(2)}).to(True)
    assert theirs["pixel_values"].dtype == torch.bool  # the pixel values are lost
    bf = BatchFeature({"pixel_values": torch.randn(2)})
    with pytest.raises(ValueError, match="type True"):
        bf.to(True)
    assert bf["pixel_values"].dtype == torch.float32


def test_to_rebuilds_namedtuples():
    """Deliberate difference: transformers raises a TypeError for a namedtuple value; ours rebuilds it."""
    torch = pytest.importorskip("torch")
    bf = _torch_batch(torch)
    bf.to(torch.float64)
    assert type(bf["pair"]).__name__ == "Pair" and bf["pair"].a.dtype == torch.float64
    if HFBatchFeature is not None:
        with pytest.raises(TypeError):
            HFBatchFeature({"pair": bf["pair"]}).to("cpu")


def test_to_updates_the_same_dict():
    torch = pytest.importorskip("torch")
    bf = BatchFeature({"x": torch.ones(1)})
    data = bf.data
    bf.to(torch.float16)
    assert bf.data is data and data["x"].dtype == torch.float16


def test_to_int_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    bf = _torch_batch(torch)
    assert bf.to(0, torch.float16) is bf
    assert bf["pixel_values"].device == torch.device("cuda", 0) and bf["mask"].device.type == "cuda"
    _check_cast(bf, torch, torch.float16)
    tensor = bf["pixel_values"]
    assert BatchFeature({"x": tensor}, tensor_type="pt")["x"] is tensor
    bf.to("cuda:0")
    assert bf["pixel_values"] is tensor
    bf.to("cpu", non_blocking=True)
    torch.cuda.synchronize()
    assert bf["pixel_values"].device.type == "cpu" and bf["mask"].device.type == "cpu"


# --- Pickle and deepcopy ---


@ROUNDTRIPS
def test_roundtrip_numpy(roundtrip):
    bf = BatchFeature({"pixel_values": np.arange(6.0).reshape(2, 3), "text": ["a"]}, skip_tensor_conversion=["text"])
    out = roundtrip(bf)
    assert type(out) is BatchFeature and out is not bf
    assert out.keys() == bf.keys()
    np.testing.assert_array_equal(out.pixel_values, bf.pixel_values)
    assert out["pixel_values"] is not bf["pixel_values"]
    assert out.text == ["a"] and out.skip_tensor_conversion == ["text"]
    with pytest.raises(AttributeError):
        _ = out.missing
    out.convert_to_tensors("np")  # still usable after the round trip
    assert out.text == ["a"]


@ROUNDTRIPS
def test_roundtrip_torch(roundtrip):
    torch = pytest.importorskip("torch")
    pixel_values = torch.randn(2, 3, dtype=torch.bfloat16)
    bf = BatchFeature({"pixel_values": pixel_values, "mask": torch.ones(2, dtype=torch.long)})
    out = roundtrip(bf)
    assert out.pixel_values.dtype == torch.bfloat16 and torch.equal(out.pixel_values, bf.pixel_values)
    assert torch.equal(out.mask, bf.mask) and out.mask is not bf.mask
    assert out.to(torch.float32) is out and out.pixel_values.dtype == torch.float32


def test_shallow_copy():
    bf = BatchFeature({"x": np.ones(2)})
    out = copy.copy(bf)
    assert out["x"] is bf["x"] and out.data is not bf.data
    out2 = bf.copy()
    assert type(out2) is BatchFeature and out2["x"] is bf["x"]


@needs_hf
def test_unpickles_transformers_state():
    state = HFBatchFeature({"x": np.ones(2)}).__getstate__()
    bf = BatchFeature.__new__(BatchFeature)
    bf.__setstate__(state)
    np.testing.assert_array_equal(bf.x, np.ones(2))
    assert bf.skip_tensor_conversion is None
    assert bf.convert_to_tensors("np") is bf
