"""The `fused-imgproc` command line.

    fused-imgproc preprocess INPUTS... --out FILE [--config REPO_OR_PATH] [--batch-size N] [--device D] [--dtype T]
                             [--backend B] [--max-pixels N] [--max-decoded-mib MIB] [--samples] [--quiet]
    fused-imgproc bench [--size HxW] [--batch-size N] [--repeat R] [--plot FILE] [--no-transformers]
    fused-imgproc info

Exit status: 0 success; 1 some inputs were skipped (the output holds the others) or none could be read;
2 an error that stops the run, with nothing written: a usage error (bad arguments, unwritable output, a config that
does not load or whose output shape depends on the image, an unavailable device or backend), reported before any
image is read, or images that cannot be stacked together (different channel counts); 130 interrupted (Ctrl-C), and
in `preprocess` 143 (SIGTERM) or 129 (SIGHUP), each after removing the scratch and temporary files; 141 stdout was
closed early (e.g. `| head`), as for a process killed by SIGPIPE: the rest of the report is dropped quietly.

One module per subcommand (`preprocess`, `bench`, `info`), each with an `add_<name>_arguments(parser)`; the
helpers live apart: `common` (the error type, argument types, versions, the machine), `loading` (`--config`),
`inputs` (files, folders and globs into the files to read), `decode` (reading images within bounds), `files` (the
output file), `signals` (SIGTERM and friends as an exception) and `chart` (`bench --plot`). Only this module knows
all three subcommands, and none of the others imports it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import __version__
from .bench import add_bench_arguments
from .common import PROG, CLIError
from .files import OUTPUT_FORMATS
from .info import add_info_arguments
from .preprocess import add_preprocess_arguments
from .signals import Interrupted

EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a process killed by a closed pipe

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The `fused-imgproc` parser with its three subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Bit-exact image preprocessing for vision models (transformers-compatible).",
        epilog="exit status: 0 ok, 1 some inputs skipped or none readable, 2 usage error (nothing written)",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_preprocess_arguments(commands.add_parser(
        "preprocess", help="preprocess image files into one pixel_values file",
        description="Preprocess images into pixel_values (N, C, H, W) plus the source paths, in order, in one "
        f"{'/'.join(OUTPUT_FORMATS)} file. Unreadable files are reported by name and skipped (exit status 1).",
        allow_abbrev=False,
    ))
    add_bench_arguments(commands.add_parser(
        "bench", help="time our backends against transformers on this machine",
        description="Time CLIP preprocessing side by side: fused_imgproc's backends and, when installed, "
        "transformers' processor; medians; --plot draws the table.",
        allow_abbrev=False,
    ))
    add_info_arguments(commands.add_parser(
        "info", help="versions, available backends, GPU",
        description="Print versions, the available backends and the GPU, if any.",
        allow_abbrev=False,
    ))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs `fused-imgproc` with `argv` (default: `sys.argv[1:]`) and returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors (already printed by argparse)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        return stdout_closed()
    except CLIError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:  # Ctrl-C; in `preprocess`, also SIGTERM and SIGHUP (cli/signals.py)
        signum = getattr(interruption, "signum", signal.SIGINT)
        by = f" by {signal.Signals(signum).name}" if isinstance(interruption, Interrupted) else ""
        print(f"{PROG}: interrupted{by}; nothing written", file=sys.stderr)
        return 128 + signum


def stdout_closed() -> int:
    """stdout's reader has gone (`fused-imgproc bench | head -1`): point stdout at the null device, so that
    nothing else fails on it (the interpreter flushes it at exit), and end quietly, as Python's documentation on
    SIGPIPE advises."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file descriptor (e.g. replaced in-process)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stdout until the process ends)
    return EXIT_STDOUT_CLOSED
