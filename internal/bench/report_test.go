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

// TestWriteMariaDBMarkdown: a MariaDB run writes its own section, beside
// the PostgreSQL run's and leaving it as it was, with each target judged
// on the figures.
func TestWriteMariaDBMarkdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	pg := &Results{Machine: Machine{CPU: "Test CPU", Cores: 2}, Command: "riskwatch-bench", Scale: scaleFor(false)}
	pg.Peak.Seconds, pg.Peak.EngineCores = 600, 0.5
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nhand-written intro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(path, pg, "docs/bench", ""); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	res := &Results{Source: SourceMariaDB, Machine: Machine{CPU: "Test CPU", Cores: 2, MariaDB: "MariaDB 10.11.19"}, Scale: scaleFor(false),
		MariaDB: &MariaDB{Server: "test server", DumpThreadCores: 0.2, SelectRows: 24_000_000, SelectSeconds: 40, SelectRatio: 1.5,
			BacklogBytes: 600 << 20, BinlogReadSeconds: 10, BinlogReadEventsPerS: 500_000, DumpThreadCPU: 0.3, FloorDumpThreadCPU: 0.2, BinlogBytesPerMin: 2 << 20}}
	res.History.Payments = 23_400_000
	// Met: engine CPU 0.12 ≤ 0.15, alert p99 1.4 s ≤ 1.5 s, restart 8 s ≤ 10 s.
	// Missed: commit → aggregate p99 300 ms > 250 ms, catch-up 80,000 < 100,000 events/s, first start 70 s > 60 s.
	res.Peak.Seconds, res.Peak.TargetTPS, res.Peak.EngineCores, res.Peak.CPURatio = 600, 5000, 0.12, 0.6
	res.Peak.CommitToAggregate = Quantiles{Count: 3_000_000, P50: 0.12, P99: 0.3}
	res.Peak.AlertLatency = Quantiles{Count: 30, P50: 1.2, P99: 1.4}
	res.Restart = Restart{Seconds: []float64{9, 8, 7.5}, Median: 8}
	res.CatchUp = CatchUp{Backlog: 5_000_000, Events: 5_000_000, Seconds: 62.5, EventsPerS: 80_000, Ratio: 0.16}
	res.Bootstrap = Bootstrap{Seconds: 70, GroupBySeconds: 35, Ratio: 2}
	res.Baseline = Baseline{AverageTPS: 35, RiskwatchCPU: 0.35, RiskwatchOtherCPU: 0.05, RiskwatchPeakCPU: 9, Note: "The SQL-polling job is not run on this source."}
	for i, cmd := range []string{"first", "second"} {
		res.Command = "riskwatch-bench --source mariadb " + cmd
		if err := WriteMarkdown(path, res, "docs/bench-mariadb", ""); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		s := string(b)
		if !strings.HasPrefix(s, string(before)) || strings.Count(s, mariaBeginMark) != 1 || strings.Count(s, mariaEndMark) != 1 || strings.Count(s, beginMark) != 1 {
			t.Fatalf("write %d: the PostgreSQL section is not kept, or the MariaDB one is not there once:\n%s", i, s)
		}
		for _, want := range []string{
			"riskwatch-bench --source mariadb " + cmd,
			"source MariaDB 10.11.19 (test server)",
			"| 1 peak | engine CPU (cores), sink writes included | 0.120 | binlog dump thread serving it 0.200 | 0.60× | ≤ 0.15 core: met |",
			"| 120 ms / 300 ms |", "| p99 ≤ 250 ms: **missed** |",
			"| 1200 ms / 1400 ms |", "| p99 ≤ 1.5 s: met |",
			"| 2 catch-up | backlog of 5000000 committed changes (600 MiB of binlog): events/s until live | 80000 (5000000 events in 62.5 s, 0.00 cores) | mariadb-binlog reading the same range: 500000/s (10.0 s) | 0.16× | ≥ 100000 events/s: **missed** |",
			"| 70.0 s (max RSS 0 MiB) | the snapshot's SELECTs read by a client: 40.0 s (24000000 rows); the same GROUP BY by the server: 35.0 s | 1.50× / 2.00× | ≤ 60 s: **missed** |",
			"| 8.0 s (9.0, 8.0, 7.5) |  |  | ≤ 10 s: met |",
			"| 0.350 s (0.300 + 0.050) | mariadb-binlog's dump thread beside it: 0.200 s |",
			"| 5 source cost | SQL-polling job | not run on MariaDB |",
			"| 9.00 s |", "| 2.0 MiB |",
			"](docs/bench-mariadb/results.json)",
		} {
			if !strings.Contains(s, want) {
				t.Fatalf("write %d lacks %q:\n%s", i, want, s)
			}
		}
	}
	// A quick run judges nothing.
	res.Quick = true
	if err := WriteMarkdown(path, res, "x", ""); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b[len(before):]), "met") {
		t.Errorf("a quick run was judged:\n%s", b[len(before):])
	}
}
