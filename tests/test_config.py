"""Config I/O of `ImageProcessingMixin` (local files and directories; the Hub is in test_hub.py)."""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fake_hub import fake_hub  # noqa: F401  (pytest fixture)
from PIL import Image

from fused_imgproc import config as config_module
from fused_imgproc import hub as hub_module
from fused_imgproc.config import IMAGE_PROCESSOR_NAME, PROCESSOR_NAME, ImageProcessingMixin
from fused_imgproc.processors import CLIPImageProcessor


class Dummy(ImageProcessingMixin):
    """Normalises `crop_size`/`size` ints to dicts and `image_mean` lists to tuples, as real processors do."""

    def __init__(self, size=None, crop_size=None, image_mean=None, do_normalize=True, **kwargs):
        if isinstance(size, int):
            size = {"shortest_edge": size}
        if isinstance(crop_size, int):
            crop_size = {"height": crop_size, "width": crop_size}
        self.size = size
        self.crop_size = crop_size
        self.image_mean = tuple(image_mean) if image_mean is not None else None
        self.do_normalize = do_normalize
        super().__init__(**kwargs)


class Color(str, enum.Enum):
    RED = "red"


CONFIG = {"size": 224, "crop_size": 200, "image_mean": [0.5, 0.5, 0.5], "do_normalize": False, "custom": [1, 2]}


def write_json(path, data) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(path)


# ---------------------------------------------------------------------------------------------- loading


def test_from_file_directory_and_subfolder(tmp_path):
    file = write_json(tmp_path / "a" / IMAGE_PROCESSOR_NAME, CONFIG)
    write_json(tmp_path / "b" / "vision" / IMAGE_PROCESSOR_NAME, {**CONFIG, "size": 99})
    for proc in (Dummy.from_pretrained(file), Dummy.from_pretrained(tmp_path / "a")):
        assert proc.size == {"shortest_edge": 224}
        assert proc.crop_size == {"height": 200, "width": 200}
        assert proc.image_mean == (0.5, 0.5, 0.5)
        assert proc.do_normalize is False
        assert proc.custom == [1, 2]
    assert Dummy.from_pretrained(str(tmp_path / "b"), subfolder="vision").size == {"shortest_edge": 99}
    with pytest.raises(OSError, match="holds no 'preprocessor_config.json'"):
        Dummy.from_pretrained(str(tmp_path / "b"))


def test_directory_prefers_processor_config_with_image_processor(tmp_path):
    write_json(tmp_path / IMAGE_PROCESSOR_NAME, {"size": 1})
    write_json(tmp_path / PROCESSOR_NAME, {"processor_class": "X", "image_processor": {"size": 2}})
    assert Dummy.from_pretrained(tmp_path).size == {"shortest_edge": 2}
    # Without an "image_processor" entry, processor_config.json is ignored.
    write_json(tmp_path / PROCESSOR_NAME, {"processor_class": "X"})
    assert Dummy.from_pretrained(tmp_path).size == {"shortest_edge": 1}
    # A processor_config.json file given directly is unwrapped too.
    write_json(tmp_path / "p" / PROCESSOR_NAME, {"image_processor": {"size": 3}})
    assert Dummy.from_pretrained(tmp_path / "p" / PROCESSOR_NAME).size == {"shortest_edge": 3}
    # ...and alone in a directory it is enough.
    assert Dummy.from_pretrained(tmp_path / "p").size == {"shortest_edge": 3}


