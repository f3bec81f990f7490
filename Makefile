# The two commands (see README):
#   make demo   set up a virtual environment with the core package, preprocess sample images, print a summary
#   make test   set up the test environment (CPU torch 2.13.0, transformers as the oracle) and run the tests
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip

.PHONY: demo test fuzz bench gpu-check clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Core only: numpy, Pillow, huggingface_hub.
$(VENV)/.core: pyproject.toml setup.py fused_imgproc/_native.c | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

# Test extra. torch is pinned to the CPU build first, so nothing pulls CUDA packages; triton is pinned to the
# version the interpreter traps of docs/BEHAVIOUR.md section 10 were checked with. Without a GPU the kernel tests
# run through the Triton interpreter.
$(VENV)/.test: pyproject.toml setup.py fused_imgproc/_native.c | $(VENV)/bin/python
	$(PIP) install -q torch==2.13.0 triton==3.9.0
	$(PIP) install -q -e ".[test]"
	touch $@ $(VENV)/.core

# The main job: the bundled sample images (JPEG, PNG, WebP, GIF, BMP, TIFF) through the default CLIP config into
# build/demo.npz (core dependencies only: no torch), then the summary.
demo: $(VENV)/.core
	@mkdir -p build
	$(VENV)/bin/fused-imgproc preprocess --samples --out build/demo.npz

# FUSED_IMGPROC_REQUIRE_NATIVE=1: the CPU resampler (a C extension the install compiles) must have been built, so
# its tests fail rather than skip where it was not.
test: $(VENV)/.test
	FUSED_IMGPROC_REQUIRE_NATIVE=1 $(PY) -m pytest -q tests benchmarks --benchmark-disable

# The fuzz test's long profile (tests/test_fuzz.py): 5000 random examples instead of CI's fixed 1500. FUZZ_EXAMPLES,
# FUZZ_SEED (repeat a run) and FUZZ_KEEP_GOING=1 (list every distinct failure) pass through the environment.
fuzz: $(VENV)/.test
	FUZZ_PROFILE=long $(PY) -m pytest -q -s tests/test_fuzz.py

bench: $(VENV)/.test
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=median,iqr,min,rounds --benchmark-sort=name

# The GPU check (benchmarks/gpu/README.md): on a CUDA machine, the test suite and the GPU benchmark, each under a
# hard time limit, 8 minutes in all; results in benchmarks/results/ (and $OUT when set). It installs nothing: it
# runs with the venv's python when there is one, else $(PYTHON); `make gpu-check PY=python3` picks the interpreter
# (a system python with torch, triton and transformers preinstalled, after `pip install --no-deps
# --no-build-isolation -e .`). Options pass through ARGS: `make gpu-check ARGS=--smoke` runs the tiny smoke mode
# (through the Triton interpreter without a GPU; results in build/gpu-check-smoke/), ARGS="--parts bench" only
# the benchmark.
ifeq ($(origin PY),file)
GPU_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
else
GPU_PY = $(PY)
endif

gpu-check:
	$(GPU_PY) benchmarks/gpu/check.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
