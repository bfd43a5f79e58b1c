package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Partition is one Kafka topic partition's durable position in the sink
// (table kafka_partitions): where its consumer resumes, the source position
// it has applied, how far the source is applied in it, and the newest
// minute whose rules ran for its merchants. Epoch fences a worker that lost
// the partition: every write checks it.
type Partition struct {
	Topic     string
	Partition int32
	Epoch     int64
	Owner     string
	// NextOffset is the Kafka offset to consume from.
	NextOffset int64
	// SourcePos is the newest source position applied from it, as bytes
	// that compare in the source's order (Position.Key): changes at or
	// below it are duplicates from at-least-once publishing.
	SourcePos []byte
	// Watermark: every source commit up to it that the partition carries
	// is applied.
	Watermark time.Time
	// LastClosed: rules ran through this minute for its merchants.
	LastClosed window.Minute
}

// partitions is the sink's record of the topic partitions.
type partitions struct{ db *store.DB }

// Init starts the partitions of topic afresh after a first snapshot:
// consumption from start (the topic's end offsets when the snapshot was
// taken), progress at the snapshot, rules closed through lastClosed. Epochs
// move on, so a worker still holding one is fenced.
func (s partitions) Init(ctx context.Context, topic string, start map[int32]int64, watermark time.Time, lastClosed window.Minute, snapshot string) error {
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE topic = $1 AND NOT (partition = ANY($2))`, s.db.Table("kafka_partitions")),
			topic, slices.Sorted(maps.Keys(start))); err != nil {
			return fmt.Errorf("initialising partitions of %s: %w", topic, err)
		}
		for p, off := range start {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s AS t (topic, partition, next_offset, watermark, last_closed, snapshot_position) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (topic, partition) DO UPDATE SET epoch = t.epoch + 1, owner = '', next_offset = EXCLUDED.next_offset,
					source_pos = '\x', watermark = EXCLUDED.watermark, last_closed = EXCLUDED.last_closed,
					snapshot_position = EXCLUDED.snapshot_position, updated_at = now()`,
				s.db.Table("kafka_partitions")), topic, p, off, watermark, lastClosed.Start(), snapshot); err != nil {
				return fmt.Errorf("initialising partition %s/%d: %w", topic, p, err)
			}
		}
		return nil
	})
}

// Snapshots returns the first snapshot's position each stored partition of
// topic was started from.
func (s partitions) Snapshots(ctx context.Context, topic string) (map[int32]string, error) {
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT partition, snapshot_position FROM %s WHERE topic = $1`, s.db.Table("kafka_partitions")), topic)
	if err != nil {
		return nil, fmt.Errorf("reading partitions of %s: %w", topic, err)
	}
	out := map[int32]string{}
	var p int32
	var pos string
	if _, err := pgx.ForEachRow(rows, []any{&p, &pos}, func() error {
		out[p] = pos
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading partitions of %s: %w", topic, err)
	}
	return out, nil
}

// Claim makes owner the writer of the partitions, fencing the previous
// one, and returns their positions. missing, when set, creates a partition
// never seen before (a topic not written by capture); otherwise a missing
// partition is an error.
func (s partitions) Claim(ctx context.Context, owner string, parts map[string][]int32, missing func(topic string, p int32) Partition) ([]Partition, error) {
	var out []Partition
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		out = out[:0]
		for topic, ps := range parts {
			for _, p := range slices.Sorted(slices.Values(ps)) {
				var got Partition
				var lc time.Time
				err := tx.QueryRow(ctx, fmt.Sprintf(`UPDATE %s SET epoch = epoch + 1, owner = $3, updated_at = now()
					WHERE topic = $1 AND partition = $2 RETURNING topic, partition, epoch, owner, next_offset, source_pos, watermark, last_closed`,
					s.db.Table("kafka_partitions")), topic, p, owner).
					Scan(&got.Topic, &got.Partition, &got.Epoch, &got.Owner, &got.NextOffset, &got.SourcePos, &got.Watermark, &lc)
				if err == nil {
					got.LastClosed = window.MinuteOf(lc)
					out = append(out, got)
					continue
				}
				if !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("claiming %s/%d: %w", topic, p, err)
				}
				if missing == nil {
					return fmt.Errorf("partition %s/%d is not initialised in the sink (start riskwatch capture first)", topic, p)
				}
				np := missing(topic, p)
				np.Topic, np.Partition, np.Epoch, np.Owner = topic, p, 1, owner
				if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (topic, partition, epoch, owner, next_offset, watermark, last_closed)
					VALUES ($1, $2, $3, $4, $5, $6, $7)`, s.db.Table("kafka_partitions")),
					topic, p, np.Epoch, owner, np.NextOffset, np.Watermark, np.LastClosed.Start()); err != nil {
					return fmt.Errorf("creating partition %s/%d: %w", topic, p, err)
				}
				out = append(out, np)
			}
		}
		// Rankings of members that own nothing any more would show their
		// merchants twice next to the new owner's.
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE member <> $1 AND member NOT IN (SELECT owner FROM %s)`,
			s.db.Table("worker_rankings"), s.db.Table("kafka_partitions")), owner); err != nil {
			return fmt.Errorf("forgetting rankings of former members: %w", err)
		}
		return nil
	})
	return out, err
}

// AppliedThrough is the oldest watermark over every partition of the topics
// in the sink db: all of the platform's data committed up to it is there.
func AppliedThrough(ctx context.Context, db *store.DB, topics []string) (time.Time, error) {
	var t *time.Time
	if err := db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT min(watermark) FROM %s WHERE topic = ANY($1)`, db.Table("kafka_partitions")), topics).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading partitions' watermarks: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

