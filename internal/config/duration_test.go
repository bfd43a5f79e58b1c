package config

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"8d", 8 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"90s", 90 * time.Second},
		{"200ms", 200 * time.Millisecond},
		{"1h30m", 90 * time.Minute},
		{"1.5d", 36 * time.Hour},
		{"0", 0},
		{"0s", 0},
		{"0d", 0},
		{"-1s", -time.Second},
		{"+2m", 2 * time.Minute},
		{"1d1s", 24*time.Hour + time.Second},
		{"1h1d", 25 * time.Hour}, // Go syntax does not fix the unit order either
		{"1500us", 1500 * time.Microsecond},
		{"3µs", 3 * time.Microsecond},
		{"7ns", 7},
		{"106751d", 106751 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tt.in, err)
			}
			if got.D() != tt.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got.D(), tt.want)
			}
		})
	}
}

func TestParseDurationErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"8x", `unknown unit "x"`},
		{"", "empty"},
		{"5", "missing unit"},
		{"1d5", "missing unit"},
		{"d", "expected a number"},
		{"-", "missing number"},
		{"1..5s", "malformed"},
		{"1 d", `unknown unit " d"`},
		{"1D", `unknown unit "D"`},
		{"106752d", "out of range"},
		{"9223372036s1s", "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseDuration(tt.in)
			if err == nil {
				t.Fatalf("ParseDuration(%q) succeeded, want error", tt.in)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("ParseDuration(%q) error %q, want it to quote the input and contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{8 * 24 * time.Hour, "8d"},
		{36 * time.Hour, "1d12h"},
		{90 * time.Second, "1m30s"},
		{30 * time.Minute, "30m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{200 * time.Millisecond, "200ms"},
		{1500 * time.Millisecond, "1.5s"},
		{time.Hour + time.Second, "1h1s"},
		{24*time.Hour + 500*time.Millisecond, "1d500ms"},
		{-36 * time.Hour, "-1d12h"},
		{-time.Millisecond, "-1ms"},
		{3 * time.Microsecond, "3µs"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Duration(tt.in).String(); got != tt.want {
				t.Errorf("Duration(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
			}
		})
	}
}

func TestDurationRoundTrip(t *testing.T) {
	values := []time.Duration{
		0, 1, time.Microsecond, 999 * time.Millisecond, time.Second, 61 * time.Second,
		8 * 24 * time.Hour, 36 * time.Hour, 25*time.Hour + 61*time.Second + 5*time.Millisecond,
		-90 * time.Minute, math.MaxInt64, math.MinInt64 + 1,
	}
	for _, v := range values {
		s := Duration(v).String()
		got, err := ParseDuration(s)
		if err != nil {
			t.Errorf("ParseDuration(%q) (from %d): %v", s, int64(v), err)
			continue
		}
		if got.D() != v {
			t.Errorf("ParseDuration(Duration(%d).String() = %q) = %d", int64(v), s, int64(got))
		}
	}
}

func TestDurationYAMLAndJSON(t *testing.T) {
	type doc struct {
		D Duration `yaml:"d" json:"d"`
	}
	out, err := yaml.Marshal(doc{D: Duration(36 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "d: 1d12h\n" {
		t.Errorf("yaml.Marshal = %q, want %q", out, "d: 1d12h\n")
	}
	var back doc
	if err := yaml.Unmarshal(out, &back); err != nil || back.D.D() != 36*time.Hour {
		t.Errorf("yaml.Unmarshal(%q) = %v, %v", out, back.D, err)
	}

	js, err := json.Marshal(doc{D: Duration(8 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"d":"8d"}` {
		t.Errorf("json.Marshal = %s", js)
	}
	var jback doc
	if err := json.Unmarshal(js, &jback); err != nil || jback.D.D() != 8*24*time.Hour {
		t.Errorf("json.Unmarshal(%s) = %v, %v", js, jback.D, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"8x"}`), &jback); err == nil {
		t.Error("json.Unmarshal of 8x succeeded")
	}
}

func TestDurationYAMLErrorsCarryLines(t *testing.T) {
	var c struct {
		A Duration `yaml:"a"`
		B Duration `yaml:"b"`
		C Duration `yaml:"c"`
	}
	err := yaml.Unmarshal([]byte("a: 8x\nb: 1s\nc: [1s]\n"), &c)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`line 1: invalid duration "8x"`, "line 3: expected a duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
