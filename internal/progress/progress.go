// Package progress reports the progress of long-running work (history loads,
// the first snapshot, replication catch-up, benchmarks): a single line redrawn
// in place on a terminal, or periodic structured log lines otherwise.
package progress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultTTYInterval   = 200 * time.Millisecond
	defaultPlainInterval = 5 * time.Second

	// rateWindow is how far back the displayed rate looks: long enough to
	// smooth out bursty producers, short enough that the ETA follows a
	// slowdown within seconds instead of being anchored to the whole run.
	rateWindow = 10 * time.Second
	// minSampleGap bounds the sample buffer (about rateWindow/minSampleGap
	// entries) however often Line or a draw is called.
	minSampleGap = rateWindow / 50
)

// Options configures a Reporter. The zero value is usable.
type Options struct {
	// Out is where the terminal line is drawn. When nil, os.Stderr.
	Out io.Writer
	// TTY forces terminal mode on/off; nil means auto-detect: terminal only
	// when Out is an *os.File whose Stat() mode has os.ModeCharDevice.
	TTY *bool
	// Logger receives the plain lines in non-terminal mode (slog.Default()
	// when nil): msg = the label, attrs done, total (omitted when unknown),
	// unit, rate (per second, rounded), eta (a time.Duration rounded to
	// seconds, omitted when unknown), elapsed.
	Logger *slog.Logger
	// Interval between redraws (terminal, default 200ms) or log lines
	// (plain, default 5s).
	Interval time.Duration
	// Now is the clock (time.Now when nil); tests inject a fake one.
	Now func() time.Time
}

// Reporter tracks one piece of long work. Safe for concurrent use.
//
// Add and Set are meant for hot loops, so they touch only atomics unless a
// redraw is due; the mutex is taken only by the one goroutine that wins the
// right to draw.
type Reporter struct {
	label    string
	unit     string
	out      io.Writer
	tty      bool
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time
	start    time.Time

	done  atomic.Int64
	total atomic.Int64
	// nextDraw is the offset from start (in ns) at which the next draw is
	// due; a CAS on it elects a single drawer per interval.
	nextDraw atomic.Int64
	finished atomic.Bool

	mu        sync.Mutex
	samples   []sample // ascending by at; samples[0] is the rate baseline
	finalLine string
}

type sample struct {
	at   time.Duration // offset from start
	done int64
}

