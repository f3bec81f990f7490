"""`python -m fused_imgproc ...` is the `fused-imgproc` command (see `fused_imgproc.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
