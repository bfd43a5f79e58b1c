package progress

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is advanced explicitly so tests never sleep or depend on the
// real time. It is locked because reporters read it from many goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ptr[T any](v T) *T { return &v }

func TestHumanInt(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{7, "7"},
		{999, "999"},
		{1000, "1,000"},
		{1234, "1,234"},
		{9999, "9,999"},
		{10000, "10.0k"},
		{12345, "12.3k"},
		{99949, "99.9k"},
		{99950, "100k"},
		{123456, "123k"},
		{999499, "999k"},
		{999500, "1.00M"},
		{1234567, "1.23M"},
		{12345678, "12.3M"},
		{123456789, "123M"},
		{1_000_000_000, "1.00G"},
		{-1234, "-1,234"},
		{-12345, "-12.3k"},
	}
	for _, tt := range tests {
		if got := humanInt(tt.in); got != tt.want {
			t.Errorf("humanInt(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHumanFloat(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{0.25, "0.25"},
		{2.5, "2.5"},
		{12.4, "12"},
		{1234.4, "1,234"},
		{9999.4, "9,999"},
		{9999.6, "10.0k"},
		{25000, "25.0k"},
		{1234567, "1.23M"},
	}
	for _, tt := range tests {
		if got := humanFloat(tt.in); got != tt.want {
			t.Errorf("humanFloat(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{1400 * time.Millisecond, "1s"},
		{12 * time.Second, "12s"},
		{59600 * time.Millisecond, "1m00s"},
		{65 * time.Second, "1m05s"},
		{time.Hour + 2*time.Minute + 5*time.Second, "1h02m05s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.in); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		name    string
		label   string
		unit    string
		total   int64
		elapsed time.Duration
		done    int64
		want    string
	}{
		{
			name: "known total", label: "load", unit: "rows",
			total: 1_000_000, elapsed: 10 * time.Second, done: 250_000,
			want: "load: 250k/1.00M rows (25.0%) 25.0k rows/s ETA 30s",
		},
		{
			name: "minutes ETA", label: "history", unit: "days",
			total: 400, elapsed: 10 * time.Second, done: 6,
			want: "history: 6/400 days (1.5%) 0.60 days/s ETA 10m57s",
		},
		{
			name: "unknown total", label: "catch-up", unit: "events",
			total: 0, elapsed: 10 * time.Second, done: 5_000,
			want: "catch-up: 5,000 events 500 events/s, 10s elapsed",
		},
		{
			name: "no time passed", label: "load", unit: "rows",
			total: 100, elapsed: 0, done: 0,
			want: "load: 0/100 rows (0.0%) 0 rows/s ETA ?",
		},
		{
			name: "complete", label: "load", unit: "rows",
			total: 1_000, elapsed: 4 * time.Second, done: 1_000,
			want: "load: 1,000/1,000 rows (100.0%) 250 rows/s ETA 0s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			r := New(tt.label, tt.unit, tt.total, Options{
				Out: io.Discard, TTY: ptr(true), Interval: time.Hour, Now: clk.Now,
			})
			clk.Advance(tt.elapsed)
			r.Set(tt.done)
			if got := r.Line(); got != tt.want {
				t.Errorf("Line() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetTotalLater(t *testing.T) {
	clk := newFakeClock()
	r := New("snapshot", "rows", 0, Options{Out: io.Discard, TTY: ptr(true), Now: clk.Now})
	clk.Advance(10 * time.Second)
	r.Add(1000)
	if got, want := r.Line(), "snapshot: 1,000 rows 100 rows/s, 10s elapsed"; got != want {
		t.Errorf("before SetTotal: Line() = %q, want %q", got, want)
	}
	r.SetTotal(2000)
	if got, want := r.Line(), "snapshot: 1,000/2,000 rows (50.0%) 100 rows/s ETA 10s"; got != want {
		t.Errorf("after SetTotal: Line() = %q, want %q", got, want)
	}
}

// The rate must follow a change of pace within the window instead of
// averaging over the whole run.
func TestRateUsesSlidingWindow(t *testing.T) {
	clk := newFakeClock()
	r := New("load", "rows", 1_000_000, Options{Out: io.Discard, TTY: ptr(true), Now: clk.Now})
	steps := []struct {
		seconds  int
		perSec   int64
		wantLine string
	}{
		// Younger than the window: the overall average.
		{5, 1000, "load: 5,000/1.00M rows (0.5%) 1,000 rows/s ETA 16m35s"},
		{15, 1000, "load: 20.0k/1.00M rows (2.0%) 1,000 rows/s ETA 16m20s"},
		// A full window at the new pace: the overall average would be
		// 2,333 rows/s, the window says 5,000.
		{10, 5000, "load: 70.0k/1.00M rows (7.0%) 5,000 rows/s ETA 3m06s"},
		// Slowing down again shows up just as quickly.
		{10, 100, "load: 71.0k/1.00M rows (7.1%) 100 rows/s ETA 2h34m50s"},
	}
	for i, st := range steps {
		for range st.seconds {
			clk.Advance(time.Second)
			r.Add(st.perSec)
			r.Line() // samples are taken when a line is built
		}
		if got := r.Line(); got != st.wantLine {
			t.Errorf("step %d: Line() = %q, want %q", i, got, st.wantLine)
		}
	}
	r.mu.Lock()
	n := len(r.samples)
	r.mu.Unlock()
	if limit := int(rateWindow/minSampleGap) + 2; n > limit {
		t.Errorf("kept %d samples, want at most %d", n, limit)
	}
}

func TestTerminalRedrawsOnlyAfterInterval(t *testing.T) {
	clk := newFakeClock()
	var out bytes.Buffer
	r := New("load", "rows", 1000, Options{Out: &out, TTY: ptr(true), Interval: time.Second, Now: clk.Now})
	steps := []struct {
		advance time.Duration
		add     int64
		want    string // what this step appends to out
	}{
		{0, 10, ""},
		{500 * time.Millisecond, 10, ""},
		{500 * time.Millisecond, 80, "\rload: 100/1,000 rows (10.0%) 100 rows/s ETA 9s\x1b[K"},
		{999 * time.Millisecond, 100, ""},
		{time.Millisecond, 100, "\rload: 300/1,000 rows (30.0%) 150 rows/s ETA 5s\x1b[K"},
		{100 * time.Millisecond, 100, ""},
	}
	for i, st := range steps {
		before := out.Len()
		clk.Advance(st.advance)
		r.Add(st.add)
		if got := out.String()[before:]; got != st.want {
			t.Errorf("step %d: wrote %q, want %q", i, got, st.want)
		}
	}
}

func TestDoneTerminal(t *testing.T) {
	clk := newFakeClock()
	var out bytes.Buffer
	r := New("bench", "events", 0, Options{Out: &out, TTY: ptr(true), Interval: time.Second, Now: clk.Now})
	for range 4 {
		clk.Advance(10 * time.Second)
		r.Add(20_000)
	}
	before := out.Len()
	r.Done()
	final := "bench: 80.0k events 2,000 events/s, 40s elapsed"
	if got, want := out.String()[before:], "\r"+final+"\x1b[K\n"; got != want {
		t.Errorf("Done wrote %q, want %q", got, want)
	}

	// Nothing more after Done, and Line keeps reporting the final state.
	before = out.Len()
	clk.Advance(time.Minute)
	r.Add(1)
	r.Set(5)
	r.Done()
	if out.Len() != before {
		t.Errorf("output after Done: %q", out.String()[before:])
	}
	if got := r.Line(); got != final {
		t.Errorf("Line() after Done = %q, want %q", got, final)
	}
}

func TestDoneKnownTotalShowsAverageAndElapsed(t *testing.T) {
	clk := newFakeClock()
	var out bytes.Buffer
	r := New("load", "rows", 1_000_000, Options{Out: &out, TTY: ptr(true), Now: clk.Now})
	clk.Advance(40 * time.Second)
	r.Set(1_000_000)
	r.Done()
	want := "\rload: 1.00M/1.00M rows (100.0%) 25.0k rows/s, 40s elapsed\x1b[K\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("output %q does not end with %q", out.String(), want)
	}
}

func TestPlainModeLogs(t *testing.T) {
	type record struct {
		advance time.Duration
		add     int64
		done    bool // call Done instead of Add
		want    map[string]any
	}
	tests := []struct {
		name  string
		total int64
		steps []record
	}{
		{
			name:  "known total",
			total: 1_000_000,
			steps: []record{
				{advance: time.Second, add: 100_000},
				{advance: 4 * time.Second, add: 100_000, want: map[string]any{
					"msg": "load", "done": 200_000.0, "total": 1_000_000.0, "unit": "rows",
					"rate": 40_000.0, "eta": float64(20 * time.Second), "elapsed": float64(5 * time.Second),
				}},
				{advance: 4 * time.Second, add: 100_000},
				{advance: 6 * time.Second, done: true, want: map[string]any{
					"msg": "load", "done": 300_000.0, "total": 1_000_000.0, "unit": "rows",
					"rate": 20_000.0, "elapsed": float64(15 * time.Second),
				}},
			},
		},
		{
			name:  "unknown total",
			total: 0,
			steps: []record{
				{advance: 5 * time.Second, add: 7, want: map[string]any{
					"msg": "load", "done": 7.0, "unit": "rows",
					"rate": 1.4, "elapsed": float64(5 * time.Second),
				}},
				{advance: 5 * time.Second, add: 3, want: map[string]any{
					"msg": "load", "done": 10.0, "unit": "rows",
					"rate": 1.0, "elapsed": float64(10 * time.Second),
				}},
				{advance: 2 * time.Second, done: true, want: map[string]any{
					"msg": "load", "done": 10.0, "unit": "rows",
					"rate": 0.83, "elapsed": float64(12 * time.Second),
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			var logs, out bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			// Out is a buffer, not a terminal: auto-detection must pick
			// plain mode and the default 5s interval.
			r := New("load", "rows", tt.total, Options{Out: &out, Logger: logger, Now: clk.Now})
			for i, st := range tt.steps {
				logs.Reset()
				clk.Advance(st.advance)
				if st.done {
					r.Done()
				} else {
					r.Add(st.add)
				}
				if st.want == nil {
					if logs.Len() != 0 {
						t.Errorf("step %d: unexpected log %s", i, logs.String())
					}
					continue
				}
				var got map[string]any
				if err := json.Unmarshal(logs.Bytes(), &got); err != nil {
					t.Fatalf("step %d: decode %q: %v", i, logs.String(), err)
				}
				delete(got, "time")
				if got["level"] != "INFO" {
					t.Errorf("step %d: level = %v, want INFO", i, got["level"])
				}
				delete(got, "level")
				if len(got) != len(st.want) {
					t.Errorf("step %d: got attrs %v, want %v", i, got, st.want)
				}
				for k, v := range st.want {
					if got[k] != v {
						t.Errorf("step %d: %s = %v (%T), want %v", i, k, got[k], got[k], v)
					}
				}
			}
			if out.Len() != 0 {
				t.Errorf("plain mode wrote to Out: %q", out.String())
			}
		})
	}
}

func TestTTYAutoDetect(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no %s: %v", os.DevNull, err)
	}
	defer devNull.Close()
	regular, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()

	tests := []struct {
		name         string
		opts         Options
		wantTTY      bool
		wantInterval time.Duration
	}{
		{"character device", Options{Out: devNull}, true, 200 * time.Millisecond},
		{"regular file", Options{Out: regular}, false, 5 * time.Second},
		{"buffer", Options{Out: &bytes.Buffer{}}, false, 5 * time.Second},
		{"forced on", Options{Out: &bytes.Buffer{}, TTY: ptr(true)}, true, 200 * time.Millisecond},
		{"forced off", Options{Out: devNull, TTY: ptr(false)}, false, 5 * time.Second},
		{"explicit interval", Options{Out: regular, Interval: time.Minute}, false, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New("x", "rows", 0, tt.opts)
			if r.tty != tt.wantTTY || r.interval != tt.wantInterval {
				t.Errorf("tty=%v interval=%v, want tty=%v interval=%v",
					r.tty, r.interval, tt.wantTTY, tt.wantInterval)
			}
		})
	}
}

// Add from many goroutines must neither lose counts nor race with drawing;
// the clock moves on every read so draws happen constantly.
func TestConcurrentAdd(t *testing.T) {
	for _, tty := range []bool{true, false} {
		t.Run(map[bool]string{true: "terminal", false: "plain"}[tty], func(t *testing.T) {
			var ticks atomic.Int64
			start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			now := func() time.Time {
				return start.Add(time.Duration(ticks.Add(1)) * time.Millisecond)
			}
			var out bytes.Buffer
			r := New("load", "rows", 0, Options{
				Out: &out, TTY: ptr(tty), Interval: 10 * time.Millisecond, Now: now,
				Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
			})
			const workers, perWorker = 8, 5000
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range perWorker {
						r.Add(1)
						if i%1000 == 0 && w == 0 {
							r.Line()
						}
					}
				})
			}
			wg.Wait()
			r.Done()
			if got := r.done.Load(); got != workers*perWorker {
				t.Errorf("done = %d, want %d", got, workers*perWorker)
			}
			if !strings.HasPrefix(r.Line(), "load: 40.0k rows ") {
				t.Errorf("final line %q", r.Line())
			}
			if tty && !strings.HasSuffix(out.String(), "\n") {
				t.Errorf("terminal output does not end with a newline")
			}
		})
	}
}

// Line returns the text the reporter would print right now. After Done it
// returns the final line.
func (r *Reporter) Line() string {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finalLine != "" {
		return r.finalLine
	}
	return r.snapshotLocked(now, false).line(r.label, r.unit)
}
