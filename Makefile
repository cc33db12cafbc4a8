# Corrigo build. `make run` and `make test` create the virtual environment on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(sort $(wildcard proto/corrigo/v1/*.proto))
PYTEST_ARGS ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv run test reliability bench bench-smoke lint typecheck gen gen-check gateway gateway-check run-gateway buf-deps buf-lint buf-breaking package-check check clean

venv: $(STAMP)

# The editable install builds client/export_json.c in place: a change to it (or to the
# tables it includes) rebuilds. setuptools warns on every editable install that maps its
# packages to other folders (gen/, server/, client/ here) that such folders may shadow
# them: expected, so filtered.
$(STAMP): pyproject.toml setup.py client/export_json.c gen/c/export_json_tables.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e '.[server,dev]'
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
	RELIABILITY_SCALE=$(RELIABILITY_SCALE) $(PY) -m pytest tests/reliability tests/test_store_faults.py -m "" $(PYTEST_ARGS)
	RELIABILITY_SCALE=$(RELIABILITY_SCALE) $(PY) -m tests.reliability.report tests/reliability/README.md

# The benchmark (tests/bench): SQLite, and PostgreSQL when CORRIGO_BENCH_POSTGRES_URL is
# set (its public schema is emptied). BENCH_SCALE scales every size (1.0 = the issue's).
# Prints the table and writes .build/bench/results.json.
bench: $(STAMP)
	$(PY) -m tests.bench

# A small run that only checks every figure comes out sane (never a speed).
bench-smoke: $(STAMP)
	BENCH_SCALE=$${BENCH_SCALE:-0.01} $(PY) -m tests.bench --check --out .build/bench/smoke.json

# Generated code: Python, gRPC and .pyi stubs, the C export writer's field tables, plus the
# OpenAPI document.
# Written to a scratch directory first, so gen-check can compare without touching gen/.
define generate
	rm -rf $(1) && mkdir -p $(1)/corrigo/v1 $(1)/openapi
	$(PY) -m grpc_tools.protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') \
		--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) \
		--include_imports --descriptor_set_out=$(1)/descriptors.pb $(PROTOS)
	touch $(1)/corrigo/__init__.py $(1)/corrigo/v1/__init__.py $(1)/corrigo/v1/py.typed
	$(PY) tools/export_json_tables.py $(1)/descriptors.pb $(1)/c/export_json_tables.h
	rm $(1)/descriptors.pb
	protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') -I/usr/include \
		--swagger_out=allow_merge=true,merge_file_name=corrigo,json_names_for_fields=false:$(1)/openapi $(PROTOS)
	$(PY) server/gateway/openapi_status.py $(1)/openapi/corrigo.swagger.json
endef

gen: $(STAMP)
	$(call generate,.build/gen)
	rm -rf gen && mv .build/gen gen

gen-check: $(STAMP)
	$(call generate,.build/gen-check)
	diff -r gen .build/gen-check || { echo "gen/ is stale: run 'make gen' and commit gen/"; exit 1; }

# Both grpc-gateway generators must accept the protos (no proto3 optional, valid routes).
gateway-check: $(STAMP)
	rm -rf .build/gateway-check && mkdir -p .build/gateway-check
	protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') -I/usr/include \
		--grpc-gateway_out=logtostderr=true:.build/gateway-check --swagger_out=logtostderr=true:.build/gateway-check $(PROTOS)

# The REST gateway (server/gateway): Go code generated from proto/ at build time into a
# scratch GOPATH, built offline in GOPATH mode against Debian's Go packages. The well-known
# types map to golang/protobuf's packages (Debian's protoc names the newer ones).
GATEWAY := .build/gateway/corrigo-gateway
GATEWAY_SRC := .build/gateway/gopath/src
GATEWAY_LISTEN ?= 127.0.0.1:8080
GATEWAY_ENDPOINT ?= 127.0.0.1:50051
GO_WKT := Mgoogle/protobuf/wrappers.proto=github.com/golang/protobuf/ptypes/wrappers,$\
	Mgoogle/protobuf/struct.proto=github.com/golang/protobuf/ptypes/struct,$\
	Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp,$\
	Mgoogle/protobuf/empty.proto=github.com/golang/protobuf/ptypes/empty,$\
	Mgoogle/protobuf/descriptor.proto=github.com/golang/protobuf/protoc-gen-go/descriptor,$\
	Mgoogle/protobuf/field_mask.proto=google.golang.org/genproto/protobuf/field_mask

