package kafka

import (
	"context"

	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
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
