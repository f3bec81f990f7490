"""`python -m fused_imgproc ...` is the `fused-imgproc` command (see the `fused_imgproc.cli` package)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
