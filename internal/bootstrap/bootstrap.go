// Package bootstrap decides where an input resumes when it starts: after
// the sink's checkpoint when the source can still resume from there, or,
// when there is none or the source lost what resuming needs, after a new
// first snapshot — a consistent snapshot of the source whose history is
// aggregated into the sink in one transaction with the position the stream
// starts from, so that history and stream neither overlap nor leave a gap.
// The single-node engine and Kafka's capture start this way.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Source is what a first start needs of the source database.
type Source interface {
	// Resumable reports whether the source still holds what a stream
	// resuming after checkpoint (a position; "" when the sink has none)
	// needs (PostgreSQL: the slot exists; MySQL: the binlog files are still
	// there). A source that cannot rebuild safely on its own returns an
	// error instead of false.
	Resumable(ctx context.Context, checkpoint string) (bool, error)
	// Abandon removes what an unfinished first start left (a slot the
	// sink never reached).
	Abandon(ctx context.Context) error
	// Snapshot opens a consistent snapshot, creating what the stream will
	// resume from at the snapshot's position, and calls load with it. If
	// load fails, what was created is removed again.
	Snapshot(ctx context.Context, load func(ctx context.Context, snap Snapshot) error) error
}

// Snapshot is the source as of one position: everything committed before
// it is visible, everything after arrives through the stream.
type Snapshot interface {
	// Position is where the stream starts, in the source's own text.
	Position() string
	// Time is the source's clock at the snapshot: it stands in for the
	// commit time of the rows in it.
	Time() time.Time
	// Days splits the history in the retention into business days of loc
	// where the source can aggregate a day cheaply, else one piece.
	Days(loc *time.Location) []Chunk
	// Width is how many chunks Aggregate takes at once.
	Width() int
	// Aggregate writes the per-merchant minute aggregates of the chunks
	// to w; done is called as each chunk finishes.
	Aggregate(ctx context.Context, chunks []Chunk, w MinuteWriter, done func()) error
	// Leftovers maps, as the stream would, every row the aggregation left
	// out (not events by its reading, or in the merchant-minutes of
	// overflow).
	Leftovers(ctx context.Context, overflow []window.Key, each func(*event.Output) error) error
}

// MinuteWriter takes a snapshot's per-merchant minute aggregates in
// either of two forms: COPY text rows (merchant_id, minute, approvals,
// approved_amount, cancels, canceled_amount) through Write, whole rows with
// sums uncast, as a server's GROUP BY sends them; or, from a snapshot that
// sums its rows itself, numbers through Sums, with Overflow for a
// merchant-minute whose sums do not fit an int64. Either way the loader
// leaves out what would not fit the sink, for Leftovers.
type MinuteWriter interface {
	io.Writer
	Sums(merchant int64, m window.Minute, a window.Agg) error
	Overflow(merchant int64, m window.Minute)
}

// Chunk is a range of transaction time [From, To) aggregated in one query.
type Chunk struct{ From, To time.Time }

// Options configure Start.
type Options struct {
	// Slot names the checkpoint.
	Slot     string
	Location *time.Location
	Grace    time.Duration
	Logger   *slog.Logger
	// ProgressOut shows the first snapshot's progress on a terminal.
	ProgressOut io.Writer
	Now         func() time.Time
	// Hook runs inside the first snapshot before the history is read
	// (tests commit rows there).
	Hook func(ctx context.Context) error
	// Loaded, when set, is called when Start took a new snapshot (not
	// when it found a checkpoint to resume from).
	Loaded func()
	// Rules, when set, is handed the rules state at the new checkpoint's
	// last closed minute (exposure window of ExposureMinutes), summed by
	// the loader as the snapshot's rows passed, so that the engine need
	// not read it back; it is not called when the loader could not (rows
	// added after the load), and the engine reads the state then.
	Rules           func(rules.Snapshot)
	ExposureMinutes int
}

