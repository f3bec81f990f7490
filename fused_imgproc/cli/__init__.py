"""The `fused-imgproc` command line.

    fused-imgproc preprocess INPUTS... --out FILE [--config REPO_OR_PATH] [--batch-size N] [--device D] [--dtype T]
                             [--backend B] [--samples] [--quiet]
    fused-imgproc bench [--size HxW] [--batch-size N] [--repeat R] [--plot FILE.png] [--no-transformers]
    fused-imgproc info

Exit status: 0 success; 1 some inputs were skipped (the output holds the others) or none could be read;
2 a usage error (bad arguments, unwritable output, unloadable config, unavailable backend): nothing is written.

One module per subcommand (`preprocess`, `bench`, `info`), each with an `add_<name>_arguments(parser)`; the
shared helpers live in `common` (errors, argument types, versions, loading the processor) and `files` (inputs,
images and the output file). Only this module knows all three subcommands.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .bench import add_bench_arguments
from .common import PROG, CLIError
from .files import OUTPUT_FORMATS
from .info import add_info_arguments
from .preprocess import add_preprocess_arguments

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The `fused-imgproc` parser with its three subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Bit-exact image preprocessing for vision models (transformers-compatible).",
        epilog="exit status: 0 ok, 1 some inputs skipped or none readable, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_preprocess_arguments(commands.add_parser(
        "preprocess", help="preprocess image files into one pixel_values file",
        description="Preprocess images into pixel_values (N, C, H, W) plus the source paths, in order, in one "
        f"{'/'.join(OUTPUT_FORMATS)} file. Unreadable files are reported by name and skipped (exit status 1).",
    ))
    add_bench_arguments(commands.add_parser(
        "bench", help="time our backends against transformers on this machine",
        description="Time CLIP preprocessing side by side: fused_imgproc's backends and, when installed, "
        "transformers' processor; medians; --plot draws the table.",
    ))
    add_info_arguments(commands.add_parser(
        "info", help="versions, available backends, GPU",
        description="Print versions, the available backends and the GPU, if any.",
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
        return args.func(args)
    except CLIError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return 130
