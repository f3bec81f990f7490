# The two commands (see README):
#   make demo   set up a virtual environment with the core package, preprocess sample images, print a summary
#   make test   set up the test environment (CPU torch 2.13.0, transformers as the oracle) and run the tests
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip

.PHONY: demo test fuzz bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Core only: numpy, Pillow, huggingface_hub.
$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

# Test extra. torch is pinned to the CPU build first, so nothing pulls CUDA packages; triton is pinned to the
# version the interpreter traps of docs/BEHAVIOUR.md section 10 were checked with. Without a GPU the kernel tests
# run through the Triton interpreter.
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q torch==2.13.0 triton==3.9.0
	$(PIP) install -q -e ".[test]"
	touch $@ $(VENV)/.core

# The main job: the bundled sample images (JPEG, PNG, WebP, GIF, BMP, TIFF) through the default CLIP config into
# build/demo.npz (core dependencies only: no torch), then the summary.
demo: $(VENV)/.core
	@mkdir -p build
	$(VENV)/bin/fused-imgproc preprocess --samples --out build/demo.npz

test: $(VENV)/.test
	$(PY) -m pytest -q tests benchmarks --benchmark-disable

# The fuzz test's long profile (tests/test_fuzz.py): 5000 random examples instead of CI's fixed 1500. FUZZ_EXAMPLES,
# FUZZ_SEED (repeat a run) and FUZZ_KEEP_GOING=1 (list every distinct failure) pass through the environment.
fuzz: $(VENV)/.test
	FUZZ_PROFILE=long $(PY) -m pytest -q -s tests/test_fuzz.py

bench: $(VENV)/.test
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=median,iqr,min,rounds --benchmark-sort=name

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
