"""Scaling out (`fused_imgproc.integrations`): Hugging Face `datasets` and Ray Data, outputs identical to one process.

The `datasets` tests run `map` (one process and `num_proc=2`) and `with_transform` on PIL, path and bytes columns;
the Ray tests run a local 2-CPU Ray cluster (`map_batches` on an actor pool of 2, and `preprocess_to_shards` over a
folder of images on 2 workers). The Triton backend runs in the workers under the interpreter, on tiny images.
Nothing touches the network.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import fused_imgproc as fi
from fused_imgproc.image_utils import load_image
from fused_imgproc.integrations import SHARD_INDEX, BatchPreprocessor, preprocess_to_shards, read_shards

datasets = pytest.importorskip("datasets")  # both in the test extra
ray = pytest.importorskip("ray")

SAMPLES = os.path.join(os.path.dirname(fi.__file__), "samples")
QWEN = {"min_pixels": 3136, "max_pixels": 60_000, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}


def _photos(count: int, seed: int = 0, low: int = 40, high: int = 300) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    for k in range(count):
        h, w = (int(v) for v in rng.integers(low, high, 2))
        image = PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(image.convert("L") if k % 4 == 3 else image)
    return images


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 image files: random PNGs and JPEGs of mixed sizes and modes, and the bundled samples."""
    root = tmp_path_factory.mktemp("images")
    for k, image in enumerate(_photos(6, seed=1)):
        image.save(root / f"random-{k}.{'png' if k % 2 else 'jpg'}")
    for name in sorted(os.listdir(SAMPLES))[:6]:
        shutil.copy(os.path.join(SAMPLES, name), root / name)
    return sorted(str(path) for path in root.iterdir())


def _expected(processor, images, **kwargs) -> np.ndarray:
    return np.asarray(processor(list(images), return_tensors="np", **kwargs).pixel_values)


# --- BatchPreprocessor on its own --------------------------------------------------------------------------------


def test_columns_of_every_kind_give_the_processor_output(folder):
    processor = fi.CLIPImageProcessor()
    loaded = [load_image(path) for path in folder]
    expected = _expected(processor, loaded)
    blobs = [Path(path).read_bytes() for path in folder]
    columns = {
        "paths": folder,
        "bytes": blobs,
        "dicts": [{"bytes": blob, "path": None} for blob in blobs],
        "path dicts": [{"bytes": None, "path": path} for path in folder],
        "numpy object array": np.array(folder, dtype=object),
        "numpy str array": np.array(folder),
    }
    for name, column in columns.items():
        out = BatchPreprocessor(processor)({"image": column, "label": list(range(len(folder)))})
        assert sorted(out) == ["label", "pixel_values"], name
        assert out["pixel_values"].dtype == np.float32 and np.array_equal(out["pixel_values"], expected), name
    arrays = np.stack([np.asarray(image.resize((64, 48))) for image in loaded])  # one 4-D Ray batch
    out = BatchPreprocessor(processor, keep_image_column=True)({"image": arrays})
    assert out["image"] is arrays and np.array_equal(out["pixel_values"], _expected(processor, list(arrays)))


def test_patch_rows_are_one_block_per_image():
    processor = fi.Qwen2VLImageProcessor(**QWEN)
    images = _photos(3, seed=2)
    expected = processor(images, return_tensors="np")
    sizes = [int(np.prod(grid)) for grid in expected["image_grid_thw"]]
    ragged = np.empty(len(images), dtype=object)  # a Ray column of PIL images (np.array would unpack them)
    ragged[:] = images
    for column in (images, ragged):
        out = BatchPreprocessor(processor)({"image": column})
        assert [block.shape[0] for block in out["pixel_values"]] == sizes
        assert isinstance(out["pixel_values"], list) == isinstance(column, list)
        assert np.array_equal(np.concatenate(list(out["pixel_values"])), expected["pixel_values"])
        assert np.array_equal(out["image_grid_thw"], expected["image_grid_thw"])


