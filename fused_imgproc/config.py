"""`ImageProcessingMixin`: image processor configurations as JSON dicts and objects (`preprocessor_config.json`).

`ImageProcessingMixin` mirrors transformers' `ImageProcessingMixin` (same method names, arguments, file names
and JSON layout), so a file written here loads in transformers' `AutoImageProcessor` and the other way round.
Finding, reading and writing the files (local paths, the Hugging Face Hub, offline mode, uploads) is in `hub.py`.
It imports neither torch nor transformers.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np

from .hub import (
    IMAGE_PROCESSOR_NAME,
    PROCESSOR_NAME,
    atomic_write_text,
    is_offline_mode,
    load_config_dict,
    read_json_dict,
    upload_config_file,
)

__all__ = ["IMAGE_PROCESSOR_NAME", "PROCESSOR_NAME", "ImageProcessingMixin", "is_offline_mode"]

logger = logging.getLogger(__name__)

# Loader options accepted by `from_pretrained` / `get_image_processor_dict` on top of the named ones. They are
# consumed here and never reach `from_dict`.
_IGNORED_LOADER_KWARGS = ("proxies", "resume_download", "_from_auto", "_from_pipeline", "_commit_hash")


def _to_jsonable(value: Any) -> Any:
    """Convert numpy arrays/scalars, enums and tuples (recursively) into plain JSON types."""
    if isinstance(value, dict):
        return {key: _to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, enum.Enum):
        raw = value.value
        if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
            return int(raw)
        return _to_jsonable(raw)
    return value


class ImageProcessingMixin:
    """Loading and saving of image processor configurations (`preprocessor_config.json`).

    The constructor keeps every keyword argument as an attribute, so keys this library does not know are written
    back unchanged on save. `to_dict` / `to_json_string` / `save_pretrained` produce the same JSON as transformers.
    """

    # Keyword arguments that `from_dict` passes through `__init__` (so that they are normalised there) instead of
    # setting them on the instance afterwards. Subclasses may extend it.
    _init_kwargs: tuple[str, ...] = ("size", "crop_size")

    def __init__(self, **kwargs):
        """Set every keyword argument as an attribute.

        `feature_extractor_type` and `image_processor_type` are dropped (they are derived from the class), and
        `processor_class` is kept as `_processor_class`.
        """
        kwargs.pop("feature_extractor_type", None)
        kwargs.pop("image_processor_type", None)
        self._processor_class = kwargs.pop("processor_class", None)
        for key, value in kwargs.items():
            try:
                setattr(self, key, value)
            except AttributeError:
                logger.error("Can't set %s with value %r for %s", key, value, type(self).__name__)
                raise

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        revision: str = "main",
        **kwargs,
    ):
        r"""
        Instantiate an image processor from a config file, a directory or a Hub repo.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                One of:

                - the path of a JSON *file*, e.g. `./my_model/preprocessor_config.json`;
                - a *directory* holding `preprocessor_config.json` (or a `processor_config.json` with an
                  `"image_processor"` entry), e.g. one written by [`~ImageProcessingMixin.save_pretrained`];
                - the *repo id* of a model on the Hugging Face Hub, e.g. `openai/clip-vit-base-patch32`.
            cache_dir (`str` or `os.PathLike`, *optional*):
                Directory of the Hub cache to use instead of the default one.
            force_download (`bool`, *optional*, defaults to `False`):
                Whether to download the file again even if it is cached.
            local_files_only (`bool`, *optional*, defaults to `False`):
                Whether to use only cached files and never reach the Hub. Offline mode (`HF_HUB_OFFLINE=1`)
                implies it.
            token (`str` or `bool`, *optional*):
                The token sent as HTTP bearer authorization. `None` uses the locally saved token, if any.
            revision (`str`, *optional*, defaults to `"main"`):
                A branch name, tag name or commit id of the Hub repo.
            subfolder (`str`, *optional*, defaults to `""`):
                A folder inside the directory or repo that holds the config file.
            return_unused_kwargs (`bool`, *optional*, defaults to `False`):
                If `True`, return `(image_processor, unused_kwargs)`, where `unused_kwargs` holds the keyword
                arguments that are not image processor attributes.
            kwargs (`dict[str, Any]`, *optional*):
                Values overriding the loaded ones; see [`~ImageProcessingMixin.from_dict`].

        Returns:
            An instance of `cls` (or a tuple `(instance, unused_kwargs)` with `return_unused_kwargs=True`).

        Raises:
            `OSError`: the file or repo cannot be found or read, the revision does not exist, the file is not
            cached while offline, or the file is not valid JSON.
        """
        kwargs["cache_dir"] = cache_dir
        kwargs["force_download"] = force_download
        kwargs["local_files_only"] = local_files_only
        kwargs["token"] = token
        kwargs["revision"] = revision
        image_processor_dict, kwargs = cls.get_image_processor_dict(pretrained_model_name_or_path, **kwargs)
        return cls.from_dict(image_processor_dict, **kwargs)

    @classmethod
    def get_image_processor_dict(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        Resolve a file, directory or Hub repo id to the parameters for [`~ImageProcessingMixin.from_dict`].

        A `processor_config.json` with an `"image_processor"` entry is preferred; otherwise
        `preprocessor_config.json` is read.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A JSON file, a directory or a Hub repo id (see [`~ImageProcessingMixin.from_pretrained`]).
            cache_dir (`str` or `os.PathLike`, *optional*):
                Directory of the Hub cache.
            force_download (`bool`, *optional*, defaults to `False`):
                Whether to download the files again even if they are cached.
            local_files_only (`bool`, *optional*, defaults to `False`):
                Whether to use only cached files; forced on in offline mode.
            token (`str` or `bool`, *optional*):
                The token for the Hub.
            revision (`str`, *optional*, defaults to `"main"`):
                The Hub revision (branch, tag or commit id).
            subfolder (`str`, *optional*, defaults to `""`):
                A folder inside the directory or repo holding the config file.
            image_processor_filename (`str`, *optional*, defaults to `"preprocessor_config.json"`):
                The name of the config file.

        Returns:
            `tuple[dict[str, Any], dict[str, Any]]`: the parameters, and the keyword arguments not consumed here.

        Raises:
            `OSError`: see [`~ImageProcessingMixin.from_pretrained`].
        """
        cache_dir = kwargs.pop("cache_dir", None)
        force_download = kwargs.pop("force_download", False)
        local_files_only = kwargs.pop("local_files_only", False)
        token = kwargs.pop("token", None)
        use_auth_token = kwargs.pop("use_auth_token", None)
        if token is None and use_auth_token is not None:
            token = use_auth_token
        revision = kwargs.pop("revision", None) or "main"
        subfolder = kwargs.pop("subfolder", "") or ""
        user_agent = kwargs.pop("user_agent", None)
        filename = kwargs.pop("image_processor_filename", None) or IMAGE_PROCESSOR_NAME
        for name in _IGNORED_LOADER_KWARGS:
            kwargs.pop(name, None)

        data = load_config_dict(
            os.fspath(pretrained_model_name_or_path),
            filename=filename,
            subfolder=subfolder,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            user_agent=user_agent,
        )
        return data, kwargs

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs):
        """
        Instantiate an image processor from a dictionary of parameters.

        Args:
            image_processor_dict (`dict[str, Any]`):
                The parameters, e.g. from [`~ImageProcessingMixin.to_dict`] or a loaded config file. It is not
                modified.
            return_unused_kwargs (`bool`, *optional*, defaults to `False`):
                If `True`, also return the keyword arguments that were not used.
            kwargs (`dict[str, Any]`, *optional*):
                Overrides. Keys in `cls._init_kwargs` (`size`, `crop_size`) replace the dictionary's values before
                `__init__`, so they are normalised like loaded values (`crop_size=84` becomes
                `{"height": 84, "width": 84}`). Any other key naming an existing attribute is set after
                construction; the rest are unused.

        Returns:
            An instance of `cls`, or `(instance, unused_kwargs)` with `return_unused_kwargs=True`.
        """
        image_processor_dict = dict(image_processor_dict)
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        for key in getattr(cls, "_init_kwargs", ("size", "crop_size")):
            if key in kwargs:
                image_processor_dict[key] = kwargs.pop(key)

        image_processor = cls(**image_processor_dict)

        unused = {}
        for key, value in kwargs.items():
            if hasattr(image_processor, key):
                setattr(image_processor, key, value)
            else:
                unused[key] = value

        logger.debug("Image processor %s", image_processor)
        if return_unused_kwargs:
            return image_processor, unused
        return image_processor

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike):
        """
        Instantiate an image processor from a JSON file of parameters.

        Args:
            json_file (`str` or `os.PathLike`):
                Path of the JSON file.

        Returns:
            An instance of `cls`.

        Raises:
            `OSError`: the file cannot be read, is not valid JSON, or does not hold a JSON object.
        """
        return cls(**read_json_dict(os.fspath(json_file)))

    # ------------------------------------------------------------------ serialising

    def to_dict(self) -> dict[str, Any]:
        """
        Serialise this instance to a dictionary.

        Returns:
            `dict[str, Any]`: a deep copy of the public attributes (and `_processor_class`), plus
            `"image_processor_type"`, the class name.
        """
        output = {
            key: copy.deepcopy(value)
            for key, value in self.__dict__.items()
            if not key.startswith("_") or key == "_processor_class"
        }
        output["image_processor_type"] = type(self).__name__
        return output

    def to_json_string(self) -> str:
        """
        Serialise this instance to the JSON text of `preprocessor_config.json`.

        `_processor_class` is written as `"processor_class"` when set and dropped otherwise; numpy arrays and
        scalars, enums (e.g. `resample`) and tuples become plain JSON values. Keys are sorted, indented by 2.

        Returns:
            `str`: the JSON text, ending with a newline.
        """
        dictionary = self.to_dict()
        processor_class = dictionary.pop("_processor_class", None)
        if processor_class is not None:
            dictionary["processor_class"] = processor_class
        return json.dumps(_to_jsonable(dictionary), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike):
        """
        Save this instance to a JSON file, atomically (a temporary file in the same directory, then a rename).

        Args:
            json_file_path (`str` or `os.PathLike`):
                Path of the JSON file to write.
        """
        atomic_write_text(os.fspath(json_file_path), self.to_json_string())

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"

    # ------------------------------------------------------------------ saving and pushing

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        """
        Save this image processor as `<save_directory>/preprocessor_config.json`, reloadable with
        [`~ImageProcessingMixin.from_pretrained`] (ours or transformers').

        Args:
            save_directory (`str` or `os.PathLike`):
                Directory to write to; created if missing. An existing *file* at that path is an error.
            push_to_hub (`bool`, *optional*, defaults to `False`):
                Whether to also upload the file to the Hub.
            repo_id (`str`, *optional*, defaults to the name of `save_directory`):
                The repo to push to (created if missing); without a namespace it goes to the token's user.
            commit_message (`str`, *optional*, defaults to `"Upload image processor"`):
                Message of the Hub commit.
            token (`str` or `bool`, *optional*):
                The token for the Hub.
            private (`bool`, *optional*):
                Visibility of the repo if it has to be created.
            revision (`str`, *optional*):
                Branch to push to.
            create_pr (`bool`, *optional*, defaults to `False`):
                Whether to open a pull request instead of committing to the branch.

        Returns:
            `list[str]`: the path of the written file.

        Raises:
            `OSError`: `save_directory` is an existing file (transformers raises `AssertionError` there; an
            `OSError` is what the rest of this API raises for path problems).
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise OSError(f"Provided path ({save_directory}) should be a directory, not a file")
        push_kwargs = {}
        for key in ("repo_id", "commit_message", "token", "private", "revision", "create_pr"):
            if key in kwargs:
                push_kwargs[key] = kwargs.pop(key)
        if push_to_hub and kwargs:
            raise TypeError(f"save_pretrained(push_to_hub=True) got unexpected keyword arguments: {sorted(kwargs)}")

        os.makedirs(save_directory, exist_ok=True)
        output_file = os.path.join(save_directory, IMAGE_PROCESSOR_NAME)
        self.to_json_file(output_file)
        logger.info("Image processor saved in %s", output_file)

        if push_to_hub:
            repo_id = push_kwargs.pop("repo_id", None) or os.path.basename(os.path.normpath(save_directory))
            self._upload(output_file, repo_id, **push_kwargs)
        return [output_file]

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ):
        """
        Upload this image processor's `preprocessor_config.json` to a Hub repo (created if missing).

        Args:
            repo_id (`str`):
                The repo to push to, `namespace/name`, or `name` for the token's user.
            commit_message (`str`, *optional*, defaults to `"Upload image processor"`):
                Message of the commit.
            private (`bool`, *optional*):
                Visibility of the repo if it has to be created.
            token (`str` or `bool`, *optional*):
                The token for the Hub; `None` uses the locally saved one.
            revision (`str`, *optional*):
                Branch to push to.
            create_pr (`bool`, *optional*, defaults to `False`):
                Whether to open a pull request instead of committing to the branch.

        Returns:
            `huggingface_hub.CommitInfo`: the commit (its `oid`, `commit_url`, `pr_url`, ...).
        """
        with tempfile.TemporaryDirectory() as tmp_dir:
            (path,) = self.save_pretrained(tmp_dir)
            return self._upload(
                path,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    @staticmethod
    def _upload(path, repo_id, commit_message=None, private=None, token=None, revision=None, create_pr=False):
        """Create the repo if needed (resolving a bare name to `user/name`) and upload the file at `path`."""
        return upload_config_file(
            path,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