// SaveRanking stores a worker's ranking of its own merchants.
func (s partitions) SaveRanking(ctx context.Context, member string, asOf window.Minute, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding ranking: %w", err)
	}
	_, err = s.db.Pool().Exec(ctx, fmt.Sprintf(`INSERT INTO %s (member, as_of, body) VALUES ($1, $2, $3)
		ON CONFLICT (member) DO UPDATE SET as_of = EXCLUDED.as_of, body = EXCLUDED.body, updated_at = now()`, s.db.Table("worker_rankings")),
		member, asOf.Start(), b)
	if err != nil {
		return fmt.Errorf("storing ranking: %w", err)
	}
	return nil
}

// Rankings returns, as raw JSON per member, the rankings workers stored
// since the given time (older ones belong to members that stopped).
func (s partitions) Rankings(ctx context.Context, since time.Time) (map[string][]byte, error) {
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT member, body FROM %s WHERE updated_at >= $1`, s.db.Table("worker_rankings")), since)
	if err != nil {
		return nil, fmt.Errorf("reading rankings: %w", err)
	}
	out := map[string][]byte{}
	var m string
	var b []byte
	if _, err := pgx.ForEachRow(rows, []any{&m, &b}, func() error {
		out[m] = b
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading rankings: %w", err)
	}
	return out, nil
}

// partitionsAt is a worker's position after a batch: its partitions'
// offsets, source positions and watermarks, each written only while the
// worker's epoch is the partition's.
type partitionsAt []Partition

func (ps partitionsAt) String() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprintf("%s/%d@%d", p.Topic, p.Partition, p.NextOffset)
	}
	slices.Sort(s)
	return fmt.Sprint(s)
}

func fenced(p Partition) func(pgconn.CommandTag) error {
	return func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() != 1 {
			return fmt.Errorf("%s/%d (epoch %d): %w", p.Topic, p.Partition, p.Epoch, aggregates.ErrFenced)
		}
		return nil
	}
}

// Queue writes every partition's position.
func (ps partitionsAt) Queue(qb *pgx.Batch, db *store.DB) {
	for _, p := range ps {
		qb.Queue(fmt.Sprintf(`UPDATE %s SET next_offset = $4, source_pos = $5, watermark = $6, updated_at = now()
			WHERE topic = $1 AND partition = $2 AND epoch = $3`, db.Table("kafka_partitions")),
			p.Topic, p.Partition, p.Epoch, p.NextOffset, p.SourcePos, p.Watermark).Exec(fenced(p))
	}
}

// QueueClosed marks every partition closed through last.
func (ps partitionsAt) QueueClosed(qb *pgx.Batch, db *store.DB, last window.Minute) {
	for _, p := range ps {
		qb.Queue(fmt.Sprintf(`UPDATE %s SET last_closed = greatest(last_closed, $4), updated_at = now()
			WHERE topic = $1 AND partition = $2 AND epoch = $3`, db.Table("kafka_partitions")),
			p.Topic, p.Partition, p.Epoch, last.Start()).Exec(fenced(p))
	}
}
