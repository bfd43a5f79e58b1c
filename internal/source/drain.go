package source

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// confirmWait bounds how long a drain waits for the sink to hold what it
// read before confirming and disconnecting. Waiting lets the slot's restart
// point move at this drain instead of the next, so the server keeps and
// re-decodes less WAL; the applier flushes a closing minute at once, so the
// wait is normally a few milliseconds.
const confirmWait = 2 * time.Second

// Drain delivers what Stream delivers, in the same order, but holds no
// replication connection between minutes. Just after every minute's end +
// grace it commits a heartbeat (which closes that minute, as the streamed
// boundary heartbeat does), connects, reads everything the server had
// flushed by then, confirms what the sink holds, and disconnects. The first
// drain runs at once and is the catch-up; OnStreaming is called after it.
//
// Why: PostgreSQL wakes every walsender on every commit, and at a few dozen
// commits a second that, not decoding, is most of what a streaming client
// costs the source (BENCHMARKS.md). A drain decodes the same WAL once a
// minute in one go. The price is freshness between minutes: aggregates and
// the dashboard are up to a minute old, while each minute still closes
// within the drain's time of its end + grace.
func (s *Source) Drain(ctx context.Context, so StreamOptions) error {
	st := s.newStreamState(so)
	hb := &heartbeater{src: s}
	defer hb.close(ctx)
	s.log.Info("draining once a minute", "slot", s.opts.Slot, "from", so.Start.String())
	for first := true; ; first = false {
		if !first {
			t := time.NewTimer(s.untilBoundary())
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := st.drain(ctx, hb); err != nil {
			return err
		}
		if first && so.OnStreaming != nil {
			so.OnStreaming()
		}
	}
}

// drain is one connection's worth of Drain.
func (st *streamState) drain(ctx context.Context, hb *heartbeater) error {
	s, m := st.src, st.src.opts.Metrics
	started := time.Now()
	// Committed before the target is read, so this drain carries it. A
	// failed heartbeat (logged) only means the minute closes at a later
	// commit; the drain is still worth doing.
	_ = hb.emit(ctx)
	conn, err := s.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("reading the server's WAL position: %w", err)
	}
	// IDENTIFY_SYSTEM answers with the flushed end of WAL: every commit
	// made so far, the heartbeat's included, ends at or before it.
	until := sys.XLogPos
	st.so.Tracker.server(until, s.now(), s.now())
	if until <= st.received {
		m.drains.Observe(time.Since(started).Seconds())
		return nil
	}
	st.reached = 0
	if err := st.startOn(ctx, conn, st.received); err != nil {
		return err
	}
	if err := st.receive(ctx, conn, until); err != nil {
		return err
	}
	for wait := time.Now().Add(confirmWait); st.so.Flushed() < st.received && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := st.sendStatus(ctx, conn, false); err != nil {
		return err
	}
	// Ending the copy, rather than hanging up, has the server read the
	// status first and stop without a "connection reset" in its log; what
	// it sent past until is dropped here and read again next time.
	if err := conn.Conn().SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return fmt.Errorf("ending the drain: %w", err)
	}
	if _, err := pglogrepl.SendStandbyCopyDone(ctx, conn); err != nil {
		return fmt.Errorf("ending the drain: %w", err)
	}
	m.drains.Observe(time.Since(started).Seconds())
	s.log.Debug("drained", "until", until.String(), "received", st.received.String(), "took", time.Since(started).Round(time.Millisecond))
	return nil
}
