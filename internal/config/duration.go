package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that in YAML accepts Go syntax ("1s", "200ms",
// "1h30m") plus a day unit "d" ("8d", "1d12h"). Retention is naturally
// expressed in days, and "192h" is easy to misread, hence the extra unit.
// It marshals back (String()) in the same syntax, e.g. 8d -> "8d",
// 36h -> "1d12h".
type Duration time.Duration

const day = 24 * time.Hour

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses Go duration syntax extended with a "d" (24h) unit.
// A day is always 24h: the config describes elapsed time, not calendar days,
// so DST transitions in the business timezone do not change it.
func ParseDuration(s string) (Duration, error) {
	v, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	}
	return v, nil
}

func parseDuration(s string) (Duration, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	rest := s
	neg := false
	if rest[0] == '-' || rest[0] == '+' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	// Go accepts a bare "0"; keep that so "grace: 0" works.
	if rest == "0" {
		return 0, nil
	}
	if rest == "" {
		return 0, errors.New("missing number")
	}
	var total uint64
	for rest != "" {
		i := 0
		digits := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			if rest[i] != '.' {
				digits++
			}
			i++
		}
		if digits == 0 {
			return 0, fmt.Errorf("expected a number at %q", rest)
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]

		var part time.Duration
		var err error
		switch unit {
		case "":
			return 0, fmt.Errorf("missing unit after %q (use ns, us, ms, s, m, h or d)", num)
		case "d":
			// Parse as hours so fractions ("1.5d") get Go's exact decimal
			// handling, then scale.
			part, err = time.ParseDuration(num + "h")
			if err == nil && part > math.MaxInt64/24 {
				err = errors.New("overflow")
			}
			part *= 24
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
			part, err = time.ParseDuration(num + unit)
		default:
			return 0, fmt.Errorf("unknown unit %q (use ns, us, ms, s, m, h or d)", unit)
		}
		if err != nil {
			// time's errors repeat the segment and add little; say what failed.
			return 0, fmt.Errorf("%s%s is out of range or malformed", num, unit)
		}
		total += uint64(part)
		if total > math.MaxInt64 {
			return 0, errors.New("out of range")
		}
	}
	if neg {
		return Duration(-int64(total)), nil
	}
	return Duration(total), nil
}

// String formats d so that ParseDuration reads it back unchanged, using the
// day unit and leaving out zero components ("1d12h", not "36h0m0s"), so that
// error messages echo values the way users write them.
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	sign := ""
	u := uint64(d)
	if d < 0 {
		sign = "-"
		u = -u // two's complement; also correct for math.MinInt64
	}
	if u < uint64(time.Second) {
		return sign + time.Duration(u).String()
	}
	var b strings.Builder
	b.WriteString(sign)
	for _, c := range []struct {
		size uint64
		unit string
	}{{uint64(day), "d"}, {uint64(time.Hour), "h"}, {uint64(time.Minute), "m"}} {
		if n := u / c.size; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, c.unit)
			u %= c.size
		}
	}
	if u > 0 {
		// Below a minute time.Duration prints "30s", "1.5s" or "500ms".
		b.WriteString(time.Duration(u).String())
	}
	return b.String()
}

// MarshalYAML writes the duration in the syntax ParseDuration accepts.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reports bad values as *yaml.TypeError so the decoder carries
// on and reports every bad field, each with its line, in one error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: expected a duration such as \"1s\" or \"8d\"", n.Line),
		}}
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

// MarshalText lets JSON encoders (e.g. a config dump endpoint) show the same
// syntax as the YAML file.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
