package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/window"
)

// ErrFenced means another worker claimed a partition since this one did:
// whatever it was about to write belongs to the new owner now.
var ErrFenced = errors.New("partition claimed by another worker")

// Partition is one Kafka topic partition's durable position (migration 004).
type Partition struct {
	Topic     string
	Partition int32
	Epoch     int64
	Owner     string
	// NextOffset is the Kafka offset to consume from.
	NextOffset int64
	// PosCommit and PosLSN are the newest source position applied from it.
	PosCommit, PosLSN uint64
	// Watermark: every source commit up to it that the partition carries
	// is applied.
	Watermark time.Time
	// LastClosed: rules ran through this minute for its merchants.
	LastClosed window.Minute
}

func (s *Store) scanPartitions(rows pgx.Rows) ([]Partition, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Partition, error) {
		var p Partition
		var pc, pl int64
		var lc time.Time
		err := r.Scan(&p.Topic, &p.Partition, &p.Epoch, &p.Owner, &p.NextOffset, &pc, &pl, &p.Watermark, &lc)
		p.PosCommit, p.PosLSN, p.LastClosed = uint64(pc), uint64(pl), window.MinuteOf(lc)
		return p, err
	})
}

const partitionCols = "topic, partition, epoch, owner, next_offset, pos_commit, pos_lsn, watermark, last_closed"

// InitPartitions starts the partitions of topic afresh after a first
// snapshot: consumption from start (the topic's end offsets when the
// snapshot was taken), progress at the snapshot, rules closed through
// lastClosed. Epochs move on, so a worker still holding one is fenced.
func (s *Store) InitPartitions(ctx context.Context, topic string, start map[int32]int64, watermark time.Time, lastClosed window.Minute, snapshotLSN uint64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE topic = $1 AND NOT (partition = ANY($2))`, s.table("kafka_partitions")),
			topic, keys(start)); err != nil {
			return fmt.Errorf("initialising partitions of %s: %w", topic, err)
		}
		for p, off := range start {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s AS t (topic, partition, next_offset, watermark, last_closed, snapshot_lsn) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (topic, partition) DO UPDATE SET epoch = t.epoch + 1, owner = '', next_offset = EXCLUDED.next_offset,
					pos_commit = 0, pos_lsn = 0, watermark = EXCLUDED.watermark, last_closed = EXCLUDED.last_closed,
					snapshot_lsn = EXCLUDED.snapshot_lsn, updated_at = now()`,
				s.table("kafka_partitions")), topic, p, off, watermark, lastClosed.Start(), int64(snapshotLSN)); err != nil {
				return fmt.Errorf("initialising partition %s/%d: %w", topic, p, err)
			}
		}
		return nil
	})
}

func keys(m map[int32]int64) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// PartitionsSnapshotLSN returns the first-snapshot LSN each stored
// partition of topic was started from.
func (s *Store) PartitionsSnapshotLSN(ctx context.Context, topic string) (map[int32]uint64, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT partition, snapshot_lsn FROM %s WHERE topic = $1`, s.table("kafka_partitions")), topic)
	if err != nil {
		return nil, fmt.Errorf("reading partitions of %s: %w", topic, err)
	}
	defer rows.Close()
	out := map[int32]uint64{}
	for rows.Next() {
		var p int32
		var l int64
		if err := rows.Scan(&p, &l); err != nil {
			return nil, fmt.Errorf("reading partitions of %s: %w", topic, err)
		}
		out[p] = uint64(l)
	}
	return out, rows.Err()
}

// Partitions returns every stored partition of the topics.
func (s *Store) Partitions(ctx context.Context, topics []string) ([]Partition, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE topic = ANY($1) ORDER BY topic, partition`, partitionCols, s.table("kafka_partitions")), topics)
	if err != nil {
		return nil, fmt.Errorf("reading partitions: %w", err)
	}
	return s.scanPartitions(rows)
}

// ClaimPartitions makes owner the writer of the partitions, fencing the
// previous one, and returns their positions. missing, when set, creates a
// partition never seen before (a topic not written by capture); otherwise a
// missing partition is an error.
func (s *Store) ClaimPartitions(ctx context.Context, owner string, parts map[string][]int32, missing func(topic string, p int32) Partition) ([]Partition, error) {
	var out []Partition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = out[:0]
		for topic, ps := range parts {
			for _, p := range slices.Sorted(slices.Values(ps)) {
				rows, err := tx.Query(ctx, fmt.Sprintf(`UPDATE %s SET epoch = epoch + 1, owner = $3, updated_at = now()
					WHERE topic = $1 AND partition = $2 RETURNING %s`, s.table("kafka_partitions"), partitionCols), topic, p, owner)
				if err != nil {
					return fmt.Errorf("claiming %s/%d: %w", topic, p, err)
				}
				got, err := s.scanPartitions(rows)
				if err != nil {
					return fmt.Errorf("claiming %s/%d: %w", topic, p, err)
				}
				if len(got) == 1 {
					out = append(out, got[0])
					continue
				}
				if missing == nil {
					return fmt.Errorf("partition %s/%d is not initialised in the sink (start riskwatch capture first)", topic, p)
				}
				np := missing(topic, p)
				np.Topic, np.Partition, np.Epoch, np.Owner = topic, p, 1, owner
				if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (topic, partition, epoch, owner, next_offset, watermark, last_closed)
					VALUES ($1, $2, $3, $4, $5, $6, $7)`, s.table("kafka_partitions")),
					topic, p, np.Epoch, owner, np.NextOffset, np.Watermark, np.LastClosed.Start()); err != nil {
					return fmt.Errorf("creating partition %s/%d: %w", topic, p, err)
				}
				out = append(out, np)
			}
		}
		// Rankings of members that own nothing any more would show their
		// merchants twice next to the new owner's.
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE member <> $1 AND member NOT IN (SELECT owner FROM %s)`,
			s.table("worker_rankings"), s.table("kafka_partitions")), owner); err != nil {
			return fmt.Errorf("forgetting rankings of former members: %w", err)
		}
		return nil
	})
	return out, err
}