// New starts a reporter for label counting unit (e.g. "rows", "events",
// "days") with total (0 = unknown).
func New(label, unit string, total int64, opts Options) *Reporter {
	r := &Reporter{
		label:  label,
		unit:   unit,
		out:    opts.Out,
		logger: opts.Logger,
		now:    opts.Now,
	}
	if r.out == nil {
		r.out = os.Stderr
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	if opts.TTY != nil {
		r.tty = *opts.TTY
	} else {
		r.tty = isTerminal(r.out)
	}
	r.interval = opts.Interval
	if r.interval <= 0 {
		if r.tty {
			r.interval = defaultTTYInterval
		} else {
			r.interval = defaultPlainInterval
		}
	}
	r.start = r.now()
	r.total.Store(total)
	r.nextDraw.Store(int64(r.interval))
	// The start sample makes the early rate the overall average until the
	// run is older than rateWindow.
	r.samples = append(r.samples, sample{})
	return r
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Add records n more units of work done.
func (r *Reporter) Add(n int64) {
	r.done.Add(n)
	r.tick()
}

// Set records the absolute amount of work done, for callers that already
// track a position (e.g. an LSN or a row offset).
func (r *Reporter) Set(done int64) {
	r.done.Store(done)
	r.tick()
}

// SetTotal changes the total (0 = unknown), for work whose size is only
// learned after it has started.
func (r *Reporter) SetTotal(total int64) {
	r.total.Store(total)
}

// tick draws if Interval has passed since the last draw. The fast path is a
// clock read and an atomic load, so it is fine to call from every Add.
func (r *Reporter) tick() {
	if r.finished.Load() {
		return
	}
	now := r.now()
	at := int64(now.Sub(r.start))
	next := r.nextDraw.Load()
	if at < next {
		return
	}
	// Losing the CAS means another goroutine is drawing this interval.
	if !r.nextDraw.CompareAndSwap(next, at+int64(r.interval)) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Done may have run between the check above and taking the lock; its
	// final line must stay the last thing written.
	if r.finished.Load() {
		return
	}
	s := r.snapshotLocked(now, false)
	if r.tty {
		_, _ = io.WriteString(r.out, "\r"+s.line(r.label, r.unit)+"\x1b[K")
	} else {
		s.log(r.logger, r.label, r.unit)
	}
}

// Done draws/logs the final line (terminal: ends it with "\n") with the
// overall average rate and the elapsed time, and stops further output.
// Calls after the first do nothing.
func (r *Reporter) Done() {
	if r.finished.Swap(true) {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snapshotLocked(now, true)
	r.finalLine = s.line(r.label, r.unit)
	if r.tty {
		_, _ = io.WriteString(r.out, "\r"+r.finalLine+"\x1b[K\n")
	} else {
		s.log(r.logger, r.label, r.unit)
	}
}

// snapshot is everything a line or log record needs, computed once so the
// terminal and plain outputs never disagree.
type snapshot struct {
	done, total int64
	rate        float64 // units per second
	eta         time.Duration
	etaKnown    bool
	elapsed     time.Duration
	final       bool
}

func (r *Reporter) snapshotLocked(now time.Time, final bool) snapshot {
	at := now.Sub(r.start)
	s := snapshot{
		done:    r.done.Load(),
		total:   max(r.total.Load(), 0),
		elapsed: at,
		final:   final,
	}
	if final {
		if at > 0 {
			s.rate = float64(s.done) / at.Seconds()
		}
	} else {
		r.recordLocked(at, s.done)
		base := r.samples[0]
		if span := at - base.at; span > 0 {
			s.rate = float64(s.done-base.done) / span.Seconds()
		}
	}
	// A Set backwards (e.g. a restarted scan) would give a negative rate,
	// which means nothing to a reader and breaks the ETA.
	if s.rate < 0 || math.IsNaN(s.rate) {
		s.rate = 0
	}
	if !final && s.total > 0 {
		remaining := s.total - s.done
		switch {
		case remaining <= 0:
			s.eta, s.etaKnown = 0, true
		case s.rate > 0:
			secs := math.Round(float64(remaining) / s.rate)
			if secs < float64(math.MaxInt64/int64(time.Second)) {
				s.eta, s.etaKnown = time.Duration(secs)*time.Second, true
			}
		}
	}
	return s
}

// recordLocked adds a sample and drops those no longer needed: the baseline
// kept at samples[0] is the newest sample at least rateWindow old, so the
// rate always covers at least the window (or the whole run while it is
// younger than that).
func (r *Reporter) recordLocked(at time.Duration, done int64) {
	if last := r.samples[len(r.samples)-1]; at-last.at >= minSampleGap {
		r.samples = append(r.samples, sample{at: at, done: done})
	}
	cut := 0
	for i := 1; i < len(r.samples) && at-r.samples[i].at >= rateWindow; i++ {
		cut = i
	}
	if cut > 0 {
		r.samples = append(r.samples[:0], r.samples[cut:]...)
	}
}

func (s snapshot) line(label, unit string) string {
	var b strings.Builder
	b.WriteString(label + ": " + humanInt(s.done))
	if s.total > 0 {
		b.WriteString("/" + humanInt(s.total))
	}
	b.WriteString(" " + unit)
	if s.total > 0 {
		fmt.Fprintf(&b, " (%.1f%%)", 100*float64(s.done)/float64(s.total))
	}
	b.WriteString(" " + humanFloat(s.rate) + " " + unit + "/s")
	switch {
	case s.total > 0 && !s.final && s.etaKnown:
		b.WriteString(" ETA " + formatDuration(s.eta))
	case s.total > 0 && !s.final:
		b.WriteString(" ETA ?")
	default:
		b.WriteString(", " + formatDuration(s.elapsed) + " elapsed")
	}
	return b.String()
}

func (s snapshot) log(l *slog.Logger, label, unit string) {
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.Int64("done", s.done))
	if s.total > 0 {
		attrs = append(attrs, slog.Int64("total", s.total))
	}
	attrs = append(attrs,
		slog.String("unit", unit),
		// Two decimals rather than whole units so slow units ("days")
		// do not all log as a rate of 0.
		slog.Float64("rate", math.Round(s.rate*100)/100),
	)
	if s.etaKnown {
		attrs = append(attrs, slog.Duration("eta", s.eta))
	}
	attrs = append(attrs, slog.Duration("elapsed", s.elapsed.Round(time.Millisecond)))
	l.LogAttrs(context.Background(), slog.LevelInfo, label, attrs...)
}

// humanInt formats a count for people: exact with thousands separators below
// 10,000 (1234 -> "1,234"), otherwise three significant digits with an SI
// suffix (12345 -> "12.3k", 1234567 -> "1.23M").
func humanInt(n int64) string {
	if n < 0 {
		if n == math.MinInt64 {
			return "-" + humanLarge(-float64(n))
		}
		return "-" + humanInt(-n)
	}
	if n < 10000 {
		return commas(n)
	}
	return humanLarge(float64(n))
}

// humanFloat formats a rate like humanInt, keeping a fractional digit or two
// for small values so slow work does not show as "0".
func humanFloat(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "?"
	case v < 0:
		return "-" + humanFloat(-v)
	case v == 0:
		return "0"
	case v < 0.995:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 9.95:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Round(v) < 10000:
		return commas(int64(math.Round(v)))
	}
	return humanLarge(v)
}

// siSuffixes is a constant string (not a slice) so there is no package-level
// mutable state; index 0 means no suffix.
const siSuffixes = " kMGTPE"

// humanLarge formats v >= 9999.5 with three significant digits. The
// thresholds are checked against the rounded mantissa so 999,999 becomes
// "1.00M" rather than "1000k".
func humanLarge(v float64) string {
	i := 0
	for i < len(siSuffixes)-1 && v >= 999.5 {
		v /= 1000
		i++
	}
	prec := 0
	switch {
	case v < 9.995:
		prec = 2
	case v < 99.95:
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + strings.TrimSpace(siSuffixes[i:i+1])
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead == 0 {
		lead = 3
	}
	b.WriteString(s[:lead])
	for i := lead; i < len(s); i += 3 {
		b.WriteByte(',')
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// formatDuration formats d rounded to seconds: "12s", "1m05s", "2h03m04s".
func formatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + formatDuration(-d)
	}
	secs := int64(d.Round(time.Second) / time.Second)
	h, m, s := secs/3600, secs/60%60, secs%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}