// Start returns the sink's checkpoint for the source, taking the first
// snapshot when there is none or the source can no longer resume from it.
func Start(ctx context.Context, src Source, st *aggregates.Store, o Options) (aggregates.Checkpoint, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	cp, err := st.Checkpoint(ctx, o.Slot)
	if err != nil && !errors.Is(err, aggregates.ErrNoCheckpoint) {
		return cp, err
	}
	haveCP := err == nil
	resumable, err := src.Resumable(ctx, cp.Position)
	if err != nil {
		return cp, err
	}
	switch {
	case haveCP && resumable:
		return cp, nil
	case haveCP:
		o.Logger.Warn("the source can no longer resume from the checkpoint (its replication slot is gone): the changes since are in no stream any more, so the sink is rebuilt from a new snapshot",
			"slot", o.Slot, "checkpoint", cp.Position)
	case resumable:
		// What resuming needs exists without a checkpoint: a first start
		// that never finished, whose start point the sink never reached.
		o.Logger.Warn("the source is ready to resume but the sink has no checkpoint (an earlier first start did not finish); starting over", "slot", o.Slot)
		if err := src.Abandon(ctx); err != nil {
			return cp, err
		}
	}
	if err := load(ctx, src, st, o); err != nil {
		return cp, fmt.Errorf("first snapshot: %w", err)
	}
	// The snapshot's rollups were summed in maps of a million entries that
	// are garbage now; without this the process would keep their pages
	// (measured at full scale: 259 MiB resident during the peak that
	// followed, 168 MiB with this).
	debug.FreeOSMemory()
	if o.Loaded != nil {
		o.Loaded()
	}
	return st.Checkpoint(ctx, o.Slot)
}

func load(ctx context.Context, src Source, st *aggregates.Store, o Options) error {
	started := o.Now()
	var loader *aggregates.Loader
	err := src.Snapshot(ctx, func(ctx context.Context, snap Snapshot) error {
		if o.Hook != nil {
			if err := o.Hook(ctx); err != nil {
				return err
			}
		}
		// Minutes already over (end + grace) at the snapshot are closed.
		lastClosed := window.New(o.Grace, 0).ClosableThrough(snap.Time().UnixMicro())
		cp := aggregates.Checkpoint{Slot: o.Slot, Position: snap.Position(), LastClosed: lastClosed, Progress: snap.Time()}
		return st.Bootstrap(ctx, cp, func(ctx context.Context, l *aggregates.Loader) error {
			loader = l
			if o.Rules != nil {
				l.SumRules(o.ExposureMinutes)
			}
			days := snap.Days(o.Location)
			rep := progress.New("first snapshot", "chunks", int64(len(days)), progress.Options{Out: o.ProgressOut, Logger: o.Logger})
			var minutes int64
			// A business day's minutes go to the loader in one call, so
			// that its hourly and daily rollups are whole.
			for i := 0; i < len(days); i += snap.Width() {
				group := days[i:min(i+snap.Width(), len(days))]
				n, err := l.CopyMinutes(ctx, func(w *aggregates.MinuteWriter) error {
					return snap.Aggregate(ctx, group, w, func() { rep.Add(1) })
				})
				if err != nil {
					return err
				}
				minutes += n
			}
			rep.Done()
			// Rows the aggregation left out go through the stream's own
			// mapping, so both paths store the same aggregates and dead
			// letters.
			var dead int64
			note := "found by the first snapshot, whose time " + snap.Time().Format(time.RFC3339Nano) + " stands in for the commit time: "
			err := snap.Leftovers(ctx, l.Overflowed(), func(out *event.Output) error {
				for i := range out.DeadLetters {
					out.DeadLetters[i].Detail = note + out.DeadLetters[i].Detail
				}
				n, err := l.Leftovers(ctx, out)
				dead += n
				return err
			})
			if err != nil {
				return err
			}
			o.Logger.Info("first snapshot loaded", "merchant_minutes", minutes, "dead_letters", dead,
				"snapshot_time", snap.Time(), "position", snap.Position(), "elapsed", o.Now().Sub(started).Round(time.Millisecond))
			return nil
		}, func(step string, took time.Duration) {
			o.Logger.Info("first snapshot: "+step, "took", took.Round(time.Millisecond).String())
		})
	})
	if err == nil && o.Rules != nil {
		if snap, ok := loader.LoadedRules(); ok {
			o.Rules(snap)
		}
	}
	return err
}
