package kafka_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/kafka"
)

func TestWatermarkRoundTrip(t *testing.T) {
	for _, w := range []kafka.Watermark{
		{CommitUS: 1_772_420_645_623_789, LSN: 24023128},
		{},
		{CommitUS: -1, LSN: 1<<64 - 1},
	} {
		value, headers := kafka.EncodeWatermark(w)
		if !kafka.IsWatermark(headers) {
			t.Errorf("IsWatermark(%v) = false for %+v", headers, w)
		}
		got, err := kafka.DecodeWatermark(value)
		if err != nil || got != w {
			t.Errorf("DecodeWatermark(%s) = %+v, %v; want %+v", value, got, err, w)
		}
	}
	value, headers := kafka.EncodeWatermark(kafka.Watermark{CommitUS: 1_772_420_645_623_789, LSN: 24023128})
	if want := `{"commit_us":1772420645623789,"lsn":24023128}`; string(value) != want {
		t.Errorf("value = %s, want %s", value, want)
	}
	if len(headers) != 1 || headers[0].Key != "riskwatch-type" || string(headers[0].Value) != "watermark" {
		t.Errorf("headers = %v, want riskwatch-type: watermark", headers)
	}
}

func TestIsWatermark(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
		want    bool
	}{
		{"no headers", nil, false},
		{"other header", []kgo.RecordHeader{{Key: "__debezium.oldkey", Value: []byte("{}")}}, false},
		{"other type", []kgo.RecordHeader{{Key: kafka.HeaderType, Value: []byte("change")}}, false},
		{"among others", []kgo.RecordHeader{{Key: "a", Value: nil}, {Key: kafka.HeaderType, Value: []byte("watermark")}}, true},
		{"key is case sensitive", []kgo.RecordHeader{{Key: "Riskwatch-Type", Value: []byte("watermark")}}, false},
	} {
		if got := kafka.IsWatermark(tc.headers); got != tc.want {
			t.Errorf("%s: IsWatermark = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecodeWatermarkErrors(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{``, "decoding watermark"},
		{`{`, "decoding watermark"},
		{`{"lsn":1}`, "commit_us or lsn missing"},
		{`{"commit_us":1}`, "commit_us or lsn missing"},
		{`{"commit_us":1.5,"lsn":1}`, "commit_us"},
		{`{"commit_us":1,"lsn":-1}`, "lsn"},
		{`{"commit_us":1,"lsn":1} {}`, "data after"},
	} {
		_, err := kafka.DecodeWatermark([]byte(tc.value))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeWatermark(%s) error = %v, want one containing %q", tc.value, err, tc.want)
		}
	}
}
