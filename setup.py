"""The package's one compiled part: fused_imgproc._native, the CPU resampler (fused_imgproc/_native.c).

Everything else is in pyproject.toml. The extension is optional: where it cannot be compiled (no C compiler), the
install still succeeds and the numpy backend resizes through Pillow, with the same outputs.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "unix":  # gcc or clang; MSVC keeps its defaults
            for extension in self.extensions:
                # -fwrapv: int32 sums that wrap are defined (the vectorised sums add in another order than Pillow;
                # the total is exact either way)
                extension.extra_compile_args = ["-O3", "-std=c11", "-fwrapv", "-fvisibility=hidden"]
        super().build_extensions()


setup(
    ext_modules=[Extension("fused_imgproc._native", ["fused_imgproc/_native.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