def test_importing_the_integrations_imports_neither_ray_nor_datasets():
    code = ("import sys, fused_imgproc.integrations\n"
            "print(sorted(m for m in ('ray', 'datasets', 'pyarrow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_device_result_comes_back_to_the_host():
    """With `device="cuda"` the processor is asked for torch tensors (its numpy output needs a CPU result) and the
    columns are copied to the host as numpy (a stand-in processor records the call: no GPU here)."""
    torch = pytest.importorskip("torch")
    calls = []

    class OnDevice:
        def preprocess(self, images, **kwargs):
            calls.append(kwargs)
            return {"pixel_values": torch.ones((len(images), 3, 4, 4), dtype=torch.float16)}

        __call__ = preprocess

    out = BatchPreprocessor(OnDevice(), dtype="float16", device="cuda")({"image": [np.zeros((8, 8, 3), np.uint8)] * 2})
    assert calls == [{"return_tensors": "pt", "dtype": "float16", "device": "cuda"}]
    assert isinstance(out["pixel_values"], np.ndarray) and out["pixel_values"].dtype == np.float16


def test_bad_use_raises():
    processor = fi.CLIPImageProcessor()
    with pytest.raises(KeyError, match="no column 'image'"):
        BatchPreprocessor(processor)({"img": [np.zeros((8, 8, 3), np.uint8)]})
    with pytest.raises(ValueError, match="bfloat16 needs return_tensors='pt'"):
        BatchPreprocessor(processor, dtype="bfloat16")
    with pytest.raises(ValueError, match="return_tensors"):
        BatchPreprocessor(processor, return_tensors="tf")
    with pytest.raises(TypeError, match="processor"):
        BatchPreprocessor(object())
    with pytest.raises(ValueError, match="cannot decode 5 bytes"):
        BatchPreprocessor(processor)({"image": [b"hello"]})
    with pytest.raises(ValueError, match="'bytes' or 'path'"):
        BatchPreprocessor(processor)({"image": [{"bytes": None, "path": None}]})


def test_pickles_with_a_triton_processor():
    pytest.importorskip("torch")
    processor = fi.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    images = _photos(3, seed=3, low=10, high=30)
    triton = BatchPreprocessor(processor, backend="triton", device="cpu")
    triton({"image": images})  # device state (call cache) made, then dropped by pickling
    copy = pickle.loads(pickle.dumps(triton))
    assert np.array_equal(copy({"image": images})["pixel_values"], _expected(processor, images))


# --- Hugging Face datasets ----------------------------------------------------------------------------------------

@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    return tmp_path


def test_datasets_map_and_transform(offline_cache):
    processor = fi.CLIPImageProcessor()
    images = _photos(7, seed=4)
    expected = _expected(processor, images)
    ds = datasets.Dataset.from_dict({"image": images, "label": list(range(7))},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "label": datasets.Value("int64")}))
    for num_proc in (None, 2):
        mapped = ds.map(BatchPreprocessor(processor), batched=True, batch_size=3, num_proc=num_proc,
                        remove_columns=["image"])
        assert mapped.column_names == ["label", "pixel_values"]
        values = mapped.with_format("numpy")[:]["pixel_values"]
        assert values.dtype == np.float32 and np.array_equal(values, expected), num_proc
    half = ds.map(BatchPreprocessor(processor, dtype="float16"), batched=True, batch_size=4, remove_columns=["image"])
    assert "halffloat" in str(half.data.schema.field("pixel_values").type)  # stored as float16 in Arrow
    values = half.with_format("numpy", dtype=np.float16)[:]["pixel_values"]  # (datasets' numpy format says float32)
    assert values.dtype == np.float16 and np.array_equal(values, _expected(processor, images, dtype="float16"))

    torch = pytest.importorskip("torch")
    live = ds.with_transform(BatchPreprocessor(processor, return_tensors="pt", dtype=torch.bfloat16))
    batch = live[2:5]
    assert sorted(batch) == ["label", "pixel_values"] and batch["label"] == [2, 3, 4]
    reference = processor(images[2:5], return_tensors="pt", dtype=torch.bfloat16).pixel_values
    assert batch["pixel_values"].dtype == torch.bfloat16 and torch.equal(batch["pixel_values"], reference)


def test_datasets_paths_bytes_and_patch_rows(offline_cache, folder):
    clip = fi.CLIPImageProcessor()
    expected = _expected(clip, [load_image(path) for path in folder])
    by_path = datasets.Dataset.from_dict({"file": folder})
    mapped = by_path.map(BatchPreprocessor(clip, image_column="file"), batched=True, batch_size=5)
    assert np.array_equal(mapped.with_format("numpy")[:]["pixel_values"], expected)
    undecoded = datasets.Dataset.from_dict({"image": folder}).cast_column("image", datasets.Image(decode=False))
    mapped = undecoded.map(BatchPreprocessor(clip), batched=True, batch_size=5, remove_columns=["image"])
    assert np.array_equal(mapped.with_format("numpy")[:]["pixel_values"], expected)

    qwen = fi.Qwen2VLImageProcessor(**QWEN)
    images = _photos(4, seed=5)
    reference = qwen(images, return_tensors="np")
    ds = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    mapped = ds.map(BatchPreprocessor(qwen), batched=True, batch_size=3, remove_columns=["image"]).with_format("numpy")
    columns = mapped[:]
    rows = [np.stack(list(block)) if block.dtype == object else block for block in columns["pixel_values"]]
    assert np.array_equal(np.concatenate(rows), reference["pixel_values"])
    assert np.array_equal(columns["image_grid_thw"], reference["image_grid_thw"])


