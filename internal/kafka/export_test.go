package kafka

import (
	"context"
	"time"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/source"

	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// The sink's partition claims, for the tests of fencing.

// ClaimPartitions is the claim a worker makes when partitions are assigned.
func ClaimPartitions(ctx context.Context, db *store.DB, owner string, parts map[string][]int32) ([]Partition, error) {
	return partitions{db}.Claim(ctx, owner, parts, nil)
}

// PositionOf is the position a worker holding ps writes with its batches.
func PositionOf(ps []Partition) interface {
	aggregates.Position
	alertstore.Marker
} {
	return partitionsAt(ps)
}

// InitPartitions starts the partitions of topic afresh, as capture does
// after a first snapshot at position snapshot.
func InitPartitions(ctx context.Context, db *store.DB, topic string, start map[int32]int64, watermark time.Time, lastClosed window.Minute, snapshot string) error {
	return partitions{db}.Init(ctx, topic, start, watermark, lastClosed, snapshot)
}

// Stall is the worker's watch for a session failing the same way again and
// again.
func (w *Worker) Stall() *engine.StallWatch { return w.stall }

// MapMySQL is a worker's mapping of a MySQL source's row, DATETIMEs read
// in loc.
func MapMySQL(m *event.Mapping, loc *time.Location, c Change, out *event.Output) (mapped bool, err error) {
	return newMySQLRows(m, loc).Map(&c, out)
}

// ForwardMySQL is capture's check, before it publishes a MySQL
// transaction ending at end, that end comes after last.
func ForwardMySQL(last string, end binlog.Position) error {
	src := mysqlCapture{}
	mark, err := src.mark(last)
	if err != nil {
		return err
	}
	p := &publisher{c: &Capture{src: src}, lastEnd: last, lastMark: mark}
	return p.forward(&source.Txn{End: end})
}
