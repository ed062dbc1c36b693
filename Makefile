# Livelog: `make run` (everything in one process, no services) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests use the real PostgreSQL and Redis of this machine, or throwaway ones (see README).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/livelog
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
PYTEST_ARGS ?=

RUN_ENV := DEBUG=true REDIS_URL= FEEDS_ALLOW_PRIVATE_NETWORKS=true LIVELOG_DEMO=true
TEST_ENV := DEBUG=false SECRET_KEY=test-only-secret-key-not-for-production-0123456789abcdef \
	SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=127.0.0.1,localhost,testserver REDIS_URL= CONN_MAX_AGE=0 \
	DATABASE_URL=$(TEST_DATABASE_URL) LIVELOG_TEST_REDIS_URL=$(TEST_REDIS_URL)

.PHONY: run test lint format bench install clean superuser manage

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/dev.txt
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(RUN_ENV) $(PY) manage.py migrate --noinput
	$(RUN_ENV) HOST=$(HOST) PORT=$(PORT) $(PY) manage.py runlive

# The embedded mode's settings for any manage.py command: make manage ARGS="addfeed https://…"
superuser: $(VENV)/.installed
	$(RUN_ENV) $(PY) manage.py createsuperuser

manage: $(VENV)/.installed
	$(RUN_ENV) $(PY) manage.py $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# When the PostgreSQL or Redis above does not answer, tests/services.py starts throwaway ones.
test: lint
	$(TEST_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(TEST_ENV) $(PY) tests/services.py $(VENV)/bin/pytest $(PYTEST_ARGS)

bench: bench-fanout bench-ingest

clean:
	rm -rf $(VENV) staticfiles livelog.sqlite3*

# Fan-out benchmark (bench/README.md): make bench-fanout FANOUT_ARGS="--quick"
FANOUT_ARGS ?=
.PHONY: bench-fanout
bench-fanout: $(VENV)/.installed
	$(PY) bench/fanout.py $(FANOUT_ARGS)

# Real-world feeds beside the checkout (never copied here), ingested through the real pipeline on a
# throwaway SQLite database; fails if an acceptance check fails (feeds/management/commands/ingestcorpus.py).
CORPUS ?= ../shared/corpus
.PHONY: corpus
corpus: $(VENV)/.installed
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	export DEBUG=true REDIS_URL= FEEDS_ALLOW_PRIVATE_NETWORKS=true DATABASE_URL="sqlite:///$$tmp/corpus.sqlite3" && \
	$(PY) manage.py migrate --noinput --verbosity 0 && \
	$(PY) manage.py ingestcorpus $(CORPUS)

# Ingest at scale (bench/ingest_scale.py): make bench-ingest BENCH_INGEST_ARGS="--duration 30"
BENCH_INGEST_ARGS ?=
.PHONY: bench-ingest
bench-ingest: $(VENV)/.installed
	$(PY) bench/ingest_scale.py $(BENCH_INGEST_ARGS)

# A pushed entry (WebSub) from the hub's POST to the last of 1,000 readers, beside a polled one (bench/push.py)
BENCH_PUSH_ARGS ?=
.PHONY: bench-push
bench-push: $(VENV)/.installed
	$(PY) bench/push.py $(BENCH_PUSH_ARGS)
