package kafka

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderType is the record header that marks riskwatch's own control
// records; a record without it is a change event.
const HeaderType = "riskwatch-type"

const typeWatermark = "watermark"

// Watermark promises that every source commit up to CommitUS (Unix µs), at
// source position LSN, has been published: a PostgreSQL WAL position, or a
// MySQL binlog position as BinlogPosition's Commit (file sequence and
// offset). Capture writes one to every
// partition, so a worker can close a minute once all its partitions have
// passed it, even when some partitions carry no events.
type Watermark struct {
	CommitUS int64  `json:"commit_us"`
	LSN      uint64 `json:"lsn"`
}

// EncodeWatermark returns the value and headers of a watermark record.
func EncodeWatermark(w Watermark) (value []byte, headers []kgo.RecordHeader) {
	return fmt.Appendf(nil, `{"commit_us":%d,"lsn":%d}`, w.CommitUS, w.LSN), []kgo.RecordHeader{{Key: HeaderType, Value: []byte(typeWatermark)}}
}

// IsWatermark reports whether a record with these headers is a watermark.
func IsWatermark(headers []kgo.RecordHeader) bool {
	for _, h := range headers {
		if h.Key == HeaderType && string(h.Value) == typeWatermark {
			return true
		}
	}
	return false
}

// DecodeWatermark reads a watermark record's value.
func DecodeWatermark(value []byte) (Watermark, error) {
	var w struct {
		CommitUS *int64  `json:"commit_us"`
		LSN      *uint64 `json:"lsn"`
	}
	if err := decodeJSON(value, &w); err != nil {
		return Watermark{}, fmt.Errorf("decoding watermark: %w", err)
	}
	// A watermark that defaulted to 0 would be harmless for closing but
	// would hide a broken producer.
	if w.CommitUS == nil || w.LSN == nil {
		return Watermark{}, errors.New("decoding watermark: commit_us or lsn missing")
	}
	return Watermark{CommitUS: *w.CommitUS, LSN: *w.LSN}, nil
}