def test_datasets_num_proc_with_a_triton_processor(offline_cache):
    pytest.importorskip("torch")
    processor = fi.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    images = _photos(4, seed=6, low=10, high=30)
    ds = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    mapped = ds.map(BatchPreprocessor(processor, backend="triton", device="cpu"), batched=True, batch_size=2,
                    num_proc=2, remove_columns=["image"])
    assert np.array_equal(mapped.with_format("numpy")[:]["pixel_values"], _expected(processor, images))


# --- Ray Data ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster on this machine. 4 logical CPUs on its 2 cores: an actor pool of 2 holds 2 of them, and a
    read stage (`read_binary_files`) needs one more, else it waits forever. Workers get TRITON_INTERPRET as set here."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "0")}})
    yield ray
    ray.shutdown()


def test_ray_map_batches_on_two_actors(local_ray, folder):
    processor = fi.CLIPImageProcessor()
    arrays = [np.asarray(image.convert("RGB")) for image in _photos(10, seed=7)]
    items = ray.data.from_items([{"image": array, "n": k} for k, array in enumerate(arrays)])
    rows = items.map_batches(BatchPreprocessor, fn_constructor_kwargs={"processor": processor},
                             compute=ray.data.ActorPoolStrategy(size=2), batch_size=3).take_all()
    rows.sort(key=lambda row: row["n"])
    assert np.array_equal(np.stack([row["pixel_values"] for row in rows]), _expected(processor, arrays))

    blobs = ray.data.read_binary_files(folder, include_paths=True)
    rows = blobs.map_batches(BatchPreprocessor, fn_constructor_kwargs={"processor": processor, "image_column": "bytes"},
                             compute=ray.data.ActorPoolStrategy(size=2), batch_size=4).take_all()
    by_path = {"/" + row["path"].lstrip("/"): row["pixel_values"] for row in rows}  # Ray may drop the leading /
    expected = _expected(processor, [load_image(path) for path in folder])
    assert np.array_equal(np.stack([by_path[path] for path in folder]), expected)


def test_ray_triton_backend_under_the_interpreter(local_ray):
    pytest.importorskip("torch")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the workers run the Triton backend only under the interpreter here")
    processor = fi.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    arrays = [np.asarray(image.convert("RGB")) for image in _photos(4, seed=8, low=10, high=30)]
    rows = ray.data.from_items([{"image": array, "n": k} for k, array in enumerate(arrays)]).map_batches(
        BatchPreprocessor, fn_constructor_kwargs={"processor": processor, "backend": "triton", "device": "cpu"},
        compute=ray.data.ActorPoolStrategy(size=2), batch_size=2).take_all()
    rows.sort(key=lambda row: row["n"])
    assert np.array_equal(np.stack([row["pixel_values"] for row in rows]), _expected(processor, arrays))


def test_shards_equal_one_process(local_ray, folder, tmp_path):
    processor = fi.CLIPImageProcessor()
    index = preprocess_to_shards(folder, tmp_path / "out", processor, workers=2, batch_size=2)
    assert index["rows"] == len(folder) and [shard["rows"] for shard in index["shards"]] == [2] * 6
    # both actors wrote shards (Ray Data starts the pool's 2 actors before it hands out the 6 batches)
    assert len({shard["worker"] for shard in index["shards"]}) == 2
    assert sorted(os.listdir(tmp_path / "out")) == sorted([SHARD_INDEX] + [s["path"] for s in index["shards"]])
    data = read_shards(tmp_path / "out")
    assert list(data["path"]) == folder and list(data["index"]) == list(range(len(folder)))
    assert np.array_equal(data["pixel_values"], _expected(processor, [load_image(path) for path in folder]))

    saved = tmp_path / "qwen"
    fi.Qwen2VLImageProcessor(**QWEN).save_pretrained(saved)  # a config folder, loaded by each actor
    index = preprocess_to_shards(folder[:6], tmp_path / "rows", str(saved), workers=2, batch_size=4)
    data = read_shards(tmp_path / "rows")
    reference = fi.Qwen2VLImageProcessor(**QWEN)([load_image(path) for path in folder[:6]], return_tensors="np")
    assert np.array_equal(data["pixel_values"], reference["pixel_values"])
    assert np.array_equal(data["image_grid_thw"], reference["image_grid_thw"])
    with pytest.raises(ValueError, match="no input files"):
        preprocess_to_shards([], tmp_path / "none", processor)



def test_readme_scaling_out_examples_run(local_ray, tmp_path, monkeypatch, offline_cache):
    """The README's "Scaling out" examples, as written (all but the GPU one), in this process's Ray cluster."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]
    runnable = [block for block in blocks if '"cuda"' not in block]
    assert len(blocks) == 3 and len(runnable) == 2
    monkeypatch.chdir(tmp_path)
    for block in runnable:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102 (our README)
    assert (tmp_path / "build" / "shards" / SHARD_INDEX).is_file()
