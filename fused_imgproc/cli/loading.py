"""`--config`: the processor from a local folder or file, or from the Hub, with errors that say what to do.

A value that looks like a local path and does not exist is refused at once ("no such file or folder"), never sent
to the Hub as a repo id. While huggingface_hub retries an unreachable Hub (its own retries, kept: five per request,
backing off 1 to 8 s, about 23 s for each of the two config files it tries; no setting shortens them), the command
says so once on stderr, with the ways out; the final error repeats them.
"""

from __future__ import annotations

import logging
import os
import sys

from ..hub import looks_like_local_path
from .common import PROG, CLIError

DEFAULT_CONFIG = "CLIPImageProcessor (bundled default CLIP config: shortest edge 224, bicubic, center crop 224)"
OFFLINE_HINT = ("set HF_HUB_OFFLINE=1 to use only the local cache (no requests), or pass a local folder (or "
                "preprocessor_config.json) to --config")
_RETRY_LOGGER = "huggingface_hub.utils._http"  # where huggingface_hub logs "Retrying in 1s [Retry 1/5]"
# Exception classes (by name, anywhere in the class hierarchy) that mean the Hub could not be reached: httpx's
# and requests' transport errors, the built-in ones, and huggingface_hub's "not cached and not reachable".
_UNREACHABLE = {"TransportError", "ConnectionError", "TimeoutError", "Timeout", "gaierror",
                "LocalEntryNotFoundError", "OfflineModeIsEnabled"}


def load_processor(config: str | None):
    """`(processor, a description of where its config came from)`; `None` gives the bundled CLIP defaults.

    Raises:
        `CLIError`: the path does not exist, or the config does not load (with a hint when the Hub is unreachable).
    """
    from ..processors import AutoImageProcessor, CLIPImageProcessor

    if config is None:
        return CLIPImageProcessor(), DEFAULT_CONFIG
    source = config
    if looks_like_local_path(config):
        source = os.path.expanduser(config)
        if not os.path.exists(source):
            raise CLIError(f"--config {config!r}: no such file or folder")
    watcher = _RetryWatcher()
    logger = logging.getLogger(_RETRY_LOGGER)
    logger.addFilter(watcher)
    try:
        processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError, TypeError) as error:
        hint = unreachable_hint(error) or (OFFLINE_HINT if watcher.fired else None)
        raise CLIError(f"cannot load --config {config!r}: {error}" + (f" ({hint})" if hint else "")) from None
    finally:
        logger.removeFilter(watcher)
    return processor, f"{type(processor).__name__} from {config}"


def unreachable_hint(error: BaseException) -> str | None:
    """What to do when `error` (or an exception it was raised from) says the Hub could not be reached."""
    if not any(_UNREACHABLE & {cls.__name__ for cls in type(e).__mro__} for e in _chain(error)):
        return None
    if _offline():
        return ("HF_HUB_OFFLINE is set, so only the local cache is read: load it once with network access, or "
                "pass a local folder (or preprocessor_config.json) to --config")
    return f"no network? {OFFLINE_HINT}"


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class _RetryWatcher(logging.Filter):
    """On huggingface_hub's first "Retrying in ..." warning, says once on stderr that the Hub does not answer."""

    def __init__(self):
        super().__init__()
        self.fired = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.fired and record.getMessage().startswith("Retrying in"):
            self.fired = True
            print(f"{PROG}: the Hub does not answer; huggingface_hub retries for up to about a minute "
                  f"(Ctrl-C stops). Without network, {OFFLINE_HINT}", file=sys.stderr, flush=True)
        return True  # huggingface_hub's own warning is still shown
