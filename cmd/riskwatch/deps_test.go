package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductBinaryHoldsOnlyTheProduct: nothing that exists for tests or
// benchmarks (package testing, the PostgreSQL supervisor, the test
// receivers, the benchmark runner) is linked into riskwatch.
func TestProductBinaryHoldsOnlyTheProduct(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		switch {
		case d == "testing", strings.HasPrefix(d, "testing/"),
			strings.HasSuffix(d, "/internal/pgtest"), strings.HasSuffix(d, "/internal/pgserver"),
			strings.HasSuffix(d, "/notifytest"), strings.HasSuffix(d, "/internal/bench"):
			t.Errorf("riskwatch links %s", d)
		}
	}
}
