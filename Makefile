# Two commands on a fresh machine with Python >= 3.10 and make:
#   make demo   train, sample and evaluate a small UDLM on QM9 (CPU is fine)
#   make test   run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is pinned first: a looser requirement would fetch a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
RUN    ?= runs/demo

.PHONY: demo test install docs gpu-wheels clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)

# clean-fid (the Inception-v3 of FID / IS, eval images) goes in without its dependencies: its metadata
# asks for torchvision, which would pull another torch build, and its TorchScript path never imports it.
CLEANFID ?= clean-fid==0.1.35

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(CLEANFID)
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[qm9]'
	$(PY) -m pip install -q --no-deps $(CLEANFID)
	touch $@

install: $(VENV)/.installed-demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

demo: $(VENV)/.installed-demo
	RUN=$(RUN) DISCDIFF=$(VENV)/bin/discdiff bash scripts/demo.sh

docs: $(VENV)/.installed-test
	$(PY) -m discdiff.config.reference --write docs/configuration.md

# Wheels for bench/gpu_suite.py on the device machine (Python 3.12): see bench/README.md.
gpu-wheels: | $(PY)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl -r bench/gpu-wheels.txt
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist only: built here, pure Python

clean:
	rm -rf $(VENV) runs
