package httptemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// funcs are the functions templates get on top of text/template's own
// (printf, urlquery, index, eq, …): what real chat and SMS APIs need.
func funcs(loc *time.Location) template.FuncMap {
	return template.FuncMap{
		// json encodes any value as JSON: a string becomes a quoted,
		// escaped JSON string ({"text": {{json .Summary}}}), Korean stays
		// as it is, zero times and nil become null.
		"json": jsonText,
		// truncate cuts a string to at most n characters (runes), marking
		// a cut with "…": {{truncate 45 .Headline}} or {{.Headline | truncate 45}}.
		"truncate": truncate,
		// krw writes an amount the way the dashboard speaks Korean:
		// 1.2억원, 3,400만원, 9,999원 (integer arithmetic, rounded half up).
		"krw": krw,
		// comma writes a whole number with thousands separators: 12,300,000.
		"comma": comma,
		// pct writes a fraction as a percentage with one decimal: 0.125 -> 12.5%.
		"pct": pct,
		// local puts a time in the business time zone:
		// {{(local .Minute).Format "01-02 15:04"}}.
		"local": func(t time.Time) time.Time { return t.In(loc) },
	}
}

func jsonText(v any) (string, error) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			v = notify.FormatValue(x)
		}
	case map[string]any:
		v = notify.JSONValues(x)
	case time.Time:
		if x.IsZero() {
			v = nil
		} else {
			v = notify.FormatTime(x)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func truncate(n int, s string) (string, error) {
	if n < 1 {
		return "", fmt.Errorf("truncate: length must be at least 1, got %d", n)
	}
	return notify.Truncate(s, n), nil
}

// toInt reads a whole amount as the engine holds it (int64) or as it comes
// back from the outbox's JSON (float64, exact below 2^53).
func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) >= 1<<63 {
			return 0, false
		}
		return int64(math.Round(x)), true
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true
		}
		f, err := x.Float64()
		if err != nil {
			return 0, false
		}
		return toInt(f)
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// errNotNumber is what the number functions say about anything else; nil
// (a value the rule did not report) prints as "-" instead, so that one
// missing value does not turn a page into a rejected notification.
var errNotNumber = errors.New("not a number")

func number(name string, v any) (int64, bool, error) {
	if v == nil {
		return 0, false, nil
	}
	n, ok := toInt(v)
	if !ok {
		return 0, false, fmt.Errorf("%s: %w: %T %v", name, errNotNumber, v, v)
	}
	return n, true, nil
}

func krw(v any) (string, error) {
	n, ok, err := number("krw", v)
	if !ok {
		return "-", err
	}
	return formatKRW(n), nil
}

func comma(v any) (string, error) {
	n, ok, err := number("comma", v)
	if !ok {
		return "-", err
	}
	sign, u := split(n)
	return sign + group(u), nil
}

func pct(v any) (string, error) {
	if v == nil {
		return "-", nil
	}
	f, ok := toFloat(v)
	if !ok {
		return "", fmt.Errorf("pct: %w: %T %v", errNotNumber, v, v)
	}
	return strconv.FormatFloat(f*100, 'f', 1, 64) + "%", nil
}

// Korean counts large numbers in units of 10^4: 만 (10^4), 억 (10^8),
// 조 (10^12).
const (
	man = 10_000
	eok = 100_000_000
	jo  = 1_000_000_000_000
)

// formatKRW writes n compactly in Korean units: one decimal of 조 or 억
// ("1.2조원", "12.3억원", "3억원"), whole 만 below 1억 ("3,400만원"), the
// exact amount below 1만 ("9,999원"). Each step rounds half up, and a value
// that rounds up to the next unit is written in it (99,995,000 is 1억원,
// not 10,000만원). Integer arithmetic only: no amount is ever a float.
func formatKRW(n int64) string {
	sign, u := split(n)
	var s string
	switch {
	case tenths(u, eok) >= 10*(jo/eok):
		s = decimal(tenths(u, jo)) + "조"
	case roundDiv(u, man) >= eok/man:
		s = decimal(tenths(u, eok)) + "억"
	case u >= man:
		s = group(roundDiv(u, man)) + "만"
	default:
		s = group(u)
	}
	return sign + s + "원"
}

func split(n int64) (string, uint64) {
	if n < 0 {
		return "-", uint64(-(n + 1)) + 1 // -MinInt64 does not fit an int64
	}
	return "", uint64(n)
}

// roundDiv is u/d rounded half up, without overflowing near 2^64.
func roundDiv(u, d uint64) uint64 {
	q, r := u/d, u%d
	if r >= d-r {
		q++
	}
	return q
}

// tenths is u/d in tenths, rounded half up.
func tenths(u, d uint64) uint64 {
	return u/d*10 + roundDiv(u%d*10, d)
}

// decimal writes a count of tenths: 123 -> "12.3", 30 -> "3".
func decimal(t uint64) string {
	if t%10 == 0 {
		return group(t / 10)
	}
	return group(t/10) + "." + strconv.FormatUint(t%10, 10)
}

// group writes u with thousands separators.
func group(u uint64) string {
	s := strconv.FormatUint(u, 10)
	var b strings.Builder
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
