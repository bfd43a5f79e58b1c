# riskwatch — see README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/riskwatch
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test check vet fmt-check demo bench clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/riskwatch

# Every test, against private PostgreSQL clusters the tests start themselves.
test: check
	./scripts/ensure-postgres.sh
	$(GO) test -count=1 -timeout 20m ./...

check: fmt-check vet

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

demo:
	@echo "make demo is not built yet (issue 4: workload generator and demo)." >&2; exit 2

bench:
	@echo "make bench is not built yet (issue 6: benchmarks)." >&2; exit 2

clean:
	rm -rf bin
