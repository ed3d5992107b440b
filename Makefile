# sitsr — the two commands: `make book` (the main job) and `make test`.
# Both create .venv on a fresh machine. Stages of `make book` are incremental:
# a stage reruns only when its inputs or parameters changed; `make book FORCE=1` reruns all.

SHELL := /bin/bash
# glibc malloc keeping freed tensor buffers instead of returning them to the kernel: sampling a
# 384x384 crop takes 0.29 s instead of 0.33 s on the 2-core CPU (fewer page faults), same results.
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736
export MALLOC_TOP_PAD_ ?= 1073741824
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SITSR := $(VENV)/bin/sitsr
JB := $(VENV)/bin/jupyter-book
STAMP := .stamps

# Parameters of the main job (override on the command line: make book REGION=arctic PROFILE=full)
REGION ?= central
SEED ?= 0
START ?= 2020-10-18
END ?= 2021-04-15
KERNEL_KM ?= 120
SIC_KERNEL_KM ?= 24
PROFILE ?= quick
MEMBERS ?= 30
EVAL_DAYS ?= 2
RESUME ?=
# The sensitivity sweep (notebook 05): quick = sampling-side choices + the runs trained here; full trains one per choice
SWEEP_PRESET ?= $(if $(filter full,$(PROFILE)),full,quick)
SWEEP_MEMBERS ?= 10
FORCE ?=

