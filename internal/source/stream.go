package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/riskwatch/riskwatch/internal/event"
)

// Txn is one committed source transaction, reduced to what riskwatch needs.
// A heartbeat arrives as a Txn with no events.
type Txn struct {
	// End is where the transaction ends in the source's own terms (for
	// PostgreSQL the end of the commit record, an LSN): once the sink holds
	// it, the source may be confirmed up to here.
	End Position
	// CommitUS is the source's commit time in Unix microseconds.
	CommitUS int64
	// ReceivedAt is the engine's clock when the commit arrived.
	ReceivedAt time.Time
	event.Output
	// Rows are the transaction's inserted rows of mapped tables, in order,
	// rendered as Debezium does; only when StreamOptions.Rows is set.
	Rows []Row
}

// Position is a source position, opaque to everything but its source: the
// sink stores its text, and the source reads it back to resume after it.
type Position interface{ String() string }

// Row is one inserted row, for publishing it whole (riskwatch capture).
type Row struct {
	Schema, Table string
	Values        map[string]any
	// Merchant is the merchant of the event the row became, 0 when it
	// became none (a dead letter, or filtered out).
	Merchant int64
}

// ServerState is what the stream knows about the server's WAL, for lag.
type ServerState struct {
	// ServerWALEnd and ServerTime come from the newest message the server
	// sent (XLogData or keepalive).
	ServerWALEnd LSN
	ServerTime   time.Time
	// HeardAt is when that message arrived, on the engine's clock: the
	// server's time now is about ServerTime plus the time since HeardAt,
	// which keeps lag growing while nothing arrives.
	HeardAt time.Time
}

// Tracker shares the stream's position with the rest of the engine.
type Tracker struct {
	serverWALEnd atomic.Uint64
	serverTimeUS atomic.Int64
	heardAtUS    atomic.Int64 // engine clock when serverTimeUS was heard
	lastTxn      atomic.Int64 // engine clock, Unix microseconds
}

// Server returns what the server last said.
func (t *Tracker) Server() ServerState {
	return ServerState{
		ServerWALEnd: LSN(t.serverWALEnd.Load()),
		ServerTime:   time.UnixMicro(t.serverTimeUS.Load()),
		HeardAt:      time.UnixMicro(t.heardAtUS.Load()),
	}
}

// Quiet reports whether no transaction has been received for d, measured on
// the clock now.
func (t *Tracker) Quiet(now time.Time, d time.Duration) bool {
	return now.UnixMicro()-t.lastTxn.Load() >= d.Microseconds()
}

func (t *Tracker) server(walEnd LSN, at, heard time.Time) {
	if uint64(walEnd) > t.serverWALEnd.Load() {
		t.serverWALEnd.Store(uint64(walEnd))
	}
	t.serverTimeUS.Store(at.UnixMicro())
	t.heardAtUS.Store(heard.UnixMicro())
}

// StreamOptions are the per-run inputs of Stream.
type StreamOptions struct {
	// Start is the checkpoint: transactions ending at or before it are
	// already in the sink and are not delivered again.
	Start LSN
	// Flushed returns the position up to which the sink holds everything;
	// only that is confirmed to the server, never what was merely received.
	Flushed func() LSN
	// Tracker receives positions for lag and heartbeat decisions (the
	// source's own when nil).
	Tracker *Tracker
	// Out receives every transaction committed after Start, in commit order.
	Out chan<- *Txn
	// OnStreaming, when set, is called once the server has started sending.
	OnStreaming func()
	// Rows asks for every mapped inserted row in Txn.Rows as well.
	Rows bool
}

// Stream replicates from the slot until ctx is done or the connection fails.
func (s *Source) Stream(ctx context.Context, so StreamOptions) error {
	st := s.newStreamState(so)
	conn, err := s.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The server skips transactions that ended at or before so.Start.
	if err := st.startOn(ctx, conn, so.Start); err != nil {
		return err
	}
	s.log.Info("streaming", "slot", s.opts.Slot, "from", so.Start.String())
	if so.OnStreaming != nil {
		so.OnStreaming()
	}
	return st.receive(ctx, conn, 0)
}

func (s *Source) newStreamState(so StreamOptions) *streamState {
	if so.Tracker == nil {
		so.Tracker = &s.tracker
	}
	return &streamState{src: s, so: so, received: so.Start}
}

