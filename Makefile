# Corrigo build. `make run` and `make test` create the virtual environment on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(sort $(wildcard proto/corrigo/v1/*.proto))
PYTEST_ARGS ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv run test reliability bench bench-smoke lint typecheck gen gen-check gateway-check buf-lint package-check check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,dev]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/corrigo serve

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The reliability suite with its heavy parts (SIGKILLs, SIGTERMs, replicas), pushed
# RELIABILITY_SCALE times harder; its figures replace the table in tests/reliability/README.md.
RELIABILITY_SCALE ?= 4
reliability: $(STAMP)
	rm -rf .build/reliability
	RELIABILITY_SCALE=$(RELIABILITY_SCALE) $(PY) -m pytest tests/reliability -m "" $(PYTEST_ARGS)
	RELIABILITY_SCALE=$(RELIABILITY_SCALE) $(PY) -m tests.reliability.report tests/reliability/README.md

# The benchmark (tests/bench): SQLite, and PostgreSQL when CORRIGO_BENCH_POSTGRES_URL is
# set (its public schema is emptied). BENCH_SCALE scales every size (1.0 = the issue's).
# Prints the table and writes .build/bench/results.json.
bench: $(STAMP)
	$(PY) -m tests.bench

# A small run that only checks every figure comes out sane (never a speed).
bench-smoke: $(STAMP)
	BENCH_SCALE=$${BENCH_SCALE:-0.01} $(PY) -m tests.bench --check --out .build/bench/smoke.json

# Generated code: Python, gRPC and .pyi stubs, plus the OpenAPI document.
# Written to a scratch directory first, so gen-check can compare without touching gen/.
define generate
	rm -rf $(1) && mkdir -p $(1)/corrigo/v1 $(1)/openapi
	$(PY) -m grpc_tools.protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') \
		--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) $(PROTOS)
	touch $(1)/corrigo/__init__.py $(1)/corrigo/v1/__init__.py $(1)/corrigo/v1/py.typed
	protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') -I/usr/include \
		--swagger_out=allow_merge=true,merge_file_name=corrigo,json_names_for_fields=false:$(1)/openapi $(PROTOS)
endef

gen: $(STAMP)
	$(call generate,.build/gen)
	rm -rf gen && mv .build/gen gen

gen-check: $(STAMP)
	$(call generate,.build/gen-check)
	diff -r gen .build/gen-check || { echo "gen/ is stale: run 'make gen' and commit gen/"; exit 1; }

# Both grpc-gateway generators must accept the protos (no proto3 optional, valid routes).
gateway-check: $(STAMP)
	rm -rf .build/gateway && mkdir -p .build/gateway
	protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') -I/usr/include \
		--grpc-gateway_out=logtostderr=true:.build/gateway --swagger_out=logtostderr=true:.build/gateway $(PROTOS)

buf-lint: $(STAMP)
	rm -rf .build/buf && mkdir -p .build/buf/googleapis/google/api
	cp $$($(PY) -c 'import google.api, os; print(google.api.__path__[0])')/{annotations,http}.proto .build/buf/googleapis/google/api/
	$(VENV)/bin/buf lint

lint: $(STAMP)
	$(VENV)/bin/ruff check server client tests
	$(VENV)/bin/ruff format --check server client tests

typecheck: $(STAMP)
	rm -rf .build/mypy && mkdir -p .build/mypy/corrigo
	touch .build/mypy/corrigo/__init__.py
	ln -s ../../../gen/corrigo/v1 .build/mypy/corrigo/v1
	ln -s ../../../server .build/mypy/corrigo/server
	ln -s ../../../client .build/mypy/corrigo/client
	cd .build/mypy && MYPYPATH= ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p corrigo.server -p corrigo.client

# A regular (non-editable) install works too: build the wheel, install it in a scratch venv
# (the client alone, then with the server extra), and use it from outside the source tree.
package-check: $(STAMP)
	rm -rf .build/package && mkdir -p .build/package
	$(PY) -m pip wheel -q --no-deps -w .build/package/dist .
	$(PYTHON) -m venv .build/package/venv
	.build/package/venv/bin/pip install -q .build/package/dist/corrigo-*.whl
	cd .build/package && venv/bin/corrigo --help >/dev/null
	cd .build/package && venv/bin/python -c 'import corrigo.v1.admin_pb2, corrigo.client'
	# Client only: no database library; client commands run, server commands say what to install.
	cd .build/package && ! venv/bin/python -c 'import peewee' 2>/dev/null
	cd .build/package && venv/bin/corrigo whoami 2>&1 | grep -q 'no API token'
	cd .build/package && venv/bin/corrigo migrate 2>&1 | grep -q "pip install 'corrigo\[server\]'"
	.build/package/venv/bin/pip install -q "$$(ls .build/package/dist/corrigo-*.whl)[server]"
	cd .build/package && venv/bin/python -c 'import corrigo.server.app'
	cd .build/package && venv/bin/corrigo migrate --database sqlite:///package-check.sqlite3
	rm -rf build  # setuptools' scratch directory in the source tree

check: lint typecheck gen-check gateway-check buf-lint package-check test

clean:
	rm -rf .build $(VENV)