MOORINGS := data/moorings/$(REGION)
DATASET := data/$(REGION).zarr
RUN := runs/$(PROFILE)-$(REGION)
REGRESSION := runs/regression-$(PROFILE)-$(REGION)
ANOMALY := runs/anomaly-$(PROFILE)-$(REGION)
SITSIC := runs/sitsic-$(PROFILE)-$(REGION)
FULLTARGET := runs/fulltarget-$(PROFILE)-$(REGION)
OUTPUTS := outputs/$(REGION)
SWEEP := outputs/sweep-$(PROFILE)-$(REGION)
EXECUTED := notebooks/executed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
LIB := $(wildcard sitsr_core/*.py)

# A parameter stamp is rewritten only when its content changes, so targets depending on it rebuild then.
param = $(shell mkdir -p $(STAMP); f=$(STAMP)/$(1).params; echo '$(2)' | cmp -s - $$f || echo '$(2)' > $$f; echo $$f)
SYNTH_P := $(call param,synth-$(REGION),$(SEED) $(START) $(END))
DATASET_P := $(call param,dataset-$(REGION),$(KERNEL_KM) $(SIC_KERNEL_KM))
EVAL_P := $(call param,evaluate-$(PROFILE)-$(REGION),$(MEMBERS) $(EVAL_DAYS))
SWEEP_P := $(call param,sweep-$(PROFILE)-$(REGION),$(SWEEP_PRESET) $(SWEEP_MEMBERS))
MODEL_LIB := $(addprefix sitsr_core/,config.py networks.py diffusion.py train.py checkpoint.py)
ifneq ($(FORCE),)
$(shell rm -rf $(STAMP)/*.done)
endif

.PHONY: help venv test book lab bench clean system-deps
.DEFAULT_GOAL := help

help:
	@echo "make book   dataset -> training -> notebooks -> Jupyter Book HTML (book/_build/html/index.html)"
	@echo "make test   the test suite (unit, notebooks with smoke parameters, book in headless chromium)"
	@echo "make lab    JupyterLab with the project kernel"
	@echo "make bench  benchmarks against diffusers (benchmarks/README.md), not part of make test"
	@echo "Parameters: REGION=$(REGION) PROFILE=$(PROFILE) SEED=$(SEED) START=$(START) END=$(END) MEMBERS=$(MEMBERS)"
	@echo "            EVAL_DAYS=$(EVAL_DAYS) SWEEP_PRESET=$(SWEEP_PRESET) SWEEP_MEMBERS=$(SWEEP_MEMBERS)"
	@echo "            RESUME=1 (continue an interrupted training or sweep) FORCE=1 (rerun all)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0            # first: the CPU wheel (a bare `torch` pulls CUDA)
	$(PY) -m pip install -q -e '.[notebooks,readers,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sitsr)" >/dev/null
	@touch $@

venv: $(VENV)/.installed

# System packages used by the tests: headless chromium (book check) and udunits (CF checker).
system-deps:
	@if ! command -v chromium >/dev/null || ! ldconfig -p | grep -q libudunits2; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium libudunits2-0 >/dev/null; \
	  else echo "install chromium and libudunits2-0 (sudo apt-get install chromium libudunits2-0)"; exit 1; fi; fi

test: venv system-deps
	$(PY) -m pytest -q -m "not book" tests
	SITSR_EXECUTED=build/smoke/executed $(PY) -m pytest -q -m book tests

# ---- the main job -------------------------------------------------------------------------
$(STAMP)/synth-$(REGION).done: $(SYNTH_P) sitsr_core/synth.py sitsr_core/synth_files.py sitsr_core/io.py | venv
	$(SITSR) synth --region $(REGION) --start $(START) --end $(END) --seed $(SEED) --out $(MOORINGS) --overwrite
	@touch $@

$(STAMP)/dataset-$(REGION).done: $(STAMP)/synth-$(REGION).done $(DATASET_P) sitsr_core/dataset.py sitsr_core/filters.py
	$(SITSR) dataset --moorings '$(MOORINGS)/Moorings_*.nc' --out $(DATASET) --kernel-km $(KERNEL_KM) \
	  --sic-kernel-km $(SIC_KERNEL_KM) --overwrite
	@touch $@

# The deterministic baseline: the same network trained with MSE, at the same budget. Trained first:
# the main model generates its residual. Training starts afresh whenever its inputs changed;
# RESUME=1 continues an interrupted run instead.
$(STAMP)/regression-$(PROFILE)-$(REGION).done: $(STAMP)/dataset-$(REGION).done $(MODEL_LIB)
	$(if $(RESUME),,rm -rf $(REGRESSION))
	$(SITSR) train --data $(DATASET) --run $(REGRESSION) --profile $(PROFILE) --set train.objective=regression \
	  $(if $(RESUME),--resume)
	@touch $@

# The main model (CorrDiff-style): diffusion on sit - the regression's prediction, with that prediction
# as an input channel (hr_mean_conditioning), same budget.
$(STAMP)/train-$(PROFILE)-$(REGION).done: $(STAMP)/regression-$(PROFILE)-$(REGION).done $(MODEL_LIB)
	$(if $(RESUME),,rm -rf $(RUN))
	$(SITSR) train --data $(DATASET) --run $(RUN) --profile $(PROFILE) --set data.target=residual \
	  --set data.base_conditioning=true --base-run $(REGRESSION) $(if $(RESUME),--resume)
	@touch $@

# Models for the comparisons of notebooks 05 and 06, all at the same budget: the slides' anomaly
# target (sit - sit_lr), the full field, and an anomaly model on sit and sic alone (observation
# products without deformation).
$(STAMP)/anomaly-$(PROFILE)-$(REGION).done: $(STAMP)/dataset-$(REGION).done $(MODEL_LIB)
	$(if $(RESUME),,rm -rf $(ANOMALY))
	$(SITSR) train --data $(DATASET) --run $(ANOMALY) --profile $(PROFILE) $(if $(RESUME),--resume)
	@touch $@

$(STAMP)/sitsic-$(PROFILE)-$(REGION).done: $(STAMP)/dataset-$(REGION).done $(MODEL_LIB)
	$(if $(RESUME),,rm -rf $(SITSIC))
	$(SITSR) train --data $(DATASET) --run $(SITSIC) --profile $(PROFILE) --set data.features=sit_lr,sic_lr \
	  $(if $(RESUME),--resume)
	@touch $@

$(STAMP)/fulltarget-$(PROFILE)-$(REGION).done: $(STAMP)/dataset-$(REGION).done $(MODEL_LIB)
	$(if $(RESUME),,rm -rf $(FULLTARGET))
	$(SITSR) train --data $(DATASET) --run $(FULLTARGET) --profile $(PROFILE) --set data.target=full \
	  $(if $(RESUME),--resume)
	@touch $@

# Ensembles of the test days (outputs/REGION/sit_hrai_YYYYMMDD.nc) and their scores.
$(STAMP)/evaluate-$(PROFILE)-$(REGION).done: $(STAMP)/train-$(PROFILE)-$(REGION).done \
    $(STAMP)/regression-$(PROFILE)-$(REGION).done $(EVAL_P) sitsr_core/sampling.py sitsr_core/evaluate.py sitsr_core/metrics.py
	rm -rf $(OUTPUTS) $(REGRESSION)/outputs_test
	$(SITSR) evaluate --run $(RUN) --regression-run $(REGRESSION) --data $(DATASET) --split test \
	  --members $(MEMBERS) --max-days $(EVAL_DAYS) --outputs $(OUTPUTS) --out $(OUTPUTS)/metrics_test.json
	@touch $@

# The sensitivity sweep: one CSV row per changed choice ($(SWEEP)/sweep.csv), continued where it stopped.
$(STAMP)/sweep-$(PROFILE)-$(REGION).done: $(STAMP)/train-$(PROFILE)-$(REGION).done \
    $(STAMP)/anomaly-$(PROFILE)-$(REGION).done $(STAMP)/fulltarget-$(PROFILE)-$(REGION).done \
    $(STAMP)/sitsic-$(PROFILE)-$(REGION).done $(SWEEP_P) \
    sitsr_core/sweep.py sitsr_core/sampling.py sitsr_core/evaluate.py sitsr_core/metrics.py
	$(SITSR) sweep --run $(RUN) --data $(DATASET) --preset $(SWEEP_PRESET) --anomaly-run $(ANOMALY) \
	  --full-target-run $(FULLTARGET) \
	  --sitsic-run $(SITSIC) --moorings '$(MOORINGS)/Moorings_*.nc' --members $(SWEEP_MEMBERS) \
	  --out $(SWEEP)/sweep.csv $(if $(RESUME),,--overwrite)
	@touch $@

$(EXECUTED)/%.ipynb: notebooks/%.ipynb notebooks/parameters.yml $(LIB) $(STAMP)/evaluate-$(PROFILE)-$(REGION).done \
    $(STAMP)/sitsic-$(PROFILE)-$(REGION).done $(STAMP)/sweep-$(PROFILE)-$(REGION).done
	@mkdir -p $(EXECUTED)
	$(SITSR) notebooks --set book --region $(REGION) --profile $(PROFILE) --only $* --out $(EXECUTED)

book: $(patsubst notebooks/%,$(EXECUTED)/%,$(NOTEBOOKS))
	$(MAKE) --no-print-directory book-html FORCE=  # FORCE=1 must not clear the stamps again

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# Benchmarks against diffusers (benchmarks/README.md); BENCH_ARGS="--small --threads 1" for a quick check
BENCH_ARGS ?=
bench: venv
	$(PY) -c "import diffusers" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.run --device cpu --out benchmarks/results/cpu.json $(BENCH_ARGS)

clean: book-clean
	rm -rf $(STAMP) $(EXECUTED) build
	@echo "kept data/, runs/ and outputs/ (remove them by hand)"

-include book/book.mk
