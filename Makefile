# `make repro` (the main job) and `make test` both bootstrap from nothing; re-running them is fast.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Debian packages: WordNet glosses (the text data set); SuiteSparse headers and a C compiler to build
# scikit-sparse (CHOLMOD, Schrödinger PCA's factorisation); OpenBLAS, which CHOLMOD's supernodal factorisation runs
# ~3x faster on than Debian's reference BLAS.
APT_PACKAGES := wordnet-base libsuitesparse-dev gcc libopenblas0-pthread
KERNEL_STAMP := $(VENV)/share/jupyter/kernels/replab/kernel.json
ASSETS_STAMP := $(VENV)/share/replab/mathjax-3.2.2/tex-svg-full.js

.PHONY: setup system-deps kernels data repro test test-exhaustive lint bench lab report push clean help
help:
	@echo "make repro  - set up everything, run the pipeline (laptop profile), print the report's path"
	@echo "              make repro PAPERS=\"pac accept\" runs those papers' stages (and what they depend on)"
	@echo "make test   - set up everything, run the test suite;  make lint - ruff check + ruff format --check"
	@echo "make test-exhaustive - every paper's stage re-run on the tiny profile, compared byte for byte, the data rebuilt, FaceStudio's paper-profile study and a queued experiment (~14 min)"
	@echo "make lab    - JupyterLab on the notebooks;  make bench - benchmarks;  make push - dvc push"
	@echo "make kernels - compile the fused C compression codec (part of setup; the torch path is used without it)"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt pyproject.toml | system-deps $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

$(KERNEL_STAMP): $(VENV)/.installed
	$(BIN)/python -m ipykernel install --sys-prefix --name replab --display-name "replab (Python 3.11)" >/dev/null

$(ASSETS_STAMP): $(VENV)/.installed
	$(BIN)/replab assets fetch

system-deps:
	@missing="$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $(APT_PACKAGES) >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $(APT_PACKAGES); }; \
	  else \
	    echo "Missing Debian packages. Run, as root:"; \
	    echo "  apt-get install -y $(APT_PACKAGES)"; \
	    exit 1; \
	  fi; \
	fi

# The fused C compression codec (replab.kernels.cpu_codec; not the Jupyter kernel above), compiled with -march=native
# beside its source, git-ignored. As root a missing C compiler is installed; otherwise its absence is reported and
# compression falls back to the torch path. Re-running is instant (the build is keyed on source, flags and CPU).
kernels: $(VENV)/.installed
	@if ! command -v cc >/dev/null && ! command -v gcc >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q gcc >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q gcc; }; \
	fi
	@$(BIN)/python -m replab.kernels.cpu_codec build --optional

setup: system-deps $(VENV)/.installed $(KERNEL_STAMP) $(ASSETS_STAMP) kernels
	@$(BIN)/replab params check --schema-only

data: setup
	$(BIN)/replab data ensure
	@$(BIN)/replab params check

# PAPERS: a subset of paper stages (dvc repro runs what they depend on); the index then marks the rest.
PAPERS ?=
repro: data kernels
	@$(BIN)/replab pipeline generate --check >/dev/null || { echo "dvc.yaml differs from src/replab/papers.py: run '$(BIN)/replab pipeline generate'"; exit 1; }
# --keep-going: an unreachable device target fails its own profile@ stage; every stage not needing it still runs.
ifeq ($(strip $(PAPERS)),)
	$(BIN)/dvc repro --keep-going
	$(BIN)/replab report --readme
else
	$(BIN)/dvc repro $(PAPERS)
	$(BIN)/replab report
endif
	@echo
	@echo "Report: file://$(CURDIR)/reports/index.html"

# The device-target tests start real sshd hosts: as root, a missing OpenSSH server is installed.
test: data kernels
	@if [ ! -x /usr/sbin/sshd ] && [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q openssh-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q openssh-server; }; \
	fi
	$(BIN)/python -m pytest

# The tests marked exhaustive (CI runs them after `make test`): every paper's stage run twice on the tiny profile,
# outputs compared byte for byte, the data rebuilt from scratch, and the slowest checks kept out of `make test`'s
# 15 minutes.
test-exhaustive: data kernels
	$(BIN)/python -m pytest -m exhaustive

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup kernels
	$(BIN)/python benchmarks/spca_scale.py
	$(BIN)/python benchmarks/spca_solver.py --dims 2 --out benchmarks/results/spca_solver_2d_cpu.md
	$(BIN)/python benchmarks/spca_solver.py --dims 3 --repeats 1 --reference-max 20000 --out benchmarks/results/spca_solver_3d_cpu.md
	$(BIN)/python benchmarks/compression.py
	$(BIN)/python benchmarks/confidant_heads.py --no-cuda --out benchmarks/results/confidant_heads_cpu.md

# A notebook run by hand writes to build/scratch/<paper>/, never into a stage's tracked outs.
lab: data
	$(BIN)/jupyter lab notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

report: setup
	$(BIN)/dvc repro report

push: setup
	$(BIN)/dvc push

clean:
	rm -rf build reports/.staging-* reports/*.failed.ipynb .pytest_cache .ruff_cache src/replab/kernels/_codec-*.so
