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
CONSTRAINTS := requirements/constraints.txt
LINT_PATHS := sitsr_core tests book benchmarks tools
# Where pip takes torch from (see help): empty = the default index (PyPI, or a local wheel mirror).
TORCH_INDEX ?=
TORCH_INDEX_CPU := https://download.pytorch.org/whl/cpu
TORCH_INDEX_CUDA := https://download.pytorch.org/whl/cu126
# Device of the training, evaluation and sweep stages (cpu or cuda); empty: each command's default.
DEVICE ?=

# Parameters of the main job (override on the command line: make book REGION=arctic PROFILE=full)
REGION ?= central
SEED ?= 0
START ?= 2020-10-18
END ?= 2021-04-15
KERNEL_KM ?= 120
SIC_KERNEL_KM ?= 24
PROFILE ?= quick
MEMBERS ?= 30
EVAL_DAYS ?= 6
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

# Stamps: files whose content is what a stage computes from; each is rewritten only when that content changes,
# so make's timestamps do the rest. Parameters are stamped by the shell, runs and code by tools/stamps.py (a
# run's resolved config hash plus a hash of the code it runs, docstrings and comments stripped). Nothing runs at
# parse time; the stamp recipes carry `+`, so `make -n` runs them too and lists only what would really rebuild.
param = +@mkdir -p $(STAMP); echo '$(2)' | cmp -s - $(STAMP)/$(1).params || echo '$(2)' > $(STAMP)/$(1).params

# The models of `make book`, one row each: NAME  RUN-FOLDER  BASE-RUN  CONFIG-OVERRIDES (--set, spaces between).
# The main model (CorrDiff-style) generates the residual of the regression baseline and reads its prediction as an
# input channel; the others are the comparisons of notebooks 05 and 06 at the same budget: the slides' anomaly
# target (sit - sit_lr), the full field, and an anomaly model on sit and sic alone (observation products).
RUNS := regression main anomaly sitsic fulltarget
regression.dir := $(REGRESSION)
regression.base :=
regression.set := train.objective=regression
main.dir := $(RUN)
main.base := regression
main.set := data.target=residual data.base_conditioning=true
anomaly.dir := $(ANOMALY)
anomaly.base :=
anomaly.set :=
sitsic.dir := $(SITSIC)
sitsic.base :=
sitsic.set := data.features=sit_lr,sic_lr
fulltarget.dir := $(FULLTARGET)
fulltarget.base :=
fulltarget.set := data.target=full

run_stamp = $(STAMP)/run-$(1)-$(PROFILE)-$(REGION)
run_spec = 'run:$(1)-$(PROFILE)-$(REGION)=$(PROFILE) $($(1).set)'
# The code each later stage runs (a stamp per stage; the modules they import are followed).
CODE_STAGES := dataset evaluate sweep notebooks
dataset.code := sitsr_core.dataset
evaluate.code := sitsr_core.evaluate
sweep.code := sitsr_core.sweep
notebooks.code := sitsr_core.cli sitsr_core.widgets sitsr_core.plotting
STAMP_SPECS = $(foreach r,$(RUNS),$(call run_spec,$(r))) $(foreach s,$(CODE_STAGES),'code:$(s)=$($(s).code)')

# Every run and code stamp in one python call (0.6 s); always checked, rewritten only on change.
$(STAMP)/.checked: ALWAYS | venv
	+@$(PY) tools/stamps.py $(STAMP) $(STAMP_SPECS)
$(foreach r,$(RUNS),$(call run_stamp,$(r)).config) $(foreach s,$(CODE_STAGES),$(STAMP)/code-$(s).hash): \
    $(STAMP)/.checked
	+@: written by the rule above, re-read by make even under -n thanks to +

$(STAMP)/synth-$(REGION).params: ALWAYS
	$(call param,synth-$(REGION),$(SEED) $(START) $(END))
$(STAMP)/dataset-$(REGION).params: ALWAYS
	$(call param,dataset-$(REGION),$(KERNEL_KM) $(SIC_KERNEL_KM))
