# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv on first use
# and installs torch==2.13.0 (a CPU wheel) before anything that depends on it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SNNC := $(VENV)/bin/snnc
EXAMPLE := examples/digits

.PHONY: demo test test-all lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(SNNC) compile $(EXAMPLE)/model.pt --target fpga -o out/demo-build --sample $(EXAMPLE)/sample_input.npy
	$(SNNC) simulate out/demo-build --engine verilator --check cycle --input $(EXAMPLE)/sample_input.npy -o out/demo_spikes_rtl.npz
	$(SNNC) simulate $(EXAMPLE)/model.pt --input $(EXAMPLE)/sample_input.npy -o out/demo_spikes.npz
	$(SNNC) eval $(EXAMPLE)/model.pt --dataset digits

test: venv
	$(PY) -m pytest

test-all: venv
	$(PY) -m pytest -m ''

lint: venv
	$(VENV)/bin/ruff check snnc tests examples tools benchmarks
	$(VENV)/bin/ruff format --check snnc tests examples tools benchmarks

clean:
	rm -rf out .pytest_cache
