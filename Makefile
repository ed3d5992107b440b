# sitsr — the two commands: `make book` (the main job) and `make test`.
# Both create .venv on a fresh machine. Stages of `make book` are incremental:
# a stage reruns only when its inputs or parameters changed; `make book FORCE=1` reruns all.

SHELL := /bin/bash
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
FORCE ?=

MOORINGS := data/moorings/$(REGION)
DATASET := data/$(REGION).zarr
EXECUTED := notebooks/executed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
LIB := $(wildcard sitsr_core/*.py)

# A parameter stamp is rewritten only when its content changes, so targets depending on it rebuild then.
param = $(shell mkdir -p $(STAMP); f=$(STAMP)/$(1).params; echo '$(2)' | cmp -s - $$f || echo '$(2)' > $$f; echo $$f)
SYNTH_P := $(call param,synth-$(REGION),$(SEED) $(START) $(END))
DATASET_P := $(call param,dataset-$(REGION),$(KERNEL_KM) $(SIC_KERNEL_KM))
ifneq ($(FORCE),)
$(shell rm -rf $(STAMP)/*.done)
endif

.PHONY: help venv test book lab clean system-deps
.DEFAULT_GOAL := help

help:
	@echo "make book   dataset -> training -> notebooks -> Jupyter Book HTML (book/_build/html/index.html)"
	@echo "make test   the test suite (unit, notebooks with smoke parameters, book in headless chromium)"
	@echo "make lab    JupyterLab with the project kernel"
	@echo "Parameters: REGION=$(REGION) SEED=$(SEED) START=$(START) END=$(END) FORCE=1"

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

$(EXECUTED)/%.ipynb: notebooks/%.ipynb notebooks/parameters.yml $(LIB) $(STAMP)/dataset-$(REGION).done
	@mkdir -p $(EXECUTED)
	$(SITSR) notebooks --set book --region $(REGION) --only $* --out $(EXECUTED)

book: $(patsubst notebooks/%,$(EXECUTED)/%,$(NOTEBOOKS))
	$(MAKE) --no-print-directory book-html

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean: book-clean
	rm -rf $(STAMP) $(EXECUTED) build

-include book/book.mk
