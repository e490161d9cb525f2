# Two commands do everything on a fresh machine:
#   make demo   create .venv, install, ingest the shipped sample as 8 snapshots, print the dedup summary,
#               write build/demo-report.html
#   make test   create .venv, install with test extras (and nix-bin where apt can), run the lint and type
#               gate, build the docs strictly, run the whole suite
# Also: make test-fast (the gate and the suite without tests marked slow, on every core: under a
#       minute once mypy's cache is warm),
#       make docs (the site into build/site/, opens from disk), make bench (the benchmarks).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DATASET := build/demo-dataset

.PHONY: demo test test-fast lint docs venv bench clean

$(BIN)/storelab: pyproject.toml storelab/chunking/_cdc.c storelab/castore/_encode.c storelab/ingest/_smallfiles.c storelab/ingest/_listing.c storelab/nar/_scan.c storelab/_c/digest.h storelab/_c/readfile.h  # the C extensions build on install
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,notebooks]'
	$(BIN)/python -m compileall -q storelab  # as a wheel install would: the commands start faster
	touch $@

venv: $(BIN)/storelab

demo: venv
	rm -rf $(DEMO_DATASET)
	for tree in $$($(BIN)/storelab datasets unpack pypi-sample --to build/samples); do \
		$(BIN)/storelab ingest-dir $$tree --out $(DEMO_DATASET) || exit 1; \
	done
	$(BIN)/storelab stats $(DEMO_DATASET)
	$(BIN)/storelab stats $(DEMO_DATASET) --json > build/demo-stats.json
	$(BIN)/storelab report $(DEMO_DATASET) -o build/demo-report.html
	@echo "tables: $(DEMO_DATASET)/  figures as JSON: build/demo-stats.json  report: build/demo-report.html"
	@echo "notebooks: $(BIN)/jupyter lab notebooks/"

test: venv lint docs
	bash scripts/install-test-tools.sh
	$(BIN)/python -m pytest

test-fast: venv lint
	$(BIN)/python -m pytest -m "not slow" -q -n auto

lint: venv
	$(BIN)/ruff check storelab tests benchmarks scripts
	$(BIN)/mypy

docs: venv
	$(BIN)/python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

bench: venv
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/chunkers.py
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/nar.py
	$(BIN)/python benchmarks/upload.py
	$(BIN)/python benchmarks/analysis.py
	$(BIN)/python benchmarks/layers.py

clean:
	rm -rf build .pytest_cache .hypothesis
