# Every target creates .venv if it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench install clean docs

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned in pyproject.toml (extra "torch"): pip takes the CPU build from this
# machine's disk instead of resolving a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,torch]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m dlbatch.demo
	$(PY) -m dlbatch.tour

# the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link fails the build
docs: $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
