package event_test

import (
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
)

func TestKindString(t *testing.T) {
	tests := []struct {
		name string
		kind event.Kind
		want string
	}{
		{"approval", event.Approval, "approval"},
		{"cancel", event.Cancel, "cancel"},
		{"zero value", event.Kind(0), "kind(0)"},
		{"out of range", event.Kind(7), "kind(7)"},
		{"max", event.Kind(255), "kind(255)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", uint8(tt.kind), got, tt.want)
			}
		})
	}
}

func TestKindValues(t *testing.T) {
	// The zero Kind must not be a valid kind: a forgotten field is caught by
	// NewMapping instead of silently meaning "approval".
	if event.Approval == 0 || event.Cancel == 0 || event.Approval == event.Cancel {
		t.Fatalf("Approval = %d, Cancel = %d: want two distinct non-zero kinds", event.Approval, event.Cancel)
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    event.Kind
		wantErr bool
	}{
		{"approval", "approval", event.Approval, false},
		{"cancel", "cancel", event.Cancel, false},
		{"empty", "", 0, true},
		{"capitalised", "Approval", 0, true},
		{"upper case", "CANCEL", 0, true},
		{"plural", "cancels", 0, true},
		{"long form", "cancellation", 0, true},
		{"leading space", " approval", 0, true},
		{"trailing space", "cancel ", 0, true},
		{"String of the zero kind", "kind(0)", 0, true},
		{"number", "1", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := event.ParseKind(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseKind(%q) = %v, nil; want an error", tt.in, got)
				}
				// The message quotes the offending input so a config error
				// is easy to find.
				if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Errorf("ParseKind(%q) error %q does not quote the input", tt.in, err)
				}
				if got != 0 {
					t.Errorf("ParseKind(%q) returned kind %v with an error, want 0", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKind(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseKind(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestKindRoundTrip(t *testing.T) {
	for _, k := range []event.Kind{event.Approval, event.Cancel} {
		t.Run(k.String(), func(t *testing.T) {
			got, err := event.ParseKind(k.String())
			if err != nil {
				t.Fatalf("ParseKind(%q): %v", k.String(), err)
			}
			if got != k {
				t.Errorf("ParseKind(%v.String()) = %v", k, got)
			}
		})
	}
}

func TestEventTime(t *testing.T) {
	tests := []struct {
		name   string
		timeUS int64
		want   time.Time
	}{
		{"unix epoch", 0, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)},
		// 946684800 s is 2000-01-01, PostgreSQL's epoch.
		{"postgres epoch", 946_684_800_000_000, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		// 2024-03-01T12:00:00Z = 1709294400 s (1704067200 for 2024-01-01,
		// plus 60 days of Jan and leap Feb, plus 12 h); +123456 µs.
		{"microseconds kept", 1_709_294_400_123_456, time.Date(2024, 3, 1, 12, 0, 0, 123_456_000, time.UTC)},
		{"before 1970", -1, time.Date(1969, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := event.Event{TimeUS: tt.timeUS}.Time()
			if !got.Equal(tt.want) {
				t.Errorf("Time() = %v, want %v", got, tt.want)
			}
			if got.Location() != time.UTC {
				t.Errorf("Time() location = %v, want UTC", got.Location())
			}
		})
	}
}

func TestReasonsComplete(t *testing.T) {
	want := map[event.Reason]bool{
		"null_merchant": true, "null_amount": true, "null_time": true, "negative_amount": true, "amount_out_of_range": true,
		"invalid_value": true, "future_time": true, "older_than_retention": true,
	}
	seen := map[event.Reason]bool{}
	for _, r := range event.Reasons {
		if !want[r] {
			t.Errorf("unexpected reason %q in Reasons", r)
		}
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
	if len(seen) != len(want) {
		t.Errorf("Reasons has %d distinct reasons, want %d", len(seen), len(want))
	}
}
