# The README's two commands: `make demo` and `make test`. Each builds .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP_FLAGS := --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test lint docs bench bench-peers venv clean

venv: $(STAMP)

# neuro-low-light (MIT) carries the Zero-DCE++ baseline's weights; it declares opencv-python, which only its
# video I/O uses, so it goes in without dependencies (examples/trico/zero_dce.py).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[trico,dev]'
	$(PY) -m pip install $(PIP_FLAGS) --no-deps neuro-low-light
	# BRISQUE's SVM model (examples/trico/noref.py reads brisque/models/ only): its declared OpenCV,
	# libsvm-official (compiled from source) and requests are needed by its own code, never imported here
	$(PY) -m pip install $(PIP_FLAGS) --no-deps brisque
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.trico demo

lint: $(STAMP)
	$(PY) -m ruff check .

# The site (docs/*.md + the API reference generated from the docstrings) into site/; --strict turns every
# warning (broken link or anchor, page missing from the nav, docstring griffe cannot parse, cross-reference
# that no longer resolves) into a failure. No --quiet: mkdocs 1.6 then drops the warnings before --strict counts
# them, and the build passes whatever is broken.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

test: lint docs
	$(PY) -m pytest -n 2 --dist loadfile -q

# Peer libraries for benchmarks/peers.py. betty-ml and boat-torch declare dependencies that
# pip refuses or that would replace the pinned torch: they go in without them.
$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[bench]'
	-$(PY) -m pip install $(PIP_FLAGS) --no-deps betty-ml boat-torch higher
	@touch $@

bench: $(VENV)/.bench
	$(PY) benchmarks/hypergradient.py --out benchmarks/results

bench-peers: $(VENV)/.bench
	$(PY) benchmarks/peers.py --quick --out benchmarks/results

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
