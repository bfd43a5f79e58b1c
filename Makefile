# riskwatch — see README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/riskwatch
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test check vet fmt-check web web-check demo bench clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/riskwatch

# Every test, against private PostgreSQL clusters the tests start themselves,
# and the dashboard's browser test in Debian's Chromium.
test: check
	./scripts/ensure-postgres.sh
	./scripts/ensure-browser.sh
	$(MAKE) web-check
	$(GO) test -count=1 -timeout 20m ./...

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
	@if [ -n "$(FULL)" ]; then DEMO_SCALE=3000000 ./scripts/demo.sh; else ./scripts/demo.sh; fi

bench:
	@echo "make bench is not built yet (issue 6: benchmarks)." >&2; exit 2

clean:
	rm -rf bin