// startOn starts decoding the slot on conn from from.
func (st *streamState) startOn(ctx context.Context, conn *pgconn.PgConn, from LSN) error {
	s := st.src
	err := pglogrepl.StartReplication(ctx, conn, s.opts.Slot, from, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			fmt.Sprintf("publication_names '%s'", s.opts.Publication),
			// Binary tuples: integers and timestamps decode without parsing text.
			"binary 'true'",
			// Heartbeats are logical messages.
			"messages 'true'",
		},
	})
	if err != nil {
		// A slot invalidated while streaming is refused with
		// object_not_in_prerequisite_state (the detail says why on
		// PostgreSQL 15, the message on later versions); the next session
		// finds it lost and rebuilds from a new snapshot.
		if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "55000" && (strings.Contains(pe.Detail, "invalidated") || strings.Contains(pe.Message, "can no longer get changes")) {
			return fmt.Errorf("replication slot %s was invalidated by the source server (max_slot_wal_keep_size exceeded); the sink is rebuilt from a new snapshot: %w", s.opts.Slot, err)
		}
		return fmt.Errorf("starting replication from %s: %w", from, err)
	}
	// A new session announces every relation again before its first change.
	st.rels = make(map[uint32]*relState)
	s.log.Debug("replication started", "slot", s.opts.Slot, "from", from.String())
	return nil
}

// receive handles the server's messages until ctx is done or the
// connection fails or, when until is not 0, until the stream has reached
// until between transactions: a commit ending at or after it was received,
// or the server said it has decoded that far (a keepalive's WAL end).
func (st *streamState) receive(ctx context.Context, conn *pgconn.PgConn, until LSN) error {
	nextStatus := time.Now()
	for {
		if until != 0 && st.cur == nil && st.reached >= until {
			return nil
		}
		if now := time.Now(); !now.Before(nextStatus) {
			if err := st.sendStatus(ctx, conn, false); err != nil {
				return err
			}
			nextStatus = now.Add(st.src.opts.StatusInterval)
		}
		rctx, cancel := context.WithDeadline(ctx, nextStatus)
		raw, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receiving replication message: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.CopyData:
			if err := st.copyData(ctx, conn, msg.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return fmt.Errorf("replication stream: server ended the copy")
		default:
			return fmt.Errorf("replication stream: unexpected message %T", raw)
		}
	}
}

type relState struct {
	name          string
	schema, table string
	mapped        *event.Table // nil: not mapped
}

type streamState struct {
	src      *Source
	so       StreamOptions
	rels     map[uint32]*relState
	cur      *Txn
	row      []event.Value
	received LSN
	// reached is how far the server has decoded in this session, as far as
	// it said: the newest commit's end or keepalive's WAL end.
	reached LSN
}

func (st *streamState) sendStatus(ctx context.Context, conn *pgconn.PgConn, reply bool) error {
	flushed := st.so.Flushed()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(st.received, flushed),
		WALFlushPosition: flushed,
		WALApplyPosition: flushed,
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("sending standby status: %w", err)
	}
	return nil
}

func (st *streamState) copyData(ctx context.Context, conn *pgconn.PgConn, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("replication stream: empty CopyData")
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parsing keepalive: %w", err)
		}
		st.so.Tracker.server(ka.ServerWALEnd, ka.ServerTime, st.src.now())
		st.reached = max(st.reached, ka.ServerWALEnd)
		if ka.ReplyRequested {
			return st.sendStatus(ctx, conn, false)
		}
		return nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parsing XLogData: %w", err)
		}
		st.so.Tracker.server(xld.ServerWALEnd, xld.ServerTime, st.src.now())
		if err := st.logical(ctx, xld.WALData); err != nil {
			return fmt.Errorf("decoding pgoutput at %s: %w", xld.WALStart, err)
		}
		return nil
	}
	return fmt.Errorf("replication stream: unknown CopyData type %q", data[0])
}