def test_invalid_json_is_oserror_naming_the_path(tmp_path):
    bad = tmp_path / "bad" / IMAGE_PROCESSOR_NAME
    bad.parent.mkdir()
    bad.write_text('{"size": 224,,}')
    for source in (bad, bad.parent):
        with pytest.raises(OSError, match="is not a valid JSON file") as info:
            Dummy.from_pretrained(source)
        assert str(bad) in str(info.value)
    with pytest.raises(OSError, match="is not a valid JSON file"):
        Dummy.from_json_file(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(OSError, match="is not a valid JSON file"):
        Dummy.from_pretrained(bad)


def test_top_level_not_an_object_is_oserror(tmp_path):
    path = write_json(tmp_path / IMAGE_PROCESSOR_NAME, [1, 2, 3])
    with pytest.raises(OSError, match="expected a JSON object") as info:
        Dummy.from_pretrained(path)
    assert path in str(info.value)
    with pytest.raises(OSError, match="expected a JSON object"):
        Dummy.from_json_file(path)
    write_json(tmp_path / "d" / PROCESSOR_NAME, {"image_processor": [1]})
    with pytest.raises(OSError, match="'image_processor' entry"):
        Dummy.from_pretrained(tmp_path / "d")


def test_config_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = write_json(tmp_path / "big" / IMAGE_PROCESSOR_NAME, {"size": 3, "pad": "x" * 2000})
    read = []
    original_open = open

    def spy_open(file, mode="r", *args, **kwargs):
        handle = original_open(file, mode, *args, **kwargs)
        if str(file) == path:
            original_read = handle.read
            handle.read = lambda size=-1: read.append(size) or original_read(size)
        return handle

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(hub_module, "MAX_CONFIG_BYTES", 1000)
    for source in (path, os.path.dirname(path)):
        with pytest.raises(OSError, match="too large for an image processor config") as info:
            Dummy.from_pretrained(source)
        assert path in str(info.value) and "limit of 1000 bytes" in str(info.value)
        assert "FUSED_IMGPROC_MAX_CONFIG_BYTES" in str(info.value)
    assert read == []  # refused from its size alone
    monkeypatch.setattr(hub_module, "MAX_CONFIG_BYTES", 4000)
    assert Dummy.from_pretrained(path).size == {"shortest_edge": 3}
    assert read == [4001]  # never more than the limit plus one byte
    monkeypatch.setattr(hub_module, "MAX_CONFIG_BYTES", None)  # no limit
    assert Dummy.from_pretrained(path).size == {"shortest_edge": 3}


def test_config_file_growing_past_the_limit_while_read_is_refused(tmp_path, monkeypatch):
    """A size the file system does not know (a special file) or a file that grows: at most limit + 1 bytes read."""
    path = write_json(tmp_path / IMAGE_PROCESSOR_NAME, {"size": 3, "pad": "x" * 2000})
    monkeypatch.setattr(hub_module, "MAX_CONFIG_BYTES", 1000)
    monkeypatch.setattr(hub_module.os, "fstat", lambda fd: os.stat_result((0,) * 10))  # st_size 0
    with pytest.raises(OSError, match="1001 bytes, more than the limit of 1000 bytes"):
        Dummy.from_pretrained(path)


def test_default_config_size_limit_and_environment(monkeypatch):
    assert hub_module.MAX_CONFIG_BYTES == 16 * 2**20
    monkeypatch.setenv("FUSED_IMGPROC_MAX_CONFIG_BYTES", "123")
    assert hub_module._config_bytes_from_environment() == 123
    monkeypatch.setenv("FUSED_IMGPROC_MAX_CONFIG_BYTES", "0")
    assert hub_module._config_bytes_from_environment() is None
    monkeypatch.setenv("FUSED_IMGPROC_MAX_CONFIG_BYTES", "lots")
    with pytest.raises(ValueError, match="FUSED_IMGPROC_MAX_CONFIG_BYTES='lots' is not a number"):
        hub_module._config_bytes_from_environment()


@pytest.mark.parametrize("depth", [101, 900, 100_000])
def test_deeply_nested_config_is_oserror(tmp_path, depth):
    """100_000 levels: json's own RecursionError; 101 and 900 parse, but would fail later (copy, save, repr)."""
    path = tmp_path / IMAGE_PROCESSOR_NAME
    path.write_text('{"size": 3, "deep": ' + "[" * depth + "]" * depth + "}")
    for load in (Dummy.from_pretrained, Dummy.from_json_file):
        with pytest.raises(OSError, match="is not a valid JSON file") as info:
            load(path)
        assert str(path) in str(info.value) and "nests arrays or objects" in str(info.value)
    path.write_text('{"size": 3, "deep": ' + '{"a": [' * 49 + "]}" * 49 + "}")  # 99 levels under the top: fine
    loaded = Dummy.from_pretrained(path)
    assert loaded.size == {"shortest_edge": 3} and json.loads(loaded.to_json_string())["deep"] == loaded.deep


def test_nonexistent_path_is_oserror_naming_it(tmp_path, fake_hub):  # noqa: F811
    missing = str(tmp_path / "does" / "not" / "exist")
    with pytest.raises(OSError) as info:
        Dummy.from_pretrained(missing)
    assert missing in str(info.value)
    # Such a path is not a valid repo id: huggingface_hub rejects it before any request.
    assert fake_hub.requests == []


def test_offline_env_var_read_at_call_time(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub_module.is_offline_mode()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_module.is_offline_mode()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_module.is_offline_mode()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_module.is_offline_mode()
    # Still importable from config.py, where it lived before hub.py.
    assert config_module.is_offline_mode is hub_module.is_offline_mode


# ---------------------------------------------------------------------------------------------- from_dict


def test_from_dict_init_kwargs_are_normalised_and_dict_untouched():
    d = {"size": 10, "crop_size": 20, "image_mean": [1, 2, 3]}
    proc = Dummy.from_dict(d, crop_size=84, size=42)
    assert proc.crop_size == {"height": 84, "width": 84}
    assert proc.size == {"shortest_edge": 42}
    assert d == {"size": 10, "crop_size": 20, "image_mean": [1, 2, 3]}
    # Also when the dict does not hold the key.
    assert Dummy.from_dict({}, crop_size=7).crop_size == {"height": 7, "width": 7}


def test_from_dict_other_kwargs_set_after_construction():
    proc = Dummy.from_dict({"image_mean": [1, 2, 3]}, image_mean=[4, 5, 6], do_normalize=False, custom=[9])
    # Set as given (after __init__), so a list stays a list; do_normalize/custom exist as attributes.
    assert proc.image_mean == [4, 5, 6]
    assert proc.do_normalize is False
    assert not hasattr(proc, "custom")  # not an attribute: unused
    proc = Dummy.from_dict({"custom": 1}, custom=2)
    assert proc.custom == 2


def test_from_dict_return_unused_kwargs():
    proc, unused = Dummy.from_dict({}, do_normalize=False, foo=1, crop_size=5, return_unused_kwargs=True)
    assert unused == {"foo": 1}
    assert proc.do_normalize is False and proc.crop_size == {"height": 5, "width": 5}
    assert not hasattr(proc, "foo")
    assert not hasattr(proc, "return_unused_kwargs")
    result = Dummy.from_dict({}, foo=1)
    assert isinstance(result, Dummy)


def test_from_pretrained_passes_overrides_and_unused_kwargs(tmp_path):
    write_json(tmp_path / IMAGE_PROCESSOR_NAME, CONFIG)
    proc, unused = Dummy.from_pretrained(tmp_path, crop_size=84, do_normalize=True, foo="x", return_unused_kwargs=True)
    assert proc.crop_size == {"height": 84, "width": 84}
    assert proc.do_normalize is True
    assert unused == {"foo": "x"}


def test_init_kwargs_can_be_extended_by_subclasses():
    class Wider(Dummy):
        _init_kwargs = ("size", "crop_size", "image_mean")

    assert Wider.from_dict({}, image_mean=[1, 2, 3]).image_mean == (1, 2, 3)


def test_unknown_keys_kept_and_written_back(tmp_path):
    write_json(tmp_path / "in" / IMAGE_PROCESSOR_NAME, {**CONFIG, "future_option": {"a": [1, 2]}})
    proc = Dummy.from_pretrained(tmp_path / "in")
    assert proc.future_option == {"a": [1, 2]}
    (path,) = proc.save_pretrained(tmp_path / "out")
    saved = json.loads(Path(path).read_text())
    assert saved["future_option"] == {"a": [1, 2]} and saved["custom"] == [1, 2]
    assert Dummy.from_pretrained(tmp_path / "out").to_dict() == proc.to_dict()


def test_processor_class_round_trip(tmp_path):
    proc = Dummy(processor_class="CLIPProcessor", feature_extractor_type="Old", image_processor_type="Whatever")
    assert proc._processor_class == "CLIPProcessor"
    assert not hasattr(proc, "processor_class")
    assert not hasattr(proc, "feature_extractor_type")
    d = proc.to_dict()
    assert d["_processor_class"] == "CLIPProcessor" and d["image_processor_type"] == "Dummy"
    data = json.loads(proc.to_json_string())
    assert data["processor_class"] == "CLIPProcessor"
    assert "_processor_class" not in data and "feature_extractor_type" not in data
    assert data["image_processor_type"] == "Dummy"
    proc.save_pretrained(tmp_path)
    assert Dummy.from_pretrained(tmp_path)._processor_class == "CLIPProcessor"
    assert "processor_class" not in json.loads(Dummy().to_json_string())


# ---------------------------------------------------------------------------------------------- serialising


def test_to_dict_is_a_deep_copy_without_private_attributes():
    proc = Dummy(size=3, extra={"nested": [1]})
    proc._cache = object()
    d = proc.to_dict()
    assert "_cache" not in d and d["image_processor_type"] == "Dummy"
    d["extra"]["nested"].append(2)
    d["size"]["shortest_edge"] = 0
    assert proc.extra == {"nested": [1]} and proc.size == {"shortest_edge": 3}


def test_to_json_string_format_and_conversions():
    proc = Dummy(
        size=np.int64(5),
        image_mean=np.array([0.5, 0.25], dtype=np.float32),
        resample=Image.Resampling.BICUBIC,
        rescale_factor=np.float32(0.5),
        flag=np.bool_(True),
        color=Color.RED,
        nested={"b": (np.int32(1), (2, 3)), "a": [np.float64(1.5), np.arange(2)]},
    )
    text = proc.to_json_string()
    expected = {
        "color": "red",
        "crop_size": None,
        "do_normalize": True,
        "flag": True,
        "image_mean": [0.5, 0.25],
        "image_processor_type": "Dummy",
        "nested": {"a": [1.5, [0, 1]], "b": [1, [2, 3]]},
        "resample": 3,
        "rescale_factor": 0.5,
        "size": 5,
    }
    assert text == json.dumps(expected, indent=2, sort_keys=True) + "\n"
    data = json.loads(text)
    assert type(data["resample"]) is int and type(data["size"]) is int and data["flag"] is True
    assert text.endswith("}\n") and '\n  "color": "red",\n' in text


def test_repr_and_json_file(tmp_path):
    proc = Dummy(size=3)
    assert repr(proc) == "Dummy " + proc.to_json_string()
    path = tmp_path / "x.json"
    proc.to_json_file(path)
    assert path.read_text() == proc.to_json_string()
    assert Dummy.from_json_file(path).to_dict() == proc.to_dict()


# ---------------------------------------------------------------------------------------------- saving


def test_save_pretrained_atomic_and_returns_path(tmp_path):
    target = tmp_path / "deep" / "model"
    proc = Dummy(size=3, custom="x")
    files = proc.save_pretrained(target)
    assert files == [os.path.join(str(target), IMAGE_PROCESSOR_NAME)]
    assert os.listdir(target) == [IMAGE_PROCESSOR_NAME]
    assert Path(files[0]).read_text() == proc.to_json_string()
    # Mode as a plain open() would give (mkstemp's 0600 is not kept).
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(files[0]).st_mode & 0o777 == 0o666 & ~umask
    # Overwriting works and leaves no temporary file either.
    Dummy(size=4).save_pretrained(target)
    assert os.listdir(target) == [IMAGE_PROCESSOR_NAME]
    assert json.loads(Path(files[0]).read_text())["size"] == {"shortest_edge": 4}


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    Dummy(size=3).save_pretrained(tmp_path)
    before = (tmp_path / IMAGE_PROCESSOR_NAME).read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(hub_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        Dummy(size=4).save_pretrained(tmp_path)
    assert os.listdir(tmp_path) == [IMAGE_PROCESSOR_NAME]
    assert (tmp_path / IMAGE_PROCESSOR_NAME).read_text() == before


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit, MemoryError])
@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_interrupted_save_leaves_no_temp(tmp_path, monkeypatch, interruption, where):
    """Any exception while writing (Ctrl-C, SystemExit from a signal handler, ...) removes the temporary file."""
    Dummy(size=3).save_pretrained(tmp_path)
    before = (tmp_path / IMAGE_PROCESSOR_NAME).read_text()

    def interrupted(*args):
        raise interruption()

    monkeypatch.setattr(hub_module.os, where, interrupted)
    with pytest.raises(interruption):
        Dummy(size=4).save_pretrained(tmp_path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [IMAGE_PROCESSOR_NAME]
    assert (tmp_path / IMAGE_PROCESSOR_NAME).read_text() == before


def test_save_pretrained_onto_a_file_raises(tmp_path):
    file = tmp_path / "taken"
    file.write_text("x")
    with pytest.raises(OSError, match="should be a directory") as info:
        Dummy().save_pretrained(file)
    assert str(file) in str(info.value)
    assert file.read_text() == "x"


# ---------------------------------------------------------------------------------------------- real classes


def test_clip_json_matches_transformers_and_round_trips(tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = CLIPImageProcessor()
    theirs = transformers.CLIPImageProcessor()
    assert ours.to_json_string() == theirs.to_json_string()
    assert repr(ours).startswith("CLIPImageProcessor {\n")

    ours.save_pretrained(tmp_path / "ours")
    loaded = transformers.AutoImageProcessor.from_pretrained(tmp_path / "ours")
    assert type(loaded).__name__.startswith("CLIPImageProcessor")
    assert loaded.to_json_string() == ours.to_json_string()

    theirs_custom = transformers.CLIPImageProcessor(crop_size=100, size={"shortest_edge": 128})
    theirs_custom.save_pretrained(tmp_path / "theirs")
    back = CLIPImageProcessor.from_pretrained(tmp_path / "theirs")
    assert back.crop_size == {"height": 100, "width": 100} and back.size == {"shortest_edge": 128}
    assert back.to_json_string() == theirs_custom.to_json_string()


def test_clip_from_dict_normalises_size_kwargs():
    proc, unused = CLIPImageProcessor.from_dict(
        CLIPImageProcessor().to_dict(), crop_size=84, size=42, foo=1, return_unused_kwargs=True
    )
    assert proc.crop_size == {"height": 84, "width": 84}
    assert proc.size == {"shortest_edge": 42}
    assert unused == {"foo": 1}
    data = json.loads(proc.to_json_string())
    assert data["image_processor_type"] == "CLIPImageProcessor" and data["resample"] == 3


@pytest.mark.parametrize("path", ["./no_such_folder", "../no/such", "/no/such/dir", "configs/clip/v1",
                                  "no_such.json", "~/no_such_folder_here"])
def test_missing_local_path_is_named_not_sent_to_the_hub(path, monkeypatch):
    """A value that looks like a local path and does not exist is an OSError saying so, with no Hub request (and not
    huggingface_hub's complaint about repo-id characters)."""
    monkeypatch.setattr(hub_module, "_hub_file", lambda *a, **k: pytest.fail("sent to the Hub"))
    with pytest.raises(OSError, match="not an existing file or directory \\(no such file or folder") as info:
        CLIPImageProcessor.from_pretrained(path)
    assert path in str(info.value)
    assert hub_module.looks_like_local_path(path)
    for repo_id in ("openai/clip-vit-base-patch32", "google-bert", "org/name-with.dots"):
        assert not hub_module.looks_like_local_path(repo_id)