$(STAMP)/evaluate-$(PROFILE)-$(REGION).params: ALWAYS
	$(call param,evaluate-$(PROFILE)-$(REGION),$(MEMBERS) $(EVAL_DAYS))
$(STAMP)/sweep-$(PROFILE)-$(REGION).params: ALWAYS
	$(call param,sweep-$(PROFILE)-$(REGION),$(SWEEP_PRESET) $(SWEEP_MEMBERS))

.PHONY: ALWAYS
ALWAYS:

DEVICE_FLAG := $(if $(DEVICE),--device $(DEVICE))

.PHONY: help venv test test-fast lint book lab bench clean system-deps
.DEFAULT_GOAL := help

help:
	@echo "make book       dataset -> training -> notebooks -> Jupyter Book HTML (book/_build/html/index.html)"
	@echo "make test       the full test suite, ruff included (unit, notebooks with smoke parameters, book in chromium)"
	@echo "make test-fast  ruff and the tests not marked slow or book (no trained runs, notebooks or book; < 1 min)"
	@echo "make lab        JupyterLab with the project kernel"
	@echo "make bench      benchmarks against diffusers (benchmarks/README.md), not part of make test"
	@echo "Parameters: REGION=$(REGION) PROFILE=$(PROFILE) SEED=$(SEED) START=$(START) END=$(END) MEMBERS=$(MEMBERS)"
	@echo "            EVAL_DAYS=$(EVAL_DAYS) SWEEP_PRESET=$(SWEEP_PRESET) SWEEP_MEMBERS=$(SWEEP_MEMBERS)"
	@echo "            DEVICE=cpu|cuda (training, evaluation, sweep; default: each command's own)"
	@echo "            RESUME=1 (continue an interrupted training or sweep) FORCE=1 (rerun all)"
	@echo "Install:    TORCH_INDEX=$(TORCH_INDEX_CPU) (CPU-only machine)"
	@echo "            TORCH_INDEX=$(TORCH_INDEX_CUDA) (CUDA 12.6 machine); empty: the default index"

# torch comes first, from TORCH_INDEX when set (PyPI's Linux torch is the multi-GB CUDA build; the CPU index has
# the CPU-only wheel), then the package with its extras; every version is pinned by CONSTRAINTS.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[notebooks,readers,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sitsr)" >/dev/null
	@touch $@

venv: $(VENV)/.installed

# System packages used by the tests: headless chromium (book check) and udunits (CF checker).
system-deps:
	@if ! command -v chromium >/dev/null || ! ldconfig -p | grep -q libudunits2; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium libudunits2-0 >/dev/null; \
	  else echo "install chromium and libudunits2-0 (sudo apt-get install chromium libudunits2-0)"; exit 1; fi; fi

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)

# The full suite (README and CI): ruff, every test but the book check, then the book built from the smoke notebooks.
test: lint system-deps
	$(PY) -m pytest -q -m "not book" tests
	SITSR_EXECUTED=build/smoke/executed $(PY) -m pytest -q -m book tests

# The fast tier while editing: no trained-run fixture, notebook or book (markers in tests/conftest.py).
test-fast: lint system-deps
	$(PY) -m pytest -q -m "not slow and not book" tests

# ---- the main job -------------------------------------------------------------------------
$(STAMP)/synth-$(REGION).done: $(STAMP)/synth-$(REGION).params sitsr_core/synth.py sitsr_core/synth_files.py \
    sitsr_core/fileio.py $(if $(FORCE),ALWAYS) | venv
	$(SITSR) synth --region $(REGION) --start $(START) --end $(END) --seed $(SEED) --out $(MOORINGS) --overwrite
	@touch $@

$(STAMP)/dataset-$(REGION).done: $(STAMP)/synth-$(REGION).done $(STAMP)/dataset-$(REGION).params \
    $(STAMP)/code-dataset.hash
	$(SITSR) dataset --moorings '$(MOORINGS)/Moorings_*.nc' --out $(DATASET) --kernel-km $(KERNEL_KM) \
	  --sic-kernel-km $(SIC_KERNEL_KM) --overwrite
	@touch $@