gateway: $(GATEWAY)

$(GATEWAY): $(STAMP) $(PROTOS) $(wildcard server/gateway/*.go)
	rm -rf .build/gateway && mkdir -p $(GATEWAY_SRC)
	protoc -Iproto -I$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') -I/usr/include \
		--go_out=plugins=grpc,$(GO_WKT):$(GATEWAY_SRC) --grpc-gateway_out=logtostderr=true,$(GO_WKT):$(GATEWAY_SRC) $(PROTOS)
	GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH=$(CURDIR)/.build/gateway/gopath:/usr/share/gocode \
		GOCACHE=$(CURDIR)/.build/go-cache go build -o $@ ./server/gateway

# Serves REST on GATEWAY_LISTEN for the server `make run` starts (GATEWAY_ENDPOINT).
run-gateway: $(GATEWAY)
	$(GATEWAY) --listen $(GATEWAY_LISTEN) --endpoint $(GATEWAY_ENDPOINT)

# googleapis' annotations for buf (its registry is out of reach): see buf.yaml.
buf-deps: $(STAMP)
	rm -rf .build/buf && mkdir -p .build/buf/googleapis/google/api
	cp $$($(PY) -c 'import google.api, os; print(google.api.__path__[0])')/{annotations,field_behavior,http}.proto .build/buf/googleapis/google/api/

buf-lint: buf-deps
	$(VENV)/bin/buf lint

# The API stays compatible with the previous commit of main (.ci/buf-breaking says which).
buf-breaking: buf-deps
	.ci/buf-breaking

lint: $(STAMP)
	$(VENV)/bin/ruff check server client tests tools
	$(VENV)/bin/ruff format --check server client tests tools

typecheck: $(STAMP)
	rm -rf .build/mypy && mkdir -p .build/mypy/corrigo
	touch .build/mypy/corrigo/__init__.py
	ln -s ../../../gen/corrigo/v1 .build/mypy/corrigo/v1
	ln -s ../../../server .build/mypy/corrigo/server
	ln -s ../../../client .build/mypy/corrigo/client
	cd .build/mypy && MYPYPATH= ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p corrigo.server -p corrigo.client
	cd .build/mypy && MYPYPATH= ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml ../../tools

# A regular (non-editable) install works too: build the wheel, install it in a scratch venv
# (the client alone, then with the server extra), and use it from outside the source tree.
package-check: $(STAMP)
	rm -rf .build/package && mkdir -p .build/package
	$(PY) -m pip wheel -q --no-deps -w .build/package/dist .
	$(PYTHON) -m venv .build/package/venv
	.build/package/venv/bin/pip install -q .build/package/dist/corrigo-*.whl
	cd .build/package && venv/bin/corrigo --help >/dev/null
	cd .build/package && venv/bin/python -c 'import corrigo.v1.admin_pb2, corrigo.client'
	# The wheel carries the C writer of `corrigo export`'s JSON lines.
	cd .build/package && venv/bin/python -c 'from corrigo.client import records; assert records.compiled_lines'
	# Client only: no database library; client commands run, server commands say what to install.
	cd .build/package && ! venv/bin/python -c 'import peewee' 2>/dev/null
	cd .build/package && venv/bin/corrigo whoami 2>&1 | grep -q 'no API token'
	cd .build/package && venv/bin/corrigo migrate 2>&1 | grep -q "pip install 'corrigo\[server\]'"
	.build/package/venv/bin/pip install -q "$$(ls .build/package/dist/corrigo-*.whl)[server]"
	cd .build/package && venv/bin/python -c 'import corrigo.server.app'
	cd .build/package && venv/bin/corrigo migrate --database sqlite:///package-check.sqlite3
	rm -rf build  # setuptools' scratch directory in the source tree

check: lint typecheck gen-check gateway-check buf-lint buf-breaking package-check gateway test

clean:
	rm -rf .build $(VENV)
