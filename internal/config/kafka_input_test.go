package config

import (
	"slices"
	"strings"
	"testing"
)

// TestKafkaInputs: workers read capture's topic, Debezium's topics or
// Maxwell's; the last two are listed in kafka.topics.
func TestKafkaInputs(t *testing.T) {
	for _, tc := range []struct {
		input  string
		topics []string
		err    string
		want   []string
	}{
		{input: "capture", want: []string{"riskwatch.changes"}},
		{input: "debezium", topics: []string{"srv.shop.payments", "srv.shop.payment_cancels"}, want: []string{"srv.shop.payments", "srv.shop.payment_cancels"}},
		{input: "maxwell", topics: []string{"maxwell"}, want: []string{"maxwell"}},
		{input: "debezium", err: "kafka.topics: required with input debezium"},
		{input: "maxwell", err: "kafka.topics: required with input maxwell"},
		{input: "canal", topics: []string{"t"}, err: `kafka.input: must be one of capture|debezium|maxwell, got "canal"`},
	} {
		c := Default()
		c.Kafka.Brokers, c.Kafka.Input, c.Kafka.Topics = []string{"k1:9092"}, tc.input, tc.topics
		err := c.ValidateKafka()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("input %s, topics %v: %v, want an error containing %q", tc.input, tc.topics, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("input %s, topics %v: %v", tc.input, tc.topics, err)
		}
		if got := c.KafkaTopics(); !slices.Equal(got, tc.want) {
			t.Errorf("input %s: KafkaTopics() = %v, want %v", tc.input, got, tc.want)
		}
	}
}
