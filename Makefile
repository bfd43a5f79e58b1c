# riskwatch — see README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/riskwatch
BENCHBIN := bin/riskwatch-bench
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build bench-build test check vet fmt-check web web-check demo bench bench-detection clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/riskwatch

# The benchmark runner is a command of its own, kept out of the product
# binary; it measures bin/riskwatch.
bench-build: build
	$(GO) build -o $(BENCHBIN) ./cmd/riskwatch-bench

# Every test, against private PostgreSQL clusters and MariaDB servers the
# tests start themselves, and the dashboard's browser test in Debian's Chromium.
test: check
	./scripts/ensure-postgres.sh
	./scripts/ensure-mariadb.sh
	./scripts/ensure-browser.sh
	./scripts/ensure-systemd.sh
	./scripts/ensure-prometheus.sh
	$(MAKE) web-check
	GO=$(GO) ./scripts/go-test.sh

# The dashboard: web/src built with npm into web/dist, which go:embed serves.
web:
	./scripts/ensure-browser.sh
	cd web && npm run build

# The committed web/dist must be what web/src builds to.
web-check: web
	@if ! git diff --quiet -- web/dist || [ -n "$$(git ls-files --others --exclude-standard web/dist)" ]; then \
		echo "web/dist is stale: run 'make web' and commit web/dist"; git status --short web/dist; exit 1; fi

check: fmt-check vet

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# A private PostgreSQL under ./var, history, live traffic with incidents, the
# engine; Ctrl-C stops it all. FULL=1 loads the spec's full 3M payments/day.
demo:
	@if [ -n "$(FULL)" ]; then DEMO_SCALE=3000000 DEMO_SOURCE=$(SOURCE) ./scripts/demo.sh; else DEMO_SOURCE=$(SOURCE) ./scripts/demo.sh; fi

# Full-load benchmarks: Go hot-path benchmarks compared with benchstat,
# then riskwatch-bench (private PostgreSQL servers, simulator, engine,
# PostgreSQL's own clients as floors); rewrites the generated section of
# BENCHMARKS.md. QUICK=1 is the reduced run for CI; it writes
# artifacts/bench/BENCHMARKS.quick.md instead. SCENARIOS=peak,catch-up runs
# a subset.
BENCH_OUT := artifacts/bench
# Detection quality: the realistic history with the scored day's incident
# mix, scored per priority setting for each seed (SEEDS=1,2,3 by default);
# writes BENCHMARKS.md's "Detection quality" section. The settings scored
# are the published curve's (DETECTION_SETTINGS; the first is the
# defaults). About 5 minutes a seed on 2 cores.
DETECTION_SETTINGS := docs/bench/detection-settings.json
bench-detection: bench-build
	./scripts/ensure-postgres.sh
	$(BENCHBIN) --detection --settings $(DETECTION_SETTINGS) --out $(BENCH_OUT)/detection --markdown BENCHMARKS.md --publish docs/bench $(if $(SEEDS),--seeds $(SEEDS))

# SOURCE=mariadb runs the same scenarios with a private MariaDB as the
# transaction database (the sink a private PostgreSQL): its results go to
# artifacts/bench-mariadb and docs/bench-mariadb, and to a section of
# BENCHMARKS.md of their own; QUICK and SCENARIOS work the same. The Go
# benchmarks, which do not depend on the source, run with the PostgreSQL
# run only.
BENCH_MARIADB_OUT := artifacts/bench-mariadb
ifneq ($(filter-out postgres mariadb,$(SOURCE)),)
$(error SOURCE=$(SOURCE): want postgres (the default) or mariadb)
endif

ifeq ($(SOURCE),mariadb)
bench: bench-build
	./scripts/ensure-postgres.sh
	./scripts/ensure-mariadb.sh
	@if [ -n "$(QUICK)" ]; then \
		$(BENCHBIN) --source mariadb --quick --out $(BENCH_MARIADB_OUT) --markdown $(BENCH_MARIADB_OUT)/BENCHMARKS.quick.md $(if $(SCENARIOS),--scenarios $(SCENARIOS)); \
	else \
		$(BENCHBIN) --source mariadb --out $(BENCH_MARIADB_OUT) --markdown BENCHMARKS.md --publish docs/bench-mariadb $(if $(SCENARIOS),--scenarios $(SCENARIOS)); \
	fi
else
bench: bench-build
	./scripts/ensure-postgres.sh
	OUT=$(BENCH_OUT) QUICK=$(QUICK) ./scripts/bench-go.sh
	@if [ -n "$(QUICK)" ]; then \
		$(BENCHBIN) --quick --out $(BENCH_OUT) --markdown $(BENCH_OUT)/BENCHMARKS.quick.md --go-bench $(BENCH_OUT)/go-benchstat.txt $(if $(SCENARIOS),--scenarios $(SCENARIOS)); \
	else \
		$(BENCHBIN) --out $(BENCH_OUT) --markdown BENCHMARKS.md --publish docs/bench --go-bench $(BENCH_OUT)/go-benchstat.txt $(if $(SCENARIOS),--scenarios $(SCENARIOS)); \
	fi
endif

clean:
	rm -rf bin

# The Korean screenshots in docs/screenshots (README), taken by the browser
# test on a Chromium without CJK fonts; commit them when the pages change.
.PHONY: screenshots
screenshots:
	./scripts/ensure-postgres.sh
	./scripts/ensure-browser.sh
	$(GO) test -count=1 -run 'TestDashboardInBrowser$$' ./cmd/riskwatch -update-screenshots
