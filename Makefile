# kdrepro: `make reproduce` regenerates results/, `make test` checks everything. Both create the environment
# (a virtual environment in .venv) and install the default dataset when they are missing.

PROFILE ?= cpu
PAPERS ?=
# two notebooks at once, one thread each: on two cores that beats one notebook on two threads for small networks
JOBS ?= 2
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: reproduce test bench gpu-check report list lab clean env data

reproduce: env data ## train $(PROFILE)'s runs ($(JOBS) workers), run every notebook (resumes where it stopped), then the summary
	$(PYTHON) -m kdrepro reproduce --profile $(PROFILE) --jobs $(JOBS) $(if $(PAPERS),--papers $(PAPERS))

# Test files run $(JOBS) at a time (pytest-xdist), each file's tests, and each notebook's cells, in one process.
# The notebooks run as `make reproduce` runs them: `work` first trains every run their plan lists, into a cache of
# their own; a model or record the notebooks add after it is a run the plan does not list, and fails the test.
# The notebooks' kernels compute with one thread each (tests/conftest.py shares the cores out for the unit tests):
# two kernels of a thread per core each would oversubscribe the cores, which slows them many times over.
SMOKE_CACHE := .cache/smoke-test
test: env data ## unit tests, then every notebook under nbval on the smoke profile
	$(PYTHON) -m pytest -n $(JOBS) --dist loadfile tests
	rm -rf $(SMOKE_CACHE)
	KDREPRO_CACHE=$(SMOKE_CACHE) $(PYTHON) -m kdrepro work --profile smoke --workers $(JOBS)
	ls $(SMOKE_CACHE)/models $(SMOKE_CACHE)/runs > $(SMOKE_CACHE)/listed.txt
	KDREPRO_CACHE=$(SMOKE_CACHE) KDREPRO_PROFILE=smoke OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PYTHON) -m pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env -p no:cacheprovider notebooks
	ls $(SMOKE_CACHE)/models $(SMOKE_CACHE)/runs | diff $(SMOKE_CACHE)/listed.txt - || \
		{ echo "the notebooks trained or measured runs that 'python -m kdrepro plan --profile smoke' does not list"; exit 1; }

bench: env data ## KD training throughput, notebook wall times and Seq-KD decoding speed, written to results/bench.md
	$(PYTHON) benchmarks/bench.py

gpu-check: env data ## on a GPU, minutes: every notebook's smoke profile, each paper's paper code path on synthetic files, KD images/s
	$(PYTHON) benchmarks/gpu_check.py

report: env ## rebuild the summary of $(PROFILE) from results/
	$(PYTHON) -m kdrepro report --profile $(PROFILE)

list: env
	$(PYTHON) -m kdrepro list

lab: env data ## JupyterLab on the notebooks, from the project's environment (as root too, as in containers)
	$(VENV)/bin/jupyter lab --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean: ## remove caches and smoke outputs; committed results stay
	rm -rf .cache results/smoke .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test,cluster]'
	touch $@

# Fashion-MNIST from Debian when neither it nor $KDREPRO_DATA is there; elsewhere the loader says how to get it.
data:
	@if [ -z "$$KDREPRO_DATA" ] && [ ! -e $(FASHION_MNIST) ] && command -v apt-get >/dev/null; then \
		echo "installing Fashion-MNIST: $(SUDO) apt-get install dataset-fashion-mnist"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi
