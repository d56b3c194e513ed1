# `make run` and `make test` each set up .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench setup clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# The demo tumor database is built on first use (about 2 minutes on 2 cores); an interrupted
# build resumes, and a complete one is a no-op.
run: $(STAMP)
	$(BIN)/python main.py --check-gui
	$(BIN)/python main.py tumor build-db --preset demo --db "$$($(BIN)/python -c \
		'from engine.tumor.database import default_db_dir; print(default_db_dir("demo"))')"
	$(BIN)/python main.py

test: $(STAMP)
	PYTHONUTF8=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:cacheprovider

BENCHES := startup gui_viewer tumor_solver tumor_inverse pvrnn fsde
bench: $(STAMP)
	for b in $(BENCHES); do echo "== $$b"; QT_QPA_PLATFORM=offscreen $(BIN)/python benchmarks/$$b.py || exit 1; done

clean-venv:
	rm -rf $(VENV)
