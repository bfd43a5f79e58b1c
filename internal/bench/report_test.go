package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHistQuantile(t *testing.T) {
	// 100 events: 50 at ≤ 10 ms, 40 more ≤ 50 ms, 10 more ≤ 100 ms.
	b := []Bucket{{0.01, 50}, {0.05, 90}, {0.1, 100}, {math.Inf(1), 100}}
	for _, c := range []struct {
		q, want float64
	}{
		{0.5, 0.01},              // rank 50: the end of the first bucket
		{0.25, 0.005},            // rank 25: halfway through [0, 10 ms]
		{0.7, 0.01 + 0.04*20/40}, // rank 70: halfway through (10, 50 ms]
		{0.99, 0.05 + 0.05*9/10}, // rank 99: 9/10 through (50, 100 ms]
		{1, 0.1},
	} {
		if got := histQuantile(c.q, b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("q%.2f = %v, want %v", c.q, got, c.want)
		}
	}
	// Everything above the last finite bound: that bound is the answer.
	if got := histQuantile(0.99, []Bucket{{0.1, 0}, {math.Inf(1), 5}}); got != 0.1 {
		t.Errorf("all in +Inf: %v", got)
	}
	if got := histQuantile(0.5, nil); !math.IsNaN(got) {
		t.Errorf("empty: %v", got)
	}
	d := diffBuckets([]Bucket{{0.01, 70}, {0.05, 100}}, []Bucket{{0.01, 20}, {0.05, 40}})
	if d[0].Count != 50 || d[1].Count != 60 {
		t.Errorf("diff = %v", d)
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if q := quantile(xs, 0.5); q != 5 {
		t.Errorf("median of 1..10 (nearest rank) = %v, want 5", q)
	}
	if q := quantile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99); q != 10 {
		t.Errorf("p99 of 10 = %v", q)
	}
	if q := quantiles([]float64{0.3, 0.1, 0.2}); q.Count != 3 || q.P50 != 0.2 || q.Max != 0.3 {
		t.Errorf("quantiles = %+v", q)
	}
}

// TestWriteMarkdownKeepsTheRest: the generated section is replaced in
// place; hand-written text around it stays.
func TestWriteMarkdownKeepsTheRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nhand-written intro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := &Results{Machine: Machine{CPU: "Test CPU", Cores: 2}, Command: "riskwatch bench", Scale: scaleFor(false)}
	res.Peak.Seconds, res.Peak.EngineCores, res.Peak.WalsenderCore, res.Peak.CPURatio = 600, 0.1, 0.08, 1.25
	res.Peak.CommitToAggregate = Quantiles{Count: 3_000_000, P50: 0.087, P99: 1.054}
	res.Peak.C2AFloor, res.Peak.C2AP50Ratio, res.Peak.C2ARatio = 0.219, 0.087/0.219, 1.054/0.219
	res.Bootstrap.Seconds, res.Bootstrap.GroupBySeconds, res.Bootstrap.Ratio = 70, 20, 3.5
	res.CatchUp = CatchUp{Backlog: 5_000_000, Events: 5_000_000, Seconds: 50, EventsPerS: 100_000, FloorSeconds: 20, FloorEventsPerS: 250_000, Ratio: 0.4}
	res.Baseline = Baseline{MedianCPU: 7.9, RiskwatchCPU: 0.25, RiskwatchWalsenderCPU: 0.24, RiskwatchOtherCPU: 0.01, CPURatio: 31.6,
		Runs: 5, FloorLogicalCPU: 0.24, FloorLogicalRatio: 33, FloorPhysicalCPU: 0.12, FloorPhysicalRatio: 66, WALBytesPerMin: 3 << 20,
		Minute: MinuteDelivery{AverageTPS: 35, Drains: 3, CPU: 0.06, DrainCPU: 0.05, OtherCPU: 0.01, CPURatio: 131.7,
			DrainSeconds: Quantiles{Count: 3, P50: 0.04, P99: 0.06}, AlertLatency: Quantiles{Count: 9, P50: 1.1, P99: 1.25}}}
	for i, note := range []string{"first", "second"} {
		res.Command = "riskwatch bench " + note
		if err := WriteMarkdown(path, res, "docs/bench", ""); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		s := string(b)
		if !strings.HasPrefix(s, "# Benchmarks\n\nhand-written intro\n") || strings.Count(s, beginMark) != 1 || strings.Count(s, endMark) != 1 {
			t.Fatalf("write %d:\n%s", i, s)
		}
		for _, want := range []string{
			"| 0.250 s (0.240 + 0.010) | pg_recvlogical 0.240 s, pg_receivewal 0.120 s |",
			"| 32× | streaming is under PostgreSQL's floor: shipping the WAL at all is 66× |",
			"| 0.060 s (0.050 + 0.010) |", "| 132× | ≥ 100×: met |", "| 40 ms / 60 ms; 1100 ms / 1250 ms |",
			"| 0.240 s, 0.120 s |  | 33×, 66× |", "| 3.0 MiB |",
			"| 0.100 | walsender serving it 0.080 | 1.25× | ≤ 1.50×: met |",
			"| 87 ms / 1054 ms | flush interval + sink transaction p99: 219 ms | 0.40× / 4.81× | p50 ≤ 1.00×: met; p99 not judged (the minute's close) |",
			"| 100000 (5000000 events in 50.0 s, 0.00 cores) | pg_recvlogical draining it: 250000/s (20.0 s) | 0.40× | ≥ 0.65×: **missed** |",
		} {
			if !strings.Contains(s, want) {
				t.Fatalf("write %d lacks %q:\n%s", i, want, s)
			}
		}
		if !strings.Contains(s, "| 4 restart | not run (--scenarios) |") {
			t.Fatalf("write %d does not say restart was not run:\n%s", i, s)
		}
		if !strings.Contains(s, "riskwatch bench "+note) || !strings.Contains(s, "| the snapshot's GROUP BY alone: 20.0 s | 3.50× | ≤ 2.50×: **missed** |") {
			t.Fatalf("write %d lacks the figures:\n%s", i, s)
		}
	}
}
