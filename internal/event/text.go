package event

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Caps on what a dead letter carries of a row: enough to find and repair
// it, never so much that one row bloats the sink.
const (
	MaxDetailBytes = 2048
	MaxValueBytes  = 1024
)

// Printable renders s as valid UTF-8 text that PostgreSQL's text and jsonb
// accept whatever the bytes were: control characters (NUL among them,
// which text refuses) and bytes that are not UTF-8 are written as \xNN,
// and anything past max bytes is cut with a note of the full length.
func Printable(s string, max int) string {
	control := func(r rune) bool { return unicode.IsControl(r) && r != '\t' && r != '\n' }
	if len(s) <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, control) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if b.Len() >= max {
			fmt.Fprintf(&b, "…(%d bytes in all)", len(s))
			return b.String()
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || control(r) {
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// describeValue is a column value for a detail: text as printable text,
// binary as hex, both capped.
func describeValue(v Value) string {
	if v.Format == 'b' {
		data := v.Data
		more := ""
		if len(data) > MaxValueBytes/2 {
			data, more = data[:MaxValueBytes/2], fmt.Sprintf("…(%d bytes in all)", len(v.Data))
		}
		return `\x` + hex.EncodeToString(data) + more
	}
	return strconv.Quote(Printable(string(v.Data), MaxValueBytes))
}

// RowBytes is a dead letter's row as JSON that PostgreSQL's jsonb accepts:
// strings printable and capped, times in UTC RFC 3339 (years past 9999
// included, which encoding/json refuses), non-finite floats as strings.
// Should a value still not encode, the row is kept in reduced form, each
// value as printable text.
func RowBytes(row map[string]any) []byte {
	clean := make(map[string]any, len(row))
	for k, v := range row {
		clean[Printable(k, MaxValueBytes)] = jsonSafe(v, 0)
	}
	b, err := json.Marshal(clean)
	if err == nil {
		return b
	}
	reduced := map[string]any{"_reduced": Printable("the row did not encode as JSON: "+err.Error(), MaxDetailBytes)}
	for k, v := range row {
		reduced[Printable(k, MaxValueBytes)] = Printable(fmt.Sprint(v), MaxValueBytes)
	}
	b, err = json.Marshal(reduced)
	if err != nil {
		return []byte(`{"_reduced": "the row did not encode as JSON"}`)
	}
	return b
}

// jsonSafe makes one decoded value encodable as jsonb; depth bounds
// nested arrays and maps.
func jsonSafe(v any, depth int) any {
	if depth > 8 {
		return Printable(fmt.Sprint(v), MaxValueBytes)
	}
	switch x := v.(type) {
	case nil, bool, int, int8, int16, int32, int64, uint8, uint16, uint32, uint64, json.Number:
		return x
	case string:
		return Printable(x, MaxValueBytes)
	case []byte:
		return describeValue(Value{Format: 'b', Data: x})
	case float32:
		return jsonSafe(float64(x), depth)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e, depth+1)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[Printable(k, MaxValueBytes)] = jsonSafe(e, depth+1)
		}
		return out
	case fmt.Stringer:
		return Printable(x.String(), MaxValueBytes)
	}
	// Other decoded types (numerics, intervals, network addresses, …) go
	// through their own JSON encoding, checked here so that one odd value
	// cannot fail the whole row.
	b, err := json.Marshal(v)
	if err != nil || len(b) > MaxValueBytes || hasNULEscape(b) {
		return Printable(fmt.Sprint(v), MaxValueBytes)
	}
	return json.RawMessage(b)
}

// hasNULEscape reports whether JSON text holds the escape \u0000, which
// jsonb refuses (an escaped backslash followed by "u0000" is fine).
func hasNULEscape(b []byte) bool {
	for i := 0; i+5 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if string(b[i+1:i+6]) == "u0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}
