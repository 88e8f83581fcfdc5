# causadv: `make paper` rebuilds every figure and table, `make test` runs the tests.
# Both create the virtual environment (.venv) from requirements.txt when it is missing or stale.
#
#   make paper [PROFILE=paper|smoke] [WORKERS=N]
#                                      execute every notebook (pattern rules: `make -j2 paper` works), print
#                                      each notebook's wall time, write paper_figures/[smoke/]index.html
#                                      and the claims at a glance, paper_figures/[smoke/]reproduction.md
#   make test                          each smoke-profile notebook executed once, under nbval on an empty
#                                      cache (`make nbval`), then pytest (library; the real smoke web page)
#   make data                          fetch missing data files into the cache, then verify all by sha256
#   make zoo-check                     top-1 of every zoo model on its datasets
#   make lab                           JupyterLab on the paired notebooks
#   make samples                       (re)write the committed evaluation sample lists
SHELL := /bin/bash
.DELETE_ON_ERROR:

PROFILE ?= paper
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.causadv-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED := 0

# Where the shared experiment runs (README, "Running on many cores or a cluster"): CAUSADV_SCHEDULER, exported to
# every notebook; WORKERS=N is the short form of CAUSADV_SCHEDULER=local:N (a Dask LocalCluster of N worker
# processes, one thread each); CAUSADV_SCHEDULER=tcp://HOST:PORT names a running Dask scheduler; unset: in-process.
WORKERS ?=
ifneq ($(WORKERS),)
export CAUSADV_SCHEDULER := local:$(WORKERS)
endif

# Your model through the paper (README, "Bring your own model"):
#   make paper MODEL=path/to/my_cnn.keras DATASET=cifar10 NORMALIZE=[0,1] OUT=runs/my_cnn
# MODEL: a zoo name, or a .keras/.tflite file (then NORMALIZE: [0,1], [-1,1], imagenet-caffe or imagenet-torch);
# DATASET: the one it classifies. With MODEL, the experiment notebooks (02 onwards, not 09's tour) run on it.
# OUT: where figures, tables, results JSON (OUT/), executed notebooks (OUT/notebooks/) and the page go;
# default paper_figures/[PROFILE/] and build/[PROFILE/], or with MODEL runs/MODEL_NAME[/PROFILE] (git-ignored),
# so that a model of yours never overwrites the paper's results.
MODEL ?=
DATASET ?=
NORMALIZE ?=
OUT ?= $(if $(MODEL),runs/$(basename $(notdir $(MODEL)))$(if $(filter paper,$(PROFILE)),,/$(PROFILE)))
MODEL_FILE := $(wildcard $(MODEL))
$(if $(and $(MODEL),$(if $(DATASET),,missing)),$(error MODEL=$(MODEL) needs DATASET=cifar10 or DATASET=imagenet))
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.py))
ALL_NAMES := $(notdir $(basename $(NOTEBOOKS)))
MODEL_NOTEBOOKS := 02 03 04 05 06 07 08
NAMES := $(if $(MODEL),$(filter $(MODEL_NOTEBOOKS:%=%_%),$(ALL_NAMES)),$(ALL_NAMES))
FIGURES := $(if $(OUT),$(abspath $(OUT)),$(if $(filter paper,$(PROFILE)),paper_figures,paper_figures/$(PROFILE)))
BUILD := $(if $(OUT),$(abspath $(OUT))/notebooks,$(if $(filter paper,$(PROFILE)),build,build/$(PROFILE)))
PARAMS := -p profile $(PROFILE) $(if $(MODEL),-r model '$(MODEL)' -r dataset '$(DATASET)') \
  $(if $(NORMALIZE),-r normalize '$(NORMALIZE)') $(if $(OUT),-r out '$(FIGURES)')
