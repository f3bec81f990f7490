"""`ImageProcessingMixin` against a fake Hugging Face Hub on 127.0.0.1 (see fake_hub.py): no real network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_hub import DEFAULT_TOKEN, FakeHub, fake_hub  # noqa: F401  (fake_hub is a pytest fixture)

from fused_imgproc.config import IMAGE_PROCESSOR_NAME, PROCESSOR_NAME, ImageProcessingMixin
from fused_imgproc.processors import CLIPImageProcessor


class Dummy(ImageProcessingMixin):
    def __init__(self, crop_size=None, **kwargs):
        if isinstance(crop_size, int):
            crop_size = {"height": crop_size, "width": crop_size}
        self.crop_size = crop_size
        super().__init__(**kwargs)


REPO = "org/model"


@pytest.fixture
def hub(fake_hub):  # noqa: F811
    fake_hub.commit(REPO, {IMAGE_PROCESSOR_NAME: {"crop_size": 32, "value": "main"}})
    return fake_hub


def snapshot_files(cache_dir: str, repo_id: str = REPO) -> list[str]:
    root = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"), "snapshots")
    return (
        sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)
        if os.path.isdir(root)
        else []
    )


def test_download(hub, tmp_path):
    proc = Dummy.from_pretrained(REPO, cache_dir=tmp_path / "c")
    assert proc.value == "main" and proc.crop_size == {"height": 32, "width": 32}
    assert hub.file_gets(IMAGE_PROCESSOR_NAME) == 1
    # processor_config.json is looked for once (a 404, not retried) and not downloaded.
    assert hub.count("HEAD", "/" + PROCESSOR_NAME) == 1 and hub.file_gets(PROCESSOR_NAME) == 0
    sha = hub.repos[REPO].branches["main"]
    assert snapshot_files(str(tmp_path / "c")) == [f"{sha}/{IMAGE_PROCESSOR_NAME}"]


def test_default_cache_is_hf_hub_cache(hub):
    Dummy.from_pretrained(REPO)
    assert len(snapshot_files(hub.cache_dir)) == 1


def test_second_load_served_from_cache(hub, tmp_path):
    Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    hub.reset_requests()
    proc = Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    assert proc.value == "main"
    assert hub.file_gets() == 0
    # Only the revision is checked; the known-missing processor_config.json is not asked for again.
    assert hub.count("HEAD") == 0


def test_new_commit_on_branch_is_picked_up(hub, tmp_path):
    Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    hub.commit(REPO, {IMAGE_PROCESSOR_NAME: {"value": "updated"}})
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path).value == "updated"


def test_force_download_refetches(hub, tmp_path):
    Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    assert hub.file_gets(IMAGE_PROCESSOR_NAME) == 1
    Dummy.from_pretrained(REPO, cache_dir=tmp_path, force_download=True)
    assert hub.file_gets(IMAGE_PROCESSOR_NAME) == 2


def test_revisions_branch_and_commit(hub, tmp_path):
    first = hub.repos[REPO].branches["main"]
    hub.commit(REPO, {IMAGE_PROCESSOR_NAME: {"value": "dev"}}, branch="dev")
    hub.commit(REPO, {IMAGE_PROCESSOR_NAME: {"value": "main-2"}})
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path).value == "main-2"
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path, revision="dev").value == "dev"
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path, revision=first).value == "main"
    # A cached commit is served without any request at all.
    hub.reset_requests()
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path, revision=first).value == "main"
    assert hub.requests == []


def test_subfolder(hub, tmp_path):
    hub.commit(REPO, {f"vision/{IMAGE_PROCESSOR_NAME}": {"value": "sub"}})
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path, subfolder="vision").value == "sub"
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path).value == "main"
    with pytest.raises(OSError, match="nope/preprocessor_config.json"):
        Dummy.from_pretrained(REPO, cache_dir=tmp_path, subfolder="nope")


def test_processor_config_preferred(hub, tmp_path):
    hub.commit(REPO, {PROCESSOR_NAME: {"processor_class": "P", "image_processor": {"value": "nested"}}})
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path).value == "nested"
    assert hub.file_gets(IMAGE_PROCESSOR_NAME) == 0
    # Without an "image_processor" entry, preprocessor_config.json is used.
    hub.commit(REPO, {PROCESSOR_NAME: {"processor_class": "P"}})
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path).value == "main"


def test_processor_config_alone(fake_hub, tmp_path):  # noqa: F811
    fake_hub.commit("org/only", {PROCESSOR_NAME: {"image_processor": {"value": "only"}}})
    assert Dummy.from_pretrained("org/only", cache_dir=tmp_path).value == "only"


def test_missing_repo(hub, tmp_path):
    with pytest.raises(OSError, match="'org/missing' is not a local file or directory"):
        Dummy.from_pretrained("org/missing", cache_dir=tmp_path)


def test_missing_file(fake_hub, tmp_path):  # noqa: F811
    fake_hub.commit("org/empty", {"README.md": "hello"})
    with pytest.raises(OSError) as info:
        Dummy.from_pretrained("org/empty", cache_dir=tmp_path)
    assert "'org/empty'" in str(info.value) and f"file named '{IMAGE_PROCESSOR_NAME}'" in str(info.value)
    # Known missing at that commit: the second attempt fails the same way without asking for the file again.
    fake_hub.reset_requests()
    with pytest.raises(OSError, match="does not contain a file named"):
        Dummy.from_pretrained("org/empty", cache_dir=tmp_path)
    assert fake_hub.count("HEAD") == 0


def test_unknown_revision(hub, tmp_path):
    with pytest.raises(OSError) as info:
        Dummy.from_pretrained(REPO, cache_dir=tmp_path, revision="v9")
    assert "'v9' is not a valid git revision" in str(info.value) and REPO in str(info.value)


@pytest.mark.parametrize("how", ["env", "constant", "local_files_only"])
def test_offline_with_cache(hub, tmp_path, monkeypatch, how):
    Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    hub.reset_requests()
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif how == "constant":
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        kwargs["local_files_only"] = True
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path, **kwargs).value == "main"
    assert hub.requests == []
    with pytest.raises(OSError) as info:
        Dummy.from_pretrained(REPO, cache_dir=tmp_path / "empty", **kwargs)
    assert REPO in str(info.value) and "not in the local cache" in str(info.value)
    assert hub.requests == []


def test_hub_unreachable_uses_cache(hub, tmp_path):
    Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    hub.stop()
    assert Dummy.from_pretrained(REPO, cache_dir=tmp_path).value == "main"


def test_oversized_or_deeply_nested_hub_config_is_oserror(fake_hub, tmp_path, monkeypatch):  # noqa: F811
    """A downloaded file gets the same bounds as a local one: refused from its size, before it is parsed."""
    import fused_imgproc.hub as hub_module

    fake_hub.commit("org/big", {IMAGE_PROCESSOR_NAME: {"crop_size": 32, "pad": "x" * 3000}})
    fake_hub.commit("org/deep", {IMAGE_PROCESSOR_NAME: {"crop_size": 32, "deep": [[[[[[1]]]]]]}})
    monkeypatch.setattr(hub_module, "MAX_CONFIG_BYTES", 2000)
    monkeypatch.setattr(hub_module, "MAX_CONFIG_DEPTH", 5)
    with pytest.raises(OSError, match="too large for an image processor config: .* limit of 2000 bytes") as info:
        Dummy.from_pretrained("org/big", cache_dir=tmp_path)
    assert os.path.join(str(tmp_path), "models--org--big") in str(info.value)  # names the downloaded file
    with pytest.raises(OSError, match="is not a valid JSON file for a config: it nests .* more than 5 levels"):
        Dummy.from_pretrained("org/deep", cache_dir=tmp_path)
    monkeypatch.setattr(hub_module, "MAX_CONFIG_DEPTH", 7)
    assert Dummy.from_pretrained("org/deep", cache_dir=tmp_path).deep == [[[[[[1]]]]]]


def test_token_sent_as_bearer(hub, tmp_path):
    hub.reset_requests()
    Dummy.from_pretrained(REPO, cache_dir=tmp_path, token="hf_secret")
    assert hub.requests and all(r.headers.get("authorization") == "Bearer hf_secret" for r in hub.requests)
    hub.reset_requests()
    Dummy.from_pretrained(REPO, cache_dir=tmp_path / "2")
    assert all("authorization" not in r.headers for r in hub.requests)


def test_private_repo_needs_token(fake_hub, tmp_path):  # noqa: F811
    fake_hub.create_repo("org/private", private=True)
    fake_hub.commit("org/private", {IMAGE_PROCESSOR_NAME: {"value": "secret"}})
    with pytest.raises(OSError, match="private repo"):
        Dummy.from_pretrained("org/private", cache_dir=tmp_path)
    assert Dummy.from_pretrained("org/private", cache_dir=tmp_path, token=DEFAULT_TOKEN).value == "secret"


def test_download_errors_are_oserrors(hub, tmp_path, monkeypatch):
    import httpx2
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise httpx2.ProxyError("proxy down")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(OSError, match="ProxyError") as info:
        Dummy.from_pretrained(REPO, cache_dir=tmp_path)
    assert REPO in str(info.value)


# ---------------------------------------------------------------------------------------------- pushing


def test_push_to_hub_round_trip(fake_hub, tmp_path):  # noqa: F811
    proc = Dummy(crop_size=84, value=[1, 2], processor_class="SomeProcessor")
    info = proc.push_to_hub("org/pushed", token=DEFAULT_TOKEN, commit_message="my message")
    repo = fake_hub.repos["org/pushed"]
    assert info.oid == repo.branches["main"] and repo.messages[info.oid] == "my message"
    assert fake_hub.file("org/pushed", IMAGE_PROCESSOR_NAME) == proc.to_json_string().encode()
    assert all(
        r.headers.get("authorization") == f"Bearer {DEFAULT_TOKEN}" for r in fake_hub.requests if r.method == "POST"
    )
    loaded = Dummy.from_pretrained("org/pushed", cache_dir=tmp_path)
    assert loaded.to_dict() == proc.to_dict()
    # Pushing again to the existing repo (create_repo answers 409) with new content makes a new commit.
    proc.value = [3]
    second = proc.push_to_hub("org/pushed", token=DEFAULT_TOKEN)
    assert second.oid != info.oid and repo.messages[second.oid] == "Upload image processor"
    assert Dummy.from_pretrained("org/pushed", cache_dir=tmp_path).value == [3]


def test_save_pretrained_push_to_hub(fake_hub, tmp_path):  # noqa: F811
    proc = Dummy(crop_size=10)
    files = proc.save_pretrained(tmp_path / "my-model", push_to_hub=True, token=DEFAULT_TOKEN, private=True)
    assert files == [str(tmp_path / "my-model" / IMAGE_PROCESSOR_NAME)]
    repo_id = f"{fake_hub.user}/my-model"  # a bare name goes to the token's user
    assert fake_hub.repos[repo_id].private
    assert json.loads(fake_hub.file(repo_id, IMAGE_PROCESSOR_NAME)) == json.loads(Path(files[0]).read_text())
    with pytest.raises(OSError):
        Dummy.from_pretrained(repo_id, cache_dir=tmp_path / "c")
    loaded = Dummy.from_pretrained(repo_id, cache_dir=tmp_path / "c", token=DEFAULT_TOKEN)
    assert loaded.to_dict() == proc.to_dict()

    proc.save_pretrained(tmp_path / "other", push_to_hub=True, repo_id="org/explicit", token=DEFAULT_TOKEN)
    assert Dummy.from_pretrained("org/explicit", cache_dir=tmp_path / "c").to_dict() == proc.to_dict()
    with pytest.raises(TypeError, match="unexpected"):
        proc.save_pretrained(tmp_path / "x", push_to_hub=True, token=DEFAULT_TOKEN, bogus=1)


def test_push_create_pr_and_revision(fake_hub, tmp_path):  # noqa: F811
    Dummy(value="v1").push_to_hub("org/pr", token=DEFAULT_TOKEN)
    main = fake_hub.repos["org/pr"].branches["main"]
    info = Dummy(value="v2").push_to_hub("org/pr", token=DEFAULT_TOKEN, create_pr=True)
    assert info.pr_revision == "refs/pr/1"
    assert fake_hub.repos["org/pr"].branches["main"] == main
    assert Dummy.from_pretrained("org/pr", cache_dir=tmp_path).value == "v1"
    assert Dummy.from_pretrained("org/pr", cache_dir=tmp_path, revision=info.pr_revision).value == "v2"


def test_push_without_token_fails(fake_hub):  # noqa: F811
    with pytest.raises(OSError, match="401"):
        Dummy().push_to_hub("org/nope")
    assert "org/nope" not in fake_hub.repos


def test_clip_push_and_load(fake_hub, tmp_path):  # noqa: F811
    proc = CLIPImageProcessor(crop_size=100, do_center_crop=False)
    proc.push_to_hub("org/clip", token=DEFAULT_TOKEN)
    loaded = CLIPImageProcessor.from_pretrained("org/clip", cache_dir=tmp_path, size=64)
    assert loaded.crop_size == {"height": 100, "width": 100} and loaded.do_center_crop is False
    assert loaded.size == {"shortest_edge": 64}
    loaded.size = proc.size
    assert loaded.to_json_string() == proc.to_json_string()


def test_fake_hub_is_isolated_from_the_real_endpoint(fake_hub):  # noqa: F811
    from huggingface_hub import HfApi, constants, hf_hub_url

    assert constants.ENDPOINT == fake_hub.url == HfApi().endpoint
    assert hf_hub_url(REPO, IMAGE_PROCESSOR_NAME).startswith(fake_hub.url + "/")
    assert isinstance(fake_hub, FakeHub)


def test_hub_module_loads_without_the_mixin(hub, tmp_path):
    from fused_imgproc.hub import load_config_dict

    assert load_config_dict(REPO, cache_dir=tmp_path) == {"crop_size": 32, "value": "main"}
    with pytest.raises(OSError, match="does not contain a file named 'other.json'"):
        load_config_dict(REPO, filename="other.json", cache_dir=tmp_path)


def test_hub_module_does_not_import_the_mixin():
    """hub.py sits below config.py: it imports nothing from the package, so there is no import circle."""
    import ast

    import fused_imgproc.hub as hub_module

    tree = ast.parse(Path(hub_module.__file__).read_text())
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in hub.py: {ast.unparse(node)}"
            modules.append(node.module)
    assert not [name for name in modules if name.split(".")[0] == "fused_imgproc"]
    assert "huggingface_hub" in {name.split(".")[0] for name in modules}  # the walk does see the lazy imports
