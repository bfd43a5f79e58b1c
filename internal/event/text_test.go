package event

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestPrintable(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "paid", 100, "paid"},
		{"korean", "가맹점 튼튼PC", 100, "가맹점 튼튼PC"},
		{"tab and newline kept", "a\tb\nc", 100, "a\tb\nc"},
		{"NUL", "a\x00b", 100, `a\x00b`},
		{"other control", "\x01\x1b[31m", 100, `\x01\x1b[31m`},
		{"invalid UTF-8", "ab\xff\xfe", 100, `ab\xff\xfe`},
		{"truncated UTF-8 sequence", "\xea\xb0", 100, `\xea\xb0`},
		{"cut", strings.Repeat("x", 10), 4, "xxxx…(10 bytes in all)"},
		{"cut after escapes", "\x00\x00\x00", 4, `\x00…(3 bytes in all)`},
		{"empty", "", 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Printable(tt.in, tt.max); got != tt.want {
				t.Errorf("Printable(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func TestDescribeValue(t *testing.T) {
	if got := describeValue(Value{Format: 'b', Data: []byte{0, 1, 0xff}}); got != `\x0001ff` {
		t.Errorf("binary = %q", got)
	}
	if got := describeValue(Value{Format: 't', Data: []byte("12\x003")}); got != `"12\\x003"` {
		t.Errorf("text = %q", got)
	}
	long := describeValue(Value{Format: 'b', Data: make([]byte, 5000)})
	if len(long) > MaxValueBytes+40 || !strings.HasSuffix(long, "…(5000 bytes in all)") {
		t.Errorf("long binary: %d bytes, ends %q", len(long), long[len(long)-30:])
	}
}

// checkJSONB asserts what PostgreSQL's jsonb needs: valid JSON, valid
// UTF-8, no \u0000 escape.
func checkJSONB(t *testing.T, b []byte) {
	t.Helper()
	if !json.Valid(b) || !utf8.Valid(b) || hasNULEscape(b) {
		t.Fatalf("not acceptable to jsonb: %q", b)
	}
}

func TestHasNULEscape(t *testing.T) {
	for in, want := range map[string]bool{`"\u0000"`: true, `"\\u0000"`: false, `"a\\\u0000"`: true, `"u0000"`: false, `{}`: false} {
		if got := hasNULEscape([]byte(in)); got != want {
			t.Errorf("hasNULEscape(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestRowBytes(t *testing.T) {
	var nan pgtype.Numeric
	if err := nan.Scan("NaN"); err != nil {
		t.Fatal(err)
	}
	row := map[string]any{
		"nul":       "a\x00b",
		"invalid":   "\xff\xfe",
		"far":       time.Date(294276, 1, 1, 0, 0, 0, 0, time.UTC),
		"local":     time.Date(2026, 12, 6, 9, 0, 0, 0, time.FixedZone("KST", 9*3600)),
		"nan":       math.NaN(),
		"inf":       math.Inf(-1),
		"numeric":   nan,
		"bytes":     []byte{0, 1},
		"nested":    map[string]any{"k\x00": []any{"x\x00", math.Inf(1)}},
		"long":      strings.Repeat("y", 5000),
		"n":         int64(42),
		"undecoded": "(undecodable: int8: invalid length)",
	}
	b := RowBytes(row)
	checkJSONB(t, b)
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"nul": `a\x00b`, "invalid": `\xff\xfe`, "far": "294276-01-01T00:00:00Z", "local": "2026-12-06T00:00:00Z",
		"nan": "NaN", "inf": "-Inf", "bytes": `\x0001`, "n": 42.0,
	} {
		if got[k] != want {
			t.Errorf("%s = %#v, want %#v", k, got[k], want)
		}
	}
	if s, _ := got["long"].(string); len(s) > MaxValueBytes+40 {
		t.Errorf("long value kept %d bytes", len(s))
	}
}

func FuzzRowBytes(f *testing.F) {
	for _, s := range []string{"", "paid", "\x00", "\xff", "가", "\\u0000", `"`, strings.Repeat("\x00", 3000)} {
		f.Add(s, 1.5)
	}
	f.Fuzz(func(t *testing.T, s string, x float64) {
		b := RowBytes(map[string]any{s: s, "f": x, "nested": []any{s, map[string]any{s: x}}})
		checkJSONB(t, b)
		if d := Printable(s, MaxDetailBytes); !utf8.ValidString(d) || strings.ContainsRune(d, 0) {
			t.Fatalf("Printable(%q) = %q", s, d)
		}
	})
}
