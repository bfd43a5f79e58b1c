package aggregates

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Checkpoint is a single node's durable position for one source (its
// replication slot, or the name that stands for a binlog reader).
type Checkpoint struct {
	Slot string
	// Position is the end of the last source transaction whose changes
	// are in the sink, in the source's own text (an LSN, a binlog position
	// or GTID set): the input resumes after it.
	Position string
	// Epoch is the writer's: Claim moves it on, and a write with an older
	// one is refused.
	Epoch int64
	// LastClosed is the newest closed minute whose rules ran.
	LastClosed window.Minute
	// Progress is the source commit time up to which changes are applied.
	Progress time.Time
	// SnapshotPosition is where the first snapshot's stream started.
	SnapshotPosition string
	BootstrappedAt   time.Time
	BusinessTimezone string
	UpdatedAt        time.Time
}

// ErrNoCheckpoint means the sink has never been bootstrapped for the slot.
var ErrNoCheckpoint = errors.New("no checkpoint")

// ErrFenced means another writer took over the position since this one
// claimed it: whatever it was about to write belongs to the new writer. It
// is the store's, which a lease's fence returns too.
var ErrFenced = store.ErrFenced

const checkpointCols = `position, epoch, last_closed, progress, snapshot_position, bootstrapped_at, business_timezone, updated_at`

// Checkpoint reads the slot's checkpoint, or ErrNoCheckpoint.
func (s *Store) Checkpoint(ctx context.Context, slot string) (Checkpoint, error) {
	return s.checkpoint(ctx, s.db.Pool(), "reading", fmt.Sprintf(`SELECT %s FROM %s WHERE slot = $1`, checkpointCols, s.db.Table("checkpoint")), slot)
}

// Claim makes the caller the checkpoint's writer and returns it: its epoch
// moves on, so a process still writing with the one before (an engine that
// lost its connection, a second engine started by mistake) is refused from
// now on.
func (s *Store) Claim(ctx context.Context, slot string) (Checkpoint, error) {
	var cp Checkpoint
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		var err error
		cp, err = s.checkpoint(ctx, tx, "claiming", fmt.Sprintf(`UPDATE %s SET epoch = epoch + 1, updated_at = now() WHERE slot = $1 RETURNING %s`,
			s.db.Table("checkpoint"), checkpointCols), slot)
		return err
	})
	return cp, err
}

// ForgetCheckpoint deletes the slot's checkpoint, so that the next start
// takes a new first snapshot (which replaces what the sink holds). It
// reports whether there was one. A source that keeps nothing for riskwatch
// on its server (MySQL) has no slot to drop; this is its slot drop.
func (s *Store) ForgetCheckpoint(ctx context.Context, slot string) (bool, error) {
	ct, err := s.db.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE slot = $1`, s.db.Table("checkpoint")), slot)
	if err != nil {
		return false, fmt.Errorf("forgetting checkpoint %s: %w", slot, err)
	}
	return ct.RowsAffected() > 0, nil
}

// checkpoint runs sql on q, which returns checkpointCols of the slot's row.
func (s *Store) checkpoint(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, what, sql, slot string) (Checkpoint, error) {
	cp := Checkpoint{Slot: slot}
	var lastClosed time.Time
	err := q.QueryRow(ctx, sql, slot).Scan(&cp.Position, &cp.Epoch, &lastClosed, &cp.Progress, &cp.SnapshotPosition,
		&cp.BootstrappedAt, &cp.BusinessTimezone, &cp.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return cp, ErrNoCheckpoint
	}
	if err != nil {
		return cp, fmt.Errorf("%s checkpoint: %w", what, err)
	}
	cp.LastClosed = window.MinuteOf(lastClosed)
	return cp, nil
}

// At is the position a claimed checkpoint's writer reaches: it is written
// with the batch that reaches it, and closing minutes marks them on it.
func (cp Checkpoint) At(position string, lastClosed window.Minute, progress time.Time) CheckpointPosition {
	return CheckpointPosition{Slot: cp.Slot, Epoch: cp.Epoch, Position: position, LastClosed: lastClosed, Progress: progress}
}

// CheckpointPosition is a single node's position after a batch.
type CheckpointPosition struct {
	Slot       string
	Epoch      int64
	Position   string
	LastClosed window.Minute
	Progress   time.Time
}

func (p CheckpointPosition) String() string { return p.Position }

// fenced refuses a write that found no row to move: another writer claimed
// the checkpoint since, or (marking minutes evaluated) it would move the
// closed minutes backwards.
func (p CheckpointPosition) fenced(ct pgconn.CommandTag) error {
	if ct.RowsAffected() != 1 {
		return fmt.Errorf("checkpoint for slot %s (epoch %d) is claimed by a newer writer or past %s: %w: is another engine writing this sink?",
			p.Slot, p.Epoch, p.LastClosed, ErrFenced)
	}
	return nil
}

// Queue writes the position, its progress and the last closed minute.
func (p CheckpointPosition) Queue(qb *pgx.Batch, db *store.DB) {
	qb.Queue(fmt.Sprintf(`UPDATE %s SET position = $3, last_closed = $4, progress = $5, updated_at = now()
		WHERE slot = $1 AND epoch = $2`, db.Table("checkpoint")),
		p.Slot, p.Epoch, p.Position, p.LastClosed.Start(), p.Progress).Exec(p.fenced)
}

// QueueClosed marks the minutes through last evaluated, with their alerts.
func (p CheckpointPosition) QueueClosed(qb *pgx.Batch, db *store.DB, last window.Minute) {
	qb.Queue(fmt.Sprintf(`UPDATE %s SET last_closed = $3, updated_at = now() WHERE slot = $1 AND epoch = $2 AND last_closed <= $3`, db.Table("checkpoint")),
		p.Slot, p.Epoch, last.Start()).Exec(p.fenced)
}
