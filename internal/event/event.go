// Package event turns inserted source rows into approval and cancellation
// events (SPEC §2), and rows that cannot be events into dead letters with a
// reason (SPEC §3). Which table feeds which kind, and from which columns, is
// configuration: a Mapping bound to the column layout that the replication
// stream announces for each table.
package event

import (
	"fmt"
	"math"
	"time"
)

// Kind says whether an event is an approval or a cancellation.
type Kind uint8

const (
	// Approval is a payment (SPEC §2: an INSERT into payments).
	Approval Kind = iota + 1
	// Cancel is a full or partial cancellation (an INSERT into payment_cancels).
	Cancel
)

func (k Kind) String() string {
	switch k {
	case Approval:
		return "approval"
	case Cancel:
		return "cancel"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind reads "approval" or "cancel".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "approval":
		return Approval, nil
	case "cancel":
		return Cancel, nil
	}
	return 0, fmt.Errorf("event kind must be \"approval\" or \"cancel\", got %q", s)
}

// Event is one approval or cancellation. Money is integer KRW; the time is
// the row's own transaction time, never the commit time.
type Event struct {
	Merchant int64
	Kind     Kind
	Amount   int64
	// TimeUS is the transaction time in Unix microseconds (UTC).
	TimeUS int64
}

// Time returns the transaction time as a time.Time in UTC.
func (e Event) Time() time.Time { return time.UnixMicro(e.TimeUS).UTC() }

// Reason says why a row could not be aggregated.
type Reason string

// Reasons a row becomes a dead letter. They are metric label values and are
// stored with each dead letter, so they are part of the operator's interface.
const (
	ReasonNullMerchant   Reason = "null_merchant"
	ReasonNullAmount     Reason = "null_amount"
	ReasonNullTime       Reason = "null_time"
	ReasonNegativeAmount Reason = "negative_amount"
	// ReasonAmountOutOfRange: an amount above max_amount, or one whose sum
	// with its bucket's would not fit in int64.
	ReasonAmountOutOfRange Reason = "amount_out_of_range"
	ReasonInvalidValue     Reason = "invalid_value"
	ReasonFutureTime       Reason = "future_time"
	ReasonTooOld           Reason = "older_than_retention"
)

// Reasons lists every reason, so metrics can start each at zero.
var Reasons = []Reason{ReasonNullMerchant, ReasonNullAmount, ReasonNullTime, ReasonNegativeAmount, ReasonAmountOutOfRange, ReasonInvalidValue, ReasonFutureTime, ReasonTooOld}

// DeadLetter is a row that was not aggregated, kept with everything needed to
// find it at the source and to repair it.
type DeadLetter struct {
	// Table is the schema-qualified source table.
	Table  string
	Kind   Kind
	Reason Reason
	// Detail explains the reason in words (which column, which value).
	Detail string
	// Row is the whole row, column name to value, ready for JSON.
	Row map[string]any
	// Position is the source transaction's end position in the source's
	// own text (an LSN, a binlog position); empty for rows found by the
	// first snapshot.
	Position string
	// CommitTime is the source transaction's commit time; zero for snapshot rows.
	CommitTime time.Time
}

// Limits bound which transaction times are aggregated (SPEC §3).
type Limits struct {
	// MaxFuture: an event more than this after its commit time is invalid.
	MaxFuture time.Duration
	// Retention: an event older than this before its commit time is invalid.
	Retention time.Duration
	// MaxAmount: a larger amount is invalid.
	MaxAmount int64
}

// SumOverflow is the dead letter of a valid event that could not be
// counted: adding it would take the sum of the bucket named (a merchant's
// minute, hour or day, or the platform's minute) past int64. It takes at
// least 9.2 million events at max_amount in one bucket.
func SumOverflow(ev Event, bucket string, pos string, commit time.Time) DeadLetter {
	return DeadLetter{
		Kind: ev.Kind, Reason: ReasonAmountOutOfRange,
		Detail: fmt.Sprintf("merchant %d: this %s of %d KRW at %s would take its %s's sum past %d, so it is not counted",
			ev.Merchant, ev.Kind, ev.Amount, ev.Time().Format(time.RFC3339Nano), bucket, int64(math.MaxInt64)),
		Row:      map[string]any{"merchant": ev.Merchant, "kind": ev.Kind.String(), "amount": ev.Amount, "time": ev.Time()},
		Position: pos, CommitTime: commit,
	}
}