EXECUTED := $(NAMES:%=$(BUILD)/%.ipynb)
LIB := $(shell find causadv_lib -name '*.py') $(wildcard data_manifest/*.json data_manifest/samples/*.txt)

.PHONY: clean-cache paper test pytest smoke nbval data zoo-check lab samples env clean
paper: $(EXECUTED)
	$(call PAGE,$(BUILD),$(PROFILE),$(FIGURES))

# $(call PAGE,build dir,profile,figures dir): timings.tsv from each notebook's NAME.seconds, printed, then the
# web page (FIGURES/index.html).
define PAGE
@{ printf 'notebook\tseconds\n'; for n in $(NAMES); do test -f $(1)/$$n.seconds && printf '%s\t%s\n' $$n "$$(cat $(1)/$$n.seconds)"; done; } > $(1)/timings.tsv
@echo "wall time of each notebook's last execution ($(1)/timings.tsv):"
@awk -F'\t' 'NR > 1 { printf "  %-28s %8.1f s\n", $$1, $$2; t += $$2 } END { printf "  %-28s %8.1f s\n", "total", t }' $(1)/timings.tsv
$(PY) -m causadv_lib.webpage --profile $(2) --build-dir $(1) --figures-dir $(3)
endef

env: $(STAMP)
$(STAMP): requirements.txt pyproject.toml etc/ipython_kernel_config.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (found %s); set PYTHON=/path/to/python3.11" % sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	install -D -m 644 etc/ipython_kernel_config.py $(VENV)/etc/ipython/ipython_kernel_config.py
	touch $@

# Every data file is verified by sha256 once per manifest change (verified files are remembered by size+mtime).
$(BUILD)/.data-verified: $(STAMP) $(wildcard data_manifest/*.json)
	@mkdir -p $(BUILD)
	$(PY) -m causadv_lib.data verify
	touch $@

# notebooks/NAME.py -> $(BUILD)/NAME.ipynb, executed by papermill with the profile (and MODEL, DATASET, NORMALIZE, OUT) parameters.
# The executed notebook appears only when the run succeeds; a failed run is kept as NAME.failed.ipynb.
$(BUILD)/%.ipynb: notebooks/%.py $(LIB) $(MODEL_FILE) $(STAMP) | $(BUILD)/.data-verified
	@mkdir -p $(BUILD)
	@date +%s.%N > $(BUILD)/$*.started
	jupytext --quiet --to ipynb --set-kernel python3 --output $(BUILD)/$*.src.ipynb $<
	papermill --no-progress-bar --log-output -k python3 $(PARAMS) \
	  $(BUILD)/$*.src.ipynb $(BUILD)/$*.run.ipynb || { mv $(BUILD)/$*.run.ipynb $(BUILD)/$*.failed.ipynb 2>/dev/null; rm -f $(BUILD)/$*.src.ipynb; exit 1; }
	rm -f $(BUILD)/$*.src.ipynb $(BUILD)/$*.failed.ipynb
	mv $(BUILD)/$*.run.ipynb $@
	@if test -s $(BUILD)/$*.started; then \
	  awk -v s="$$(cat $(BUILD)/$*.started)" -v e="$$(date +%s.%N)" 'BEGIN { printf "%.1f\n", e - s }' > $(BUILD)/$*.seconds; \
	  rm -f $(BUILD)/$*.started; echo "$*: $$(cat $(BUILD)/$*.seconds) s"; fi

# Stage order: notebooks 03 onwards read the attacks and CI vectors that 02 stores in the cache, so they
# run after it (order-only: a rerun of 02 alone does not make them stale; a library change does).
SETUP_NOTEBOOK := $(BUILD)/02_experiment_setup.ipynb
AFTER_SETUP := $(filter-out $(BUILD)/00_% $(BUILD)/01_% $(SETUP_NOTEBOOK),$(EXECUTED))
$(AFTER_SETUP): | $(SETUP_NOTEBOOK)

# `make test` executes each smoke notebook once: nbval runs it (every cell must pass) on an empty results cache
# (only the data verification record is carried over), and tests/nbval_build.py writes that run's executed
# notebook to build/smoke/ (NAME.failed.ipynb if a cell failed), while the notebook writes paper_figures/smoke/.
# The smoke page is built from them; then pytest checks the library and that real page (CAUSADV_REQUIRE_SMOKE=1
# turns a missing smoke build into a failure, not a skip). nbval runs the notebooks in order (02 fills the
# cache that 03 onwards read). `make smoke` is the incremental papermill build on the default cache.
SMOKE_OUT := build/smoke
NBVAL_CACHE := $(SMOKE_OUT)/nbval-cache
NBVAL_SRC := $(SMOKE_OUT)/nbval-src
test: nbval
	CAUSADV_REQUIRE_SMOKE=1 $(PY) -m pytest tests -q

pytest: $(STAMP)
	$(PY) -m pytest tests -q

smoke: $(STAMP)
	$(MAKE) paper PROFILE=smoke

nbval: $(STAMP)
	$(PY) -m causadv_lib.data verify
	rm -rf $(NBVAL_CACHE) $(NBVAL_SRC) && mkdir -p $(NBVAL_CACHE)
	-cp "$$($(PY) -c 'from causadv_lib import config; print(config.cache_dir())')/verified.json" $(NBVAL_CACHE)/ 2>/dev/null
	$(PY) tests/nbval_build.py prepare --profile smoke --out $(NBVAL_SRC) $(NOTEBOOKS) > /dev/null
	CAUSADV_CACHE=$(abspath $(NBVAL_CACHE)) $(PY) -m pytest -q -p no:cacheprovider -p tests.nbval_build --nbval-lax \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-write $(SMOKE_OUT) $(NAMES:%=$(NBVAL_SRC)/%.ipynb)
	rm -rf $(NBVAL_CACHE) $(NBVAL_SRC)
	$(call PAGE,$(SMOKE_OUT),smoke,paper_figures/smoke)

data: $(STAMP)
	$(PY) -m causadv_lib.data fetch

zoo-check: $(STAMP)
	$(PY) -m causadv_lib.zoo check

samples: $(STAMP)
	$(PY) -m causadv_lib.samples --write

# JupyterLab refuses to start as root ("Running as root is not recommended"), which is how many containers
# run: add --allow-root there. tests/test_lab.py starts Lab the same way and opens a notebook through it.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	jupytext --sync $(NOTEBOOKS)
	jupyter lab --notebook-dir=. $(LAB_FLAGS) build/lab

# Temporary files left by writers killed mid-write (kill -9); a later write to the same entry removes them too.
clean-cache: $(STAMP)
	$(PY) -m causadv_lib.cache

clean:
	rm -rf build
	find paper_figures -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
