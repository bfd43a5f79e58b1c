package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// coreRig is a Core on a sink of its own, with a clock the test moves.
type coreRig struct {
	t        *testing.T
	db       *store.DB
	agg      *aggregates.Store
	cfg      *config.Config
	cp       aggregates.Checkpoint
	core     *Core
	metrics  *Metrics
	now      time.Time
	step     time.Duration // the clock moves this much at every reading
	canClose bool
	closes   []ClosedMinutes
	wakes    int
	images   []window.Minute // the rules images stored, by closed minute
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newCoreRig starts a core whose minutes through 02:59 UTC are closed,
// with progress at 03:00:00.5 and the clock at 03:00:01.
func newCoreRig(t *testing.T, configure ...func(*config.Config)) *coreRig {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.Sink.DSN = cluster.NewDB(t)
	cfg.Source.DSN = cfg.Sink.DSN // never read: the test is the input
	cfg.Pipeline.MaxBatchEvents = 10
	cfg.Notify.Receivers = []config.Receiver{{Name: "log", Type: "log"}}
	for _, f := range configure {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &coreRig{t: t, db: db, agg: aggregates.New(db), cfg: cfg, now: at(t, "2026-12-01T03:00:01Z"), canClose: true}
	err = r.agg.Bootstrap(ctx, aggregates.Checkpoint{Slot: "core", Position: "p0", LastClosed: window.MinuteOf(at(t, "2026-12-01T02:59:00Z")),
		Progress: at(t, "2026-12-01T03:00:00.5Z"), BusinessTimezone: cfg.Location.String()},
		func(context.Context, *aggregates.Loader) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.cp, err = r.agg.Claim(ctx, "core"); err != nil {
		t.Fatal(err)
	}
	alerts := alertstore.New(db)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	status := &StatusBoard{}
	r.metrics = NewMetrics(prometheus.NewRegistry(), status)
	ev, err := NewEvaluator(ctx, r.agg, cfg, r.cp.LastClosed, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.core = NewCore(CoreOptions{Config: cfg, Aggregates: r.agg, Alerts: alerts, Logger: log, Metrics: r.metrics, Status: status,
		Stall: NewStallWatch(cfg, "test", alerts, nil, log, r.metrics, status), Now: func() time.Time {
			now := r.now
			r.now = r.now.Add(r.step)
			return now
		},
		CanClose: func(context.Context, window.Minute) (bool, error) { return r.canClose, nil },
		OnAlerts: func() { r.wakes++ },
		OnClose:  func(_ context.Context, c ClosedMinutes) { r.closes = append(r.closes, c) },
		SaveRules: func(ctx context.Context, seq int64, st *rules.State) error {
			_, err := r.agg.SaveRulesResume(ctx, r.cp, seq, ev.Params, st)
			if err == nil {
				r.images = append(r.images, st.LastClosed())
			}
			return err
		},
	}, ev, r.cp.LastClosed, r.cp.Progress)
	return r
}

// pos is the checkpoint's position name at the core's state.
func (r *coreRig) pos(name string) aggregates.CheckpointPosition {
	return r.cp.At(name, r.core.Evaluated(), r.core.Progress())
}

func (r *coreRig) flush(name string) {
	r.t.Helper()
	if err := r.core.Flush(context.Background(), r.pos(name)); err != nil {
		r.t.Fatal(err)
	}
}

// minute reads a merchant's stored minute.
func (r *coreRig) minute(merchant int64, start string) window.Agg {
	r.t.Helper()
	var a window.Agg
	err := r.db.Pool().QueryRow(context.Background(), `SELECT coalesce(sum(approvals), 0), coalesce(sum(approved_amount), 0), coalesce(sum(cancels), 0), coalesce(sum(canceled_amount), 0)
		FROM `+r.db.Table("minute_agg")+` WHERE merchant_id = $1 AND minute = $2`, merchant, at(r.t, start)).Scan(&a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount)
	if err != nil {
		r.t.Fatal(err)
	}
	return a
}

// checkpoint reads the stored position and closed minute.
func (r *coreRig) checkpoint() (string, window.Minute) {
	r.t.Helper()
	cp, err := r.agg.Checkpoint(context.Background(), "core")
	if err != nil {
		r.t.Fatal(err)
	}
	return cp.Position, cp.LastClosed
}

func events(kind event.Kind, merchant int64, when time.Time, amounts ...int64) []event.Event {
	var out []event.Event
	for _, a := range amounts {
		out = append(out, event.Event{Kind: kind, Merchant: merchant, TimeUS: when.UnixMicro(), Amount: a})
	}
	return out
}

// TestCoreFlushIntervalFromStart: the next flush is due one interval after
// the last one started, however long the sink took; counted from its end,
// every flush would make the next batch wait longer and grow.
func TestCoreFlushIntervalFromStart(t *testing.T) {
	t.Parallel()
	r := newCoreRig(t)
	c := r.core
	interval := r.cfg.Pipeline.FlushInterval.D()
	var out event.Output
	out.Events = events(event.Approval, 7, at(t, "2026-12-01T03:00:10Z"), 1000)
	c.Add(&out, at(t, "2026-12-01T03:00:10.5Z").UnixMicro(), func() string { return "p1" })
	started := r.now
	r.step = interval / 3 // each clock reading inside the flush is a third of an interval later
	r.flush("p1")
	r.step = 0
	if r.now.Sub(started) < interval/2 {
		t.Fatalf("the flush read the clock over %s; the test needs a slow flush", r.now.Sub(started))
	}
	out.Reset()
	out.Events = events(event.Approval, 7, at(t, "2026-12-01T03:00:11Z"), 1000)
	c.Add(&out, at(t, "2026-12-01T03:00:11.5Z").UnixMicro(), func() string { return "p2" })
	if c.Due(started.Add(interval-time.Millisecond), 5*time.Second) {
		t.Fatal("due before an interval from the last flush's start")
	}
	if !c.Due(started.Add(interval), 5*time.Second) {
		t.Fatal("not due an interval after the last flush started: the interval was counted from its end")
	}
}

// TestCoreFlushesAndCloses drives the core by hand on a clock the test
// moves: when a flush is due, what one flush makes durable, that minutes
// close and are evaluated only once progress passes their end + grace and
// the closing is allowed, and that a position write is part of the same
// transaction as the data it covers.
func TestCoreFlushesAndCloses(t *testing.T) {
	t.Parallel()
	r := newCoreRig(t)
	c := r.core
	interval := r.cfg.Pipeline.FlushInterval.D()
	idle := 5 * time.Second

	if c.Due(r.now.Add(time.Hour), idle) {
		t.Fatal("a core with nothing pending is due")
	}
	// Merchant 7: three approvals (6,000 KRW); merchant 8, never seen:
	// six cancels of 500 and no approvals. With no history the baseline
	// is the floor, 0.2%: 6 >= min_cancels 5 and 6 >= 2 × 0.002 × 20.
	var out event.Output
	out.Events = append(events(event.Approval, 7, at(t, "2026-12-01T03:00:10Z"), 1000, 2000, 3000),
		events(event.Cancel, 8, at(t, "2026-12-01T03:00:20Z"), 500, 500, 500, 500, 500, 500)...)
	out.Filtered = 2
	c.Add(&out, at(t, "2026-12-01T03:00:20.5Z").UnixMicro(), func() string { return "p1" })
	c.Advance(at(t, "2026-12-01T03:00:20.5Z").UnixMicro())
	if c.Due(r.now.Add(interval-time.Millisecond), idle) {
		t.Fatal("due before a flush interval with 9 events pending (the batch holds 10)")
	}
	if !c.Due(r.now.Add(interval), idle) {
		t.Fatal("not due a flush interval after events arrived")
	}
	r.now = r.now.Add(interval)
	r.flush("p1")
	if got, want := r.minute(7, "2026-12-01T03:00:00Z"), (window.Agg{Approvals: 3, ApprovedAmount: 6000}); got != want {
		t.Fatalf("merchant 7 at 03:00 = %+v, want %+v", got, want)
	}
	if got, want := r.minute(8, "2026-12-01T03:00:00Z"), (window.Agg{Cancels: 6, CanceledAmount: 3000}); got != want {
		t.Fatalf("merchant 8 at 03:00 = %+v, want %+v", got, want)
	}
	if pos, closed := r.checkpoint(); pos != "p1" || closed != r.cp.LastClosed {
		t.Fatalf("checkpoint %s, closed %s; want p1, %s", pos, closed, r.cp.LastClosed)
	}
	if c.Evaluated() != r.cp.LastClosed || len(r.closes) != 0 {
		t.Fatalf("evaluated %s with %d closes before 03:00 could close", c.Evaluated(), len(r.closes))
	}
	if got := testutil.ToFloat64(r.metrics.events.WithLabelValues("cancel")); got != 6 {
		t.Fatalf("riskwatch_events_total{kind=cancel} = %v, want 6", got)
	}
	if got := testutil.ToFloat64(r.metrics.filtered); got != 2 {
		t.Fatalf("riskwatch_filtered_rows_total = %v, want 2", got)
	}

	// Only the position moves: written after idleEvery, not before.
	if c.Due(r.now.Add(time.Hour), idle) {
		t.Fatal("due right after a flush with nothing new")
	}
	c.Touch()
	if c.Due(r.now.Add(idle-time.Millisecond), idle) || !c.Due(r.now.Add(idle), idle) {
		t.Fatal("a moved position is not written exactly after idleEvery")
	}

	// A full batch is due at once.
	out.Reset()
	out.Events = events(event.Approval, 7, at(t, "2026-12-01T03:00:40Z"), 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	c.Add(&out, 0, func() string { return "p2" })
	if !c.Due(r.now, idle) {
		t.Fatal("a batch of max_batch_events is not due at once")
	}
	r.flush("p2")

	// Progress one microsecond short of 03:01:00 + grace closes nothing.
	grace := r.cfg.Grace.D()
	c.Advance(at(t, "2026-12-01T03:01:00Z").Add(grace).UnixMicro() - 1)
	r.flush("p3")
	if c.Evaluated() != r.cp.LastClosed {
		t.Fatalf("03:00 evaluated at progress 03:01:00 + grace - 1µs")
	}
	// At 03:01:00 + grace it closes: due at once, evaluated in the flush,
	// with the alert, its notification and the mark stored.
	c.Advance(at(t, "2026-12-01T03:01:00Z").Add(grace).UnixMicro())
	if !c.Due(r.now, idle) {
		t.Fatal("closed minutes are not due at once")
	}
	r.flush("p4")
	m0300 := window.MinuteOf(at(t, "2026-12-01T03:00:00Z"))
	if c.Evaluated() != m0300 || len(r.closes) != 1 || r.closes[0].First != m0300 || r.closes[0].Last != m0300 {
		t.Fatalf("evaluated %s, closes %+v; want 03:00 once", c.Evaluated(), r.closes)
	}
	if tr := r.closes[0].Transitions; len(tr) != 1 || tr[0].After.Rule != "cancel_rate_spike" || tr[0].After.Merchant != 8 || tr[0].Alert.ID == 0 {
		t.Fatalf("transitions of 03:00: %+v; want merchant 8's cancel_rate_spike firing, stored", tr)
	}
	if r.wakes != 1 {
		t.Fatalf("the notifier was woken %d times, want 1", r.wakes)
	}
	if pos, closed := r.checkpoint(); pos != "p4" || closed != m0300 {
		t.Fatalf("checkpoint %s, closed %s; want p4, 03:00", pos, closed)
	}
	var queued int
	if err := r.db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM `+r.db.Table("notifications")).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if queued != 1 {
		t.Fatalf("%d notifications queued, want 1", queued)
	}

	// The closing may wait (a worker waits for the platform's other
	// partitions): the data is written, the minute is not evaluated, and
	// the core stays due until it is.
	r.canClose = false
	c.Advance(at(t, "2026-12-01T03:02:00Z").Add(grace).UnixMicro())
	r.flush("p5")
	if pos, closed := r.checkpoint(); c.Evaluated() != m0300 || pos != "p5" || closed != m0300 {
		t.Fatalf("while closing waits: evaluated %s, checkpoint %s closed %s", c.Evaluated(), pos, closed)
	}
	if !c.Due(r.now, idle) {
		t.Fatal("a waiting close is not due again")
	}
	r.canClose = true
	r.flush("p6")
	if _, closed := r.checkpoint(); c.Evaluated() != m0300+1 || closed != m0300+1 || len(r.closes) != 2 {
		t.Fatalf("after the wait: evaluated %s, closed %s, %d closes; want 03:01 and 2", c.Evaluated(), closed, len(r.closes))
	}
}

// TestCoreSumOverflowAndFencing: an event that would take its minute's
// pending sum past int64 becomes a dead letter at its position instead of
// wrapping; a core whose checkpoint was claimed by a newer session writes
// nothing.
func TestCoreSumOverflowAndFencing(t *testing.T) {
	t.Parallel()
	r := newCoreRig(t)
	c := r.core
	half := int64(math.MaxInt64/2 + 1)
	var out event.Output
	out.Events = events(event.Approval, 9, at(t, "2026-12-01T03:00:05Z"), half, half)
	c.Add(&out, at(t, "2026-12-01T03:00:06Z").UnixMicro(), func() string { return "lsn-9" })
	r.flush("p1")
	if got, want := r.minute(9, "2026-12-01T03:00:00Z"), (window.Agg{Approvals: 1, ApprovedAmount: half}); got != want {
		t.Fatalf("merchant 9 at 03:00 = %+v, want %+v", got, want)
	}
	var reason, pos string
	if err := r.db.Pool().QueryRow(context.Background(), `SELECT reason, position FROM `+r.db.Table("dead_letters")).Scan(&reason, &pos); err != nil {
		t.Fatal(err)
	}
	if reason != string(event.ReasonAmountOutOfRange) || pos != "lsn-9" {
		t.Fatalf("dead letter %s at %s, want amount_out_of_range at lsn-9", reason, pos)
	}
	if got := testutil.ToFloat64(r.metrics.deadLetters.WithLabelValues(string(event.ReasonAmountOutOfRange))); got != 1 {
		t.Fatalf("riskwatch_dead_letters_total{reason=amount_out_of_range} = %v, want 1", got)
	}

	// A newer session claims the checkpoint; this one is fenced.
	if _, err := r.agg.Claim(context.Background(), "core"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	out.Events = events(event.Approval, 10, at(t, "2026-12-01T03:00:30Z"), 777)
	c.Add(&out, 0, func() string { return "p2" })
	if err := c.Flush(context.Background(), r.pos("p2")); !errors.Is(err, aggregates.ErrFenced) {
		t.Fatalf("flush after a newer claim: %v, want ErrFenced", err)
	}
	if got := r.minute(10, "2026-12-01T03:00:00Z"); got != (window.Agg{}) {
		t.Fatalf("a fenced flush wrote merchant 10: %+v", got)
	}
	if pos, _ := r.checkpoint(); pos != "p1" {
		t.Fatalf("a fenced flush moved the checkpoint to %s", pos)
	}
}

// TestCoreStoresRulesImages: the core stores an image of the rules state
// at its first close and then an hour of minutes later; resuming from it
// after late events, at a later minute, gives the snapshot a full read
// gives and the state the live core holds.
func TestCoreStoresRulesImages(t *testing.T) {
	t.Parallel()
	// Any merchant with 7 KRW approved over the 7 days before a business
	// day is large on it: volume curves for the image to carry.
	r := newCoreRig(t, func(c *config.Config) { c.Rules.VolumeDrop.LargeDailyAmount = 1 })
	c := r.core
	ctx := context.Background()
	grace := r.cfg.Grace.D()
	var out event.Output
	add := func(kind event.Kind, merchant int64, when string, amounts ...int64) {
		out.Reset()
		out.Events = events(kind, merchant, at(t, when), amounts...)
		c.Add(&out, 0, func() string { return "p" })
	}
	closeThrough := func(m string, pos string) {
		c.Advance(at(t, m).Add(time.Minute + grace).UnixMicro())
		r.flush(pos)
	}
	add(event.Approval, 7, "2026-12-01T03:00:10Z", 1000, 2000, 3000)
	add(event.Cancel, 8, "2026-12-01T03:00:20Z", 500, 500)
	// The 7 days before 1 December KST: merchants 7 and 12 sold on them.
	add(event.Approval, 7, "2026-11-28T04:00:00Z", 50_000)
	add(event.Approval, 12, "2026-11-30T14:59:00Z", 90_000, 10_000)
	closeThrough("2026-12-01T03:00:00Z", "p1")
	m0300 := window.MinuteOf(at(t, "2026-12-01T03:00:00Z"))
	if len(r.images) != 1 || r.images[0] != m0300 {
		t.Fatalf("images %v, want one at the first close, 03:00", r.images)
	}
	// Late events into H and into B (02:10 is in B of 03:15), and minutes
	// closing after the image.
	add(event.Approval, 7, "2026-12-01T03:00:30Z", 4000)
	add(event.Cancel, 9, "2026-12-01T02:10:00Z", 900)
	add(event.Approval, 9, "2026-12-01T02:10:00Z", 1500, 1500)
	add(event.Approval, 10, "2026-12-01T03:05:00Z", 700)
	add(event.Approval, 12, "2026-11-25T00:00:00Z", 333) // late, into 12's curve
	closeThrough("2026-12-01T03:15:00Z", "p2")
	add(event.Cancel, 7, "2026-12-01T03:01:00Z", 1000)
	add(event.Cancel, 11, "2026-12-01T03:20:00Z", 100)
	r.flush("p3")
	if len(r.images) != 1 {
		t.Fatalf("images %v: another before an hour of minutes", r.images)
	}
	check := func() {
		t.Helper()
		l := c.Evaluated()
		want, err := r.agg.RulesSnapshot(ctx, l, true, c.ev.Params.ExposureMinutes)
		if err != nil {
			t.Fatal(err)
		}
		got, imageAt, err := r.agg.ResumeRulesSnapshot(ctx, r.cp.Slot, l, c.ev.Params, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil || imageAt != r.images[len(r.images)-1] {
			t.Fatalf("at %s: resumed from the image at %s, want the newest of %v (%v)", l, imageAt, r.images, err)
		}
		// The volume day: the live state's, which is what reading it gives.
		live, ok := c.ev.State.Volume()
		if !ok || got.Volume == nil || len(live.Curves) != 2 || !reflect.DeepEqual(*got.Volume, live) {
			t.Fatalf("at %s: resumed volume day %+v, live %+v (%v)", l, got.Volume, live, ok)
		}
		fresh, err := r.agg.VolumeDay(ctx, live.Day, c.ev.Params.Volume.LargeDailyAmount, l)
		maps.DeleteFunc(fresh.Today, func(_, v int64) bool { return v == 0 })
		if err != nil || !reflect.DeepEqual(fresh, live) {
			t.Fatalf("at %s: the live volume day is not what reading it gives (%v)", l, err)
		}
		got.Volume = nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("at %s: resumed %+v\nread %+v", l, got, want)
		}
		weeks := func(st *rules.State) map[int64]rules.MerchantWeek {
			out := map[int64]rules.MerchantWeek{}
			for w := range st.Weeks {
				out[w.Merchant] = *w
			}
			return out
		}
		if live, resumedState := weeks(c.ev.State), weeks(rules.NewState(got, window.NewCalendar(r.cfg.Location))); !reflect.DeepEqual(live, resumedState) || len(live) < 3 {
			t.Fatalf("at %s: live state %+v, resumed %+v", l, live, resumedState)
		}
	}
	check()
	// An hour of minutes later, the next image.
	closeThrough("2026-12-01T04:01:00Z", "p4")
	if m := window.MinuteOf(at(t, "2026-12-01T04:01:00Z")); len(r.images) != 2 || r.images[1] != m {
		t.Fatalf("images %v, want a second at 04:01", r.images)
	}
	add(event.Cancel, 9, "2026-12-01T02:10:00Z", 800)
	r.flush("p5")
	check()
}

// TestCoreResumedWaitsAnHourForTheNextImage: a session that resumed from
// an image does not store another while it catches up, only an hour of
// minutes after the image it resumed from, or at a new business day.
func TestCoreResumedWaitsAnHourForTheNextImage(t *testing.T) {
	t.Parallel()
	r := newCoreRig(t)
	r.core.saved = r.cp.LastClosed - 30 // as NewCore does with RulesSavedAt
	grace := r.cfg.Grace.D()
	r.core.Advance(at(t, "2026-12-01T03:00:00Z").Add(time.Minute + grace).UnixMicro())
	r.flush("p1")
	if len(r.images) != 0 {
		t.Fatalf("images %v at the first close of a resumed session", r.images)
	}
	r.core.Advance(at(t, "2026-12-01T03:29:00Z").Add(time.Minute + grace).UnixMicro())
	r.flush("p2")
	if m := window.MinuteOf(at(t, "2026-12-01T03:29:00Z")); len(r.images) != 1 || r.images[0] != m {
		t.Fatalf("images %v, want one at 03:29, an hour after 02:29", r.images)
	}
	// 23:59 KST is more than an hour later; 00:00 KST is a minute after
	// that, but on a new business day (whose curves the image carries).
	r.core.Advance(at(t, "2026-12-01T14:59:00Z").Add(time.Minute + grace).UnixMicro())
	r.flush("p3")
	r.core.Advance(at(t, "2026-12-01T15:00:00Z").Add(time.Minute + grace).UnixMicro())
	r.flush("p4")
	r.core.Advance(at(t, "2026-12-01T15:01:00Z").Add(time.Minute + grace).UnixMicro())
	r.flush("p5")
	if len(r.images) != 3 || r.images[1] != window.MinuteOf(at(t, "2026-12-01T14:59:00Z")) || r.images[2] != window.MinuteOf(at(t, "2026-12-01T15:00:00Z")) {
		t.Fatalf("images %v, want the third at 00:00 KST", r.images)
	}
}

// TestCoreReadsTheNextDaysCurvesAhead: once a business day's last minute
// has closed, the next day's volume curves are read in the background;
// the new day's first close installs them with the approvals flushed in
// between, and they are what reading them then gives (for the day's large
// merchants, fixed when the read began).
func TestCoreReadsTheNextDaysCurvesAhead(t *testing.T) {
	t.Parallel()
	r := newCoreRig(t, func(c *config.Config) { c.Rules.VolumeDrop.LargeDailyAmount = 1 })
	c := r.core
	c.ev.ReadAhead = true
	ctx := context.Background()
	grace := r.cfg.Grace.D()
	var out event.Output
	add := func(merchant int64, when string, amounts ...int64) {
		out.Reset()
		out.Events = events(event.Approval, merchant, at(t, when), amounts...)
		c.Add(&out, 0, func() string { return "p" })
	}
	closeThrough := func(m string, pos string) {
		c.Advance(at(t, m).Add(time.Minute + grace).UnixMicro())
		r.flush(pos)
	}
	// In the 7 days before 2 December KST (25 November … 1 December).
	add(7, "2026-11-28T04:00:00Z", 50_000)
	add(12, "2026-11-30T14:59:00Z", 90_000)
	closeThrough("2026-12-01T14:59:00Z", "p1") // 23:59 KST on the 1st
	dec2 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	if c.ev.next == nil || !c.ev.next.day.Equal(dec2) {
		t.Fatalf("after 23:59 KST closed, reading ahead: %+v", c.ev.next)
	}
	// Flushed while it reads: late sales into the 7 days (one of a
	// merchant that was not large when the read began), and 00:00 KST.
	add(12, "2026-11-30T14:59:00Z", 444)
	add(7, "2026-12-01T10:00:00Z", 3_000)
	add(13, "2026-11-29T01:00:00Z", 80_000)
	add(7, "2026-12-01T15:00:20Z", 600)
	closeThrough("2026-12-01T15:00:00Z", "p2")
	if c.ev.next != nil {
		t.Fatal("the curves read ahead were not taken at the new day's first close")
	}
	live, ok := c.ev.State.Volume()
	if !ok || !live.Day.Equal(dec2) || len(live.Curves) != 2 || live.Curves[7] == nil || live.Curves[12] == nil {
		t.Fatalf("the new day: %v, %+v", ok, live)
	}
	// By hand: merchant 12's Sum7 90,444, merchant 7's 53,000 and today 600.
	if live.Curves[12].Sum7 != 90_444 || live.Curves[7].Sum7 != 53_000 || live.Today[7] != 600 {
		t.Fatalf("Sum7 %d and %d, today %v", live.Curves[12].Sum7, live.Curves[7].Sum7, live.Today)
	}
	fresh, err := r.agg.VolumeDay(ctx, dec2, 1, c.Evaluated())
	if err != nil || fresh.Curves[13] == nil {
		t.Fatalf("reading the day now: %v, merchant 13 large: %v", err, fresh.Curves[13] != nil)
	}
	maps.DeleteFunc(fresh.Curves, func(id int64, _ *rules.Curve) bool { return live.Curves[id] == nil })
	maps.DeleteFunc(fresh.Today, func(id, v int64) bool { return v == 0 || live.Curves[id] == nil })
	if !reflect.DeepEqual(fresh, live) {
		t.Fatalf("the curves read ahead and brought forward differ from reading them now")
	}
}

// TestImagesStoredOffTheFlushPath: the core's SaveRules hands the image
// over and returns; the writer goroutine stores it. A second image while
// the first is still pending is refused, not queued.
func TestImagesStoredOffTheFlushPath(t *testing.T) {
	r := newCoreRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := r.core.ev.State
	n := &Node{agg: r.agg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	images := make(chan aggregates.RulesImage, 1)
	save := n.queueImage(images, r.core.ev.Params)
	if err := save(ctx, 7, st); err != nil {
		t.Fatalf("first image refused: %v", err)
	}
	if err := save(ctx, 8, st); err == nil {
		t.Fatal("a second image was queued behind a pending one")
	}
	done := make(chan struct{})
	go func() { defer close(done); n.storeImages(ctx, r.cp, images) }()
	var seq int64
	var closed time.Time
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := r.db.Pool().QueryRow(ctx, `SELECT seq, last_closed FROM `+r.db.Table("rules_resume")+` WHERE slot = $1`, r.cp.Slot).Scan(&seq, &closed)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no image stored: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if seq != 7 || !closed.Equal(st.LastClosed().Start()) {
		t.Errorf("stored image seq %d at %s, want 7 at %s", seq, closed, st.LastClosed().Start())
	}
	cancel()
	<-done
}