// logical handles one pgoutput message. Unknown messages are errors: skipping
// one could silently drop events.
func (st *streamState) logical(ctx context.Context, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("empty message")
	}
	d := &msgDecoder{b: b[1:]}
	m := st.src.opts.Metrics
	switch b[0] {
	case 'B':
		d.u64("begin final lsn")
		ts := int64(d.u64("begin timestamp"))
		d.u32("begin xid")
		if d.err != nil {
			return d.err
		}
		if st.cur != nil {
			return fmt.Errorf("BEGIN inside an open transaction")
		}
		st.cur = &Txn{CommitUS: ts + pgEpochUS}
	case 'C':
		d.u8("commit flags")
		d.u64("commit lsn")
		end := LSN(d.u64("commit end lsn"))
		ts := int64(d.u64("commit timestamp"))
		if d.err != nil {
			return d.err
		}
		if st.cur == nil {
			return fmt.Errorf("COMMIT without BEGIN")
		}
		txn := st.cur
		st.cur = nil
		txn.End = end
		txn.CommitUS = ts + pgEpochUS
		// The end position is only known now; it is what the checkpoint
		// and an operator looking for the row use.
		for i := range txn.DeadLetters {
			txn.DeadLetters[i].Position = end.String()
		}
		txn.ReceivedAt = st.src.now()
		st.received = end
		st.reached = max(st.reached, end)
		st.so.Tracker.lastTxn.Store(txn.ReceivedAt.UnixMicro())
		if end <= st.so.Start {
			// Already in the sink: the server resends from the slot's
			// confirmed position, which may trail our checkpoint.
			return nil
		}
		select {
		case st.so.Out <- txn:
		case <-ctx.Done():
			return ctx.Err()
		}
	case 'R':
		r := decodeRelation(d)
		if d.err != nil {
			return d.err
		}
		table, err := st.src.opts.Mapping.Bind(r.namespace, r.name, r.columns)
		if err != nil {
			return &PermanentError{fmt.Errorf("mapping does not match the source: %w", err)}
		}
		st.rels[r.id] = &relState{name: r.namespace + "." + r.name, schema: r.namespace, table: r.name, mapped: table}
	case 'I':
		if st.cur == nil {
			return fmt.Errorf("INSERT outside a transaction")
		}
		rel, err := st.relation(d.u32("insert relation"))
		if err != nil {
			return err
		}
		if k := d.u8("insert tuple kind"); k != 'N' && d.err == nil {
			return fmt.Errorf("INSERT with tuple kind %q", k)
		}
		st.row = d.tuple(st.row)
		if d.err != nil {
			return d.err
		}
		if rel.mapped == nil {
			return nil
		}
		n, filtered := len(st.cur.Events), st.cur.Filtered
		rel.mapped.Map(st.row, st.cur.CommitUS, &st.cur.Output)
		if st.so.Rows && st.cur.Filtered == filtered {
			r := Row{Schema: rel.schema, Table: rel.table, Values: rel.mapped.RowDebezium(st.row)}
			if len(st.cur.Events) > n {
				r.Merchant = st.cur.Events[n].Merchant
			}
			st.cur.Rows = append(st.cur.Rows, r)
		}
	case 'U', 'D':
		rel, err := st.relation(d.u32("relation"))
		if err != nil {
			return err
		}
		op := "update"
		if b[0] == 'D' {
			op = "delete"
		}
		m.ignored.WithLabelValues(rel.name, op).Inc()
	case 'T':
		n := int(d.u32("truncate relation count"))
		d.u8("truncate options")
		for i := 0; i < n && d.err == nil; i++ {
			rel, err := st.relation(d.u32("truncate relation"))
			if err != nil {
				return err
			}
			m.ignored.WithLabelValues(rel.name, "truncate").Inc()
			st.src.log.Warn("source table truncated; stored aggregates are kept", "table", rel.name)
		}
		return d.err
	case 'M':
		// Logical messages: our heartbeats (transactional, so their commit
		// carries the progress) and anyone else's, which mean nothing here.
		d.u8("message flags")
		d.u64("message lsn")
		d.cstring("message prefix")
		d.bytes(int(d.u32("message length")), "message content")
		return d.err
	case 'Y':
		d.u32("type oid")
		d.cstring("type namespace")
		d.cstring("type name")
		return d.err
	case 'O':
		d.u64("origin lsn")
		d.cstring("origin name")
		return d.err
	default:
		return fmt.Errorf("unknown pgoutput message %q", b[0])
	}
	return d.err
}

func (st *streamState) relation(id uint32) (*relState, error) {
	r, ok := st.rels[id]
	if !ok {
		return nil, fmt.Errorf("change for relation %d before its RELATION message", id)
	}
	return r, nil
}
