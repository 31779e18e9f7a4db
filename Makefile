PYTHON ?= .venv/bin/python
# tenants and guests need the venv's ziglang: `make setup` first (demo and test do it).

# ---------------------------------------------------------------------------
# Guest modules (C SDK in guest_sdk/c): tenants and test guests.
#   make tenants  -> build/tenants/<tenant>.wasm, one per tenants/<tenant>/ (all its .c files)
#   make guests   -> build/guests/<name>.wasm, one per tests/guests/<name>.c
# ---------------------------------------------------------------------------

CC = $(PYTHON) -m ziglang cc
WERROR ?= -Werror
# -g0: no DWARF (zig cc emits it by default); the name section stays, so traps name functions.
GUEST_CFLAGS = --target=wasm32-freestanding -std=c11 -O2 -g0 -Wall -Wextra $(WERROR) -Iguest_sdk/c
# No --export-dynamic: the SDK marks its exports with export_name, so only the
# ABI exports and `memory` leave the module.
GUEST_LDFLAGS = -nostdlib -Wl,--no-entry -Wl,-z,stack-size=65536

SDK_SRC := $(wildcard guest_sdk/c/*.c)
SDK_HDR := $(wildcard guest_sdk/c/*.h)

TENANT_WASM := $(patsubst tenants/%/,build/tenants/%.wasm,$(wildcard tenants/*/))
GUEST_WASM := $(patsubst tests/guests/%.c,build/guests/%.wasm,$(wildcard tests/guests/*.c))

.PHONY: wasm tenants guests clean-wasm
wasm: tenants guests
tenants: $(TENANT_WASM)
guests: $(GUEST_WASM)

.SECONDEXPANSION:
build/tenants/%.wasm: $$(wildcard tenants/%/*.c) $(SDK_SRC) $(SDK_HDR)
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(filter %.c,$^)

build/guests/%.wasm: tests/guests/%.c $(SDK_SRC) $(SDK_HDR)
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(filter %.c,$^)

# The releases of the "order" test workflow share their source.
build/guests/order_v1.wasm build/guests/order_v2.wasm build/guests/order_v3.wasm: tests/guests/order.h

build/bench/%.wasm: bench/guests/%.c $(SDK_SRC) $(SDK_HDR)
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(filter %.c,$^)

clean-wasm:
	rm -rf build/tenants build/guests build/bench

# ---------------------------------------------------------------------------
# (host targets go below)
# ---------------------------------------------------------------------------

VENV ?= .venv
DEMO_DB ?= build/demo/dwf.sqlite3

.PHONY: setup demo test test-fast lint bench bench-smoke bench-guests clean
setup: $(VENV)/.installed

# A fresh machine needs only python3 (3.11+) with venv and make: everything else,
# the guest C compiler included (ziglang), comes from PyPI into the venv.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

demo: setup tenants
	PYTHON=$(PYTHON) DWF_DB=$(DEMO_DB) scripts/demo.sh

test: setup tenants guests
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check host tests bench
	$(VENV)/bin/mypy

# ---------------------------------------------------------------------------
# Benchmarks (bench/): our engine, DBOS Transact (the peer) and raw SQLite in one run.
#   make bench        full sizes (a few minutes): table on stdout, bench/results/latest.json
#                     BENCH_ARGS="--sleepers 10000 --only throughput,dbos-wal" to narrow it
#   make bench-smoke  tiny sizes (seconds), fails if a section fails: CI runs it
# DBOS lives in its own venv (.venv-dbos) so it never reaches the product's environment.
# ---------------------------------------------------------------------------

DBOS_VENV ?= .venv-dbos
BENCH_WASM := $(patsubst bench/guests/%.c,build/bench/%.wasm,$(wildcard bench/guests/*.c))
BENCH_ARGS ?=

bench-guests: $(BENCH_WASM)

$(DBOS_VENV)/.installed: bench/requirements-dbos.txt
	python3 -m venv $(DBOS_VENV)
	$(DBOS_VENV)/bin/pip install --quiet --upgrade pip
	$(DBOS_VENV)/bin/pip install --quiet -r bench/requirements-dbos.txt
	touch $@

bench: setup bench-guests $(DBOS_VENV)/.installed
	$(PYTHON) -m bench --dbos-python $(DBOS_VENV)/bin/python $(BENCH_ARGS)

bench-smoke: setup bench-guests $(DBOS_VENV)/.installed
	$(PYTHON) -m bench --smoke --strict --dbos-python $(DBOS_VENV)/bin/python \
		--out build/bench/smoke.json

clean: clean-wasm
	rm -rf build $(VENV) $(DBOS_VENV)