// lockPartitions locks the partitions' rows and checks their epochs.
func (s *Store) lockPartitions(ctx context.Context, tx pgx.Tx, parts []Partition) error {
	for _, p := range parts {
		var epoch int64
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT epoch FROM %s WHERE topic = $1 AND partition = $2 FOR UPDATE`, s.table("kafka_partitions")),
			p.Topic, p.Partition).Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && epoch != p.Epoch) {
			return fmt.Errorf("%s/%d (epoch %d, stored %d): %w", p.Topic, p.Partition, p.Epoch, epoch, ErrFenced)
		}
		if err != nil {
			return fmt.Errorf("locking %s/%d: %w", p.Topic, p.Partition, err)
		}
	}
	return nil
}

// WorkerBatch is what one worker flush applies.
type WorkerBatch struct {
	Deltas      []window.Delta
	DeadLetters []event.DeadLetter
	// Partitions are the worker's partitions with their new positions;
	// LastClosed is not written here.
	Partitions []Partition
	// Refused is set as in Batch.
	Refused []event.DeadLetter
}

// ApplyWorker is Apply for a worker: the deltas, the dead letters and the
// partitions' offsets and positions in one transaction, refused with
// ErrFenced when any partition has been claimed by another worker since.
func (s *Store) ApplyWorker(ctx context.Context, b *WorkerBatch) error {
	kept, refused, err := s.applyChecked(ctx, b.Deltas, 0, time.Time{}, func(ctx context.Context, tx pgx.Tx, deltas []window.Delta, refused []event.DeadLetter) error {
		if err := s.lockPartitions(ctx, tx, b.Partitions); err != nil {
			return err
		}
		var qb pgx.Batch
		if err := s.queueDeltas(&qb, deltas); err != nil {
			return err
		}
		for _, p := range b.Partitions {
			qb.Queue(fmt.Sprintf(`UPDATE %s SET next_offset = $3, pos_commit = $4, pos_lsn = $5, watermark = $6, updated_at = now()
				WHERE topic = $1 AND partition = $2`, s.table("kafka_partitions")),
				p.Topic, p.Partition, p.NextOffset, int64(p.PosCommit), int64(p.PosLSN), p.Watermark)
		}
		if err := tx.SendBatch(ctx, &qb).Close(); err != nil {
			return fmt.Errorf("applying %d deltas: %w", len(deltas), err)
		}
		return s.insertDeadLetters(ctx, tx, "stream", append(refused, b.DeadLetters...))
	})
	if err != nil {
		return err
	}
	b.Deltas, b.Refused = kept, refused
	return nil
}

// markPartitionsClosed is ApplyAlerts' last step for a worker.
func (s *Store) markPartitionsClosed(ctx context.Context, tx pgx.Tx, parts []Partition, last window.Minute) error {
	if err := s.lockPartitions(ctx, tx, parts); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET last_closed = greatest(last_closed, $3), updated_at = now() WHERE topic = $1 AND partition = $2`,
			s.table("kafka_partitions")), p.Topic, p.Partition, last.Start()); err != nil {
			return fmt.Errorf("marking %s/%d closed: %w", p.Topic, p.Partition, err)
		}
	}
	return nil
}

// AppliedThrough is the oldest watermark over every partition of the
// topics: all of the platform's data committed up to it is in the sink.
func (s *Store) AppliedThrough(ctx context.Context, topics []string) (time.Time, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT min(watermark) FROM %s WHERE topic = ANY($1)`, s.table("kafka_partitions")), topics).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading partitions' watermarks: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

// PlatformSums returns all merchants' approvals and cancels over the minutes
// [from, to), from the platform totals every worker adds to.
func (s *Store) PlatformSums(ctx context.Context, from, to window.Minute) (approvals, cancels int64, err error) {
	err = s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(sum(approvals), 0)::bigint, coalesce(sum(cancels), 0)::bigint FROM %s
		WHERE minute >= $1 AND minute < $2`, s.table("platform_minute")), from.Start(), to.Start()).Scan(&approvals, &cancels)
	if err != nil {
		return 0, 0, fmt.Errorf("reading platform sums %s..%s: %w", from, to, err)
	}
	return approvals, cancels, nil
}

// SaveRanking stores a worker's ranking of its own merchants.
func (s *Store) SaveRanking(ctx context.Context, member string, asOf window.Minute, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding ranking: %w", err)
	}
	_, err = s.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (member, as_of, body) VALUES ($1, $2, $3)
		ON CONFLICT (member) DO UPDATE SET as_of = EXCLUDED.as_of, body = EXCLUDED.body, updated_at = now()`, s.table("worker_rankings")),
		member, asOf.Start(), b)
	if err != nil {
		return fmt.Errorf("storing ranking: %w", err)
	}
	return nil
}

// Rankings returns, as raw JSON per member, the rankings workers stored
// since the given time (older ones belong to members that stopped).
func (s *Store) Rankings(ctx context.Context, since time.Time) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT member, body FROM %s WHERE updated_at >= $1`, s.table("worker_rankings")), since)
	if err != nil {
		return nil, fmt.Errorf("reading rankings: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var m string
		var b []byte
		if err := rows.Scan(&m, &b); err != nil {
			return nil, fmt.Errorf("reading rankings: %w", err)
		}
		out[m] = b
	}
	return out, rows.Err()
}
