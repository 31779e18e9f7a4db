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

# TypeScript guests: see the section on guest_sdk/js below.
JS_DIR := guest_sdk/js
JS_BUILD := build/js
JS_ENGINE_DIR := $(JS_BUILD)/engine
JS_TOOLS := $(JS_DIR)/node_modules/.installed
QJS_VERSION := 0.17.0.2
QJS_SRC := $(JS_BUILD)/quickjs_ng-$(QJS_VERSION)/upstream-quickjs
QJS_UNPACKED := $(JS_BUILD)/quickjs_ng-$(QJS_VERSION)/.unpacked
QJS_OBJ := $(patsubst %,$(JS_ENGINE_DIR)/qjs_%.o,quickjs libregexp libunicode dtoa)
JS_RUNTIME_SRC := $(filter-out $(JS_DIR)/runtime/fetch_export.c,$(wildcard $(JS_DIR)/runtime/*.c))
JS_RUNTIME_OBJ := $(patsubst $(JS_DIR)/runtime/%.c,$(JS_ENGINE_DIR)/rt_%.o,$(JS_RUNTIME_SRC))
# The C SDK's journal code, msgpack, fetch binding and strings (not its allocator or exports).
JS_SDK_C := dwf_durable dwf_msgpack dwf_fetch dwf_str
JS_SDK_OBJ := $(patsubst %,$(JS_ENGINE_DIR)/sdk_%.o,$(JS_SDK_C))
JS_ENGINE := $(JS_ENGINE_DIR)/objects.txt
JS_CFLAGS := --target=wasm32-wasi -O2 -g0 -D_GNU_SOURCE -I$(QJS_SRC) -Iguest_sdk/c -I$(JS_DIR)/runtime
JS_SDK_TS := $(wildcard $(JS_DIR)/sdk/*.ts) $(JS_DIR)/dynamic-workflows.d.ts $(JS_DIR)/build.mjs
JS_BUILD_TENANT = node $(JS_DIR)/build.mjs --engine $(JS_ENGINE_DIR) --python $(PYTHON) \
	--work $(JS_BUILD)/work/$(subst /,_,$@)

TS_TENANT_WASM := $(patsubst tenants/%/,build/tenants/%.wasm,$(sort $(dir $(wildcard tenants/*/*.ts))))
TS_GUEST_WASM := $(patsubst tests/guests/js/%.ts,build/guests/js/%.wasm,$(wildcard tests/guests/js/*.ts))

TENANT_WASM := $(patsubst tenants/%/,build/tenants/%.wasm,$(sort $(dir $(wildcard tenants/*/*.c))))
GUEST_WASM := $(patsubst tests/guests/%.c,build/guests/%.wasm,$(wildcard tests/guests/*.c))

.PHONY: wasm tenants guests clean-wasm
wasm: tenants guests
tenants: $(TENANT_WASM) $(TS_TENANT_WASM)
guests: $(GUEST_WASM) $(TS_GUEST_WASM)

.SECONDEXPANSION:
$(TENANT_WASM): build/tenants/%.wasm: $$(wildcard tenants/%/*.c) $(SDK_SRC) $(SDK_HDR)
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
	rm -rf build/tenants build/guests build/bench build/js

# ---------------------------------------------------------------------------
# TypeScript guests (guest_sdk/js): QuickJS-ng compiled to a core wasm module that speaks
# ABI v1, plus each tenant's bundle, snapshotted by Wizer. Needs node and npm (20+).
#   make js-engine -> build/js/engine/*.o, once (QuickJS-ng's sources come from PyPI,
#                     pinned in guest_sdk/js/quickjs-ng.txt; esbuild, Wizer and tsc from
#                     npm, pinned in guest_sdk/js/package-lock.json)
#   tenants/<name>/*.ts -> build/tenants/<name>.wasm (make tenants)
#   tests/guests/js/<name>.ts -> build/guests/js/<name>.wasm (make guests)
#   dwf build SRC -o OUT.wasm builds a tenant anywhere (README, "TypeScript")
# ---------------------------------------------------------------------------


.PHONY: js-engine js-tools
js-engine: $(JS_ENGINE) $(JS_ENGINE_DIR)/fetch_export.o
js-tools: $(JS_TOOLS)

$(JS_TOOLS): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(QJS_UNPACKED): $(JS_DIR)/quickjs-ng.txt | setup
	@mkdir -p $(JS_BUILD)/download
	$(PYTHON) -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
		-r $(JS_DIR)/quickjs-ng.txt -d $(JS_BUILD)/download
	tar -xzf $(JS_BUILD)/download/quickjs_ng-$(QJS_VERSION).tar.gz -C $(JS_BUILD)
	touch $@

$(QJS_OBJ): $(JS_ENGINE_DIR)/qjs_%.o: $(QJS_UNPACKED)
	@mkdir -p $(@D)
	$(CC) $(JS_CFLAGS) -c $(QJS_SRC)/$*.c -o $@

$(JS_ENGINE_DIR)/rt_%.o: $(JS_DIR)/runtime/%.c $(wildcard $(JS_DIR)/runtime/*.h) $(SDK_HDR) $(QJS_UNPACKED)
	@mkdir -p $(@D)
	$(CC) $(JS_CFLAGS) -std=c11 -Wall -Wextra $(WERROR) -c $< -o $@

$(JS_ENGINE_DIR)/fetch_export.o: $(JS_DIR)/runtime/fetch_export.c $(wildcard $(JS_DIR)/runtime/*.h) $(SDK_HDR) $(QJS_UNPACKED)
	@mkdir -p $(@D)
	$(CC) $(JS_CFLAGS) -std=c11 -Wall -Wextra $(WERROR) -c $< -o $@

$(JS_ENGINE_DIR)/sdk_%.o: guest_sdk/c/%.c $(SDK_HDR)
	@mkdir -p $(@D)
	$(CC) $(JS_CFLAGS) -std=c11 -Wall -Wextra $(WERROR) -c $< -o $@

$(JS_ENGINE): $(QJS_OBJ) $(JS_RUNTIME_OBJ) $(JS_SDK_OBJ)
	echo $(notdir $^) > $@

$(TS_TENANT_WASM): build/tenants/%.wasm: $$(wildcard tenants/%/*.ts) $(JS_SDK_TS) $(JS_TOOLS) $(JS_ENGINE) $(JS_ENGINE_DIR)/fetch_export.o
	$(JS_BUILD_TENANT) --out $@ tenants/$*

$(TS_GUEST_WASM): build/guests/js/%.wasm: tests/guests/js/%.ts $(JS_SDK_TS) $(JS_TOOLS) $(JS_ENGINE) $(JS_ENGINE_DIR)/fetch_export.o
	$(JS_BUILD_TENANT) --out $@ $<

# ---------------------------------------------------------------------------
# (host targets go below)
# ---------------------------------------------------------------------------

VENV ?= .venv
DEMO_DB ?= build/demo/dwf.sqlite3

.PHONY: setup demo test test-fast lint bench bench-smoke bench-guests browser clean
setup: $(VENV)/.installed

# A fresh machine needs only python3 (3.11+) with venv and make: everything else,
# the guest C compiler included (ziglang), comes from PyPI into the venv.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# The dashboard's browser tests (tests/test_dashboard.py) drive Debian's Chromium with
# Playwright: browsers cannot be downloaded here. Installed with apt when missing and root
# (CI, a fresh Debian machine); otherwise those tests skip, and say why.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "no /usr/bin/chromium: the dashboard's browser tests will skip (apt-get install chromium)"; fi

demo: setup tenants
	PYTHON=$(PYTHON) DWF_DB=$(DEMO_DB) scripts/demo.sh

test: setup tenants guests browser
	$(VENV)/bin/python -m pytest

lint: setup $(JS_TOOLS)
	$(VENV)/bin/ruff check host tests bench
	$(VENV)/bin/mypy
	$(JS_DIR)/node_modules/.bin/tsc -p $(JS_DIR)/tsconfig.json

# ---------------------------------------------------------------------------
# Benchmarks (bench/): our engine, DBOS Transact (the peer) and raw SQLite in one run.
#   make bench        full sizes (a few minutes): table on stdout, bench/results/latest.json
#                     BENCH_ARGS="--sleepers 10000 --only throughput,dbos-wal" to narrow it
#   make bench-smoke  tiny sizes (seconds), fails if a section fails: CI runs it
# DBOS lives in its own venv (.venv-dbos) so it never reaches the product's environment.
# ---------------------------------------------------------------------------

DBOS_VENV ?= .venv-dbos
BENCH_WASM := $(patsubst bench/guests/%.c,build/bench/%.wasm,$(wildcard bench/guests/*.c))
# The TypeScript benchkit, with the Wizer snapshot and without (what the snapshot saves).
BENCH_TS_WASM := build/bench/js/benchkit.wasm build/bench/js/benchkit_no_snapshot.wasm
BENCH_ARGS ?=

bench-guests: $(BENCH_WASM) $(BENCH_TS_WASM)

build/bench/js/benchkit.wasm: bench/guests/js/benchkit.ts $(JS_SDK_TS) $(JS_TOOLS) $(JS_ENGINE) $(JS_ENGINE_DIR)/fetch_export.o
	$(JS_BUILD_TENANT) --out $@ $<

build/bench/js/benchkit_no_snapshot.wasm: bench/guests/js/benchkit.ts $(JS_SDK_TS) $(JS_TOOLS) $(JS_ENGINE) $(JS_ENGINE_DIR)/fetch_export.o
	$(JS_BUILD_TENANT) --no-snapshot --out $@ $<

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