# One training rule per row of RUNS. A run is trained again when its resolved config, the code it runs, the
# dataset or its base run changed (or it never finished); then its folder starts afresh, unless RESUME=1 continues
# an interrupted training.
define TRAIN_RULE
$(STAMP)/$(1)-$(PROFILE)-$(REGION).done: $(call run_stamp,$(1)).config $(STAMP)/dataset-$(REGION).done \
    $(if $($(1).base),$(STAMP)/$($(1).base)-$(PROFILE)-$(REGION).done)
	@$$(if $$(RESUME),,test ! -e $($(1).dir) || echo "$($(1).dir): training afresh (newer: $$?)")
	$$(if $$(RESUME),,rm -rf $($(1).dir))
	$$(SITSR) train --data $$(DATASET) --run $($(1).dir) --profile $$(PROFILE) $(addprefix --set ,$($(1).set)) \
	  $(if $($(1).base),--base-run $($($(1).base).dir)) $$(DEVICE_FLAG) $$(if $$(RESUME),--resume)
	@touch $$@
endef
$(foreach r,$(RUNS),$(eval $(call TRAIN_RULE,$(r))))
done = $(STAMP)/$(1)-$(PROFILE)-$(REGION).done

# Ensembles of the test days (outputs/REGION/sit_hrai_YYYYMMDD.nc) and their scores.
$(STAMP)/evaluate-$(PROFILE)-$(REGION).done: $(call done,main) $(call done,regression) \
    $(STAMP)/evaluate-$(PROFILE)-$(REGION).params $(STAMP)/code-evaluate.hash
	rm -rf $(OUTPUTS) $(REGRESSION)/outputs_test
	$(SITSR) evaluate --run $(RUN) --regression-run $(REGRESSION) --data $(DATASET) --split test \
	  --members $(MEMBERS) --max-days $(EVAL_DAYS) --outputs $(OUTPUTS) --out $(OUTPUTS)/metrics_test.json \
	  $(DEVICE_FLAG)
	@touch $@

# The sensitivity sweep: one CSV row per changed choice ($(SWEEP)/sweep.csv), continued where it stopped.
$(STAMP)/sweep-$(PROFILE)-$(REGION).done: $(foreach r,main anomaly fulltarget sitsic,$(call done,$(r))) \
    $(STAMP)/sweep-$(PROFILE)-$(REGION).params $(STAMP)/code-sweep.hash
	$(SITSR) sweep --run $(RUN) --data $(DATASET) --preset $(SWEEP_PRESET) --anomaly-run $(ANOMALY) \
	  --full-target-run $(FULLTARGET) \
	  --sitsic-run $(SITSIC) --moorings '$(MOORINGS)/Moorings_*.nc' --members $(SWEEP_MEMBERS) \
	  --out $(SWEEP)/sweep.csv $(if $(RESUME),,--overwrite) $(DEVICE_FLAG)
	@touch $@

$(EXECUTED)/%.ipynb: notebooks/%.ipynb notebooks/parameters.yml $(STAMP)/code-notebooks.hash \
    $(STAMP)/evaluate-$(PROFILE)-$(REGION).done $(call done,sitsic) $(STAMP)/sweep-$(PROFILE)-$(REGION).done
	@mkdir -p $(EXECUTED)
	$(SITSR) notebooks --set book --region $(REGION) --profile $(PROFILE) --only $* --out $(EXECUTED)

book: $(patsubst notebooks/%,$(EXECUTED)/%,$(NOTEBOOKS))
	$(MAKE) --no-print-directory book-html

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# Benchmarks against diffusers (benchmarks/README.md); BENCH_ARGS="--small --threads 1" for a quick check
BENCH_ARGS ?=
bench: venv
	$(PY) -c "import diffusers" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.run --device $(or $(DEVICE),cpu) --out benchmarks/results/$(or $(DEVICE),cpu).json $(BENCH_ARGS)

# The stamps stay with data/, runs/ and outputs/ they describe: a later make book retrains nothing unchanged.
clean: book-clean
	rm -rf $(EXECUTED) build
	@echo "kept data/, runs/, outputs/ and their $(STAMP)/ (remove them by hand; make book FORCE=1 reruns all)"

-include book/book.mk
