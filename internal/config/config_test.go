package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	testSourceDSN = "postgres://rw:srcpw@src.example:5432/shop"
	testSinkDSN   = "host=sink.example user=agg password='sink pw' dbname=risk"
)

// env returns a getenv backed by a map, so tests never see the real
// environment.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func withSource() func(string) string { return env(EnvSourceDSN, testSourceDSN) }

// comparable strips Location, which holds a per-load cache, after checking
// that it names the same zone.
func comparable(t *testing.T, c *Config) Config {
	t.Helper()
	if c.Location == nil {
		t.Fatal("Location is nil")
	}
	if c.Location.String() != c.BusinessTimezone {
		t.Fatalf("Location %q does not match business_timezone %q", c.Location, c.BusinessTimezone)
	}
	out := *c
	out.Location = nil
	return out
}

func mustParse(t *testing.T, yml string, getenv func(string) string) *Config {
	t.Helper()
	c, err := Parse([]byte(yml), getenv)
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", yml, err)
	}
	return c
}

func TestDefault(t *testing.T) {
	c := Default()
	tests := []struct {
		field string
		got   any
		want  any
	}{
		{"source.dsn", c.Source.DSN, ""},
		{"source.slot", c.Source.Slot, "riskwatch"},
		{"source.publication", c.Source.Publication, "riskwatch"},
		{"source.heartbeat_interval", c.Source.HeartbeatInterval.D(), 200 * time.Millisecond},
		{"source.status_interval", c.Source.StatusInterval.D(), time.Second},
		{"source.reconnect_min", c.Source.ReconnectMin.D(), 500 * time.Millisecond},
		{"source.reconnect_max", c.Source.ReconnectMax.D(), 30 * time.Second},
		{"source.delivery", c.Source.Delivery, "stream"},
		{"sink.dsn", c.Sink.DSN, ""},
		{"sink.schema", c.Sink.Schema, "riskwatch"},
		{"business_timezone", c.BusinessTimezone, "Asia/Seoul"},
		{"Location", c.Location.String(), "Asia/Seoul"},
		{"retention", c.Retention.D(), 8 * 24 * time.Hour},
		{"grace", c.Grace.D(), time.Second},
		{"max_future", c.MaxFuture.D(), 5 * time.Minute},
		{"max_amount", c.MaxAmount, int64(1_000_000_000_000)},
		{"http.listen", c.HTTP.Listen, "127.0.0.1:8080"},
		{"http.max_streams", c.HTTP.MaxStreams, 100},
		{"standby.lease", c.Standby.Lease.D(), 10 * time.Second},
		{"standby.renew", c.Standby.Renew.D(), 2 * time.Second},
		{"standby.id", c.Standby.ID, ""},
		{"mapping", c.Mapping, DefaultMapping()},
		{"pipeline.flush_interval", c.Pipeline.FlushInterval.D(), 100 * time.Millisecond},
		{"pipeline.max_batch_events", c.Pipeline.MaxBatchEvents, 50000},
		{"pipeline.queue_size", c.Pipeline.QueueSize, 256},
		{"pipeline.stuck_after", c.Pipeline.StuckAfter, 3},
		{"pipeline.stuck_notify_after", c.Pipeline.StuckNotifyAfter.D(), time.Minute},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.field, tt.got, tt.want)
		}
	}
}

func TestDefaultMapping(t *testing.T) {
	want := []TableMapping{
		{Table: "public.payments", Kind: "approval", Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Table: "public.payment_cancels", Kind: "cancel", Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}
	if got := DefaultMapping(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultMapping() = %+v, want %+v", got, want)
	}
	// Callers may modify what they get; the next call must not see it.
	DefaultMapping()[0].Table = "changed"
	if DefaultMapping()[0].Table != "public.payments" {
		t.Error("DefaultMapping shares its slice between calls")
	}
}

func TestDefaultIsValidWithDSN(t *testing.T) {
	c := Default()
	c.Source.DSN = testSourceDSN
	c.Sink.DSN = testSourceDSN
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestParseDefaultsOnly(t *testing.T) {
	want := *Default()
	want.Location = nil
	want.Source.DSN = testSourceDSN
	want.Sink.DSN = testSourceDSN

	inputs := map[string]string{
		"empty":            "",
		"comments only":    "# nothing here\n\n# still nothing\n",
		"document marker":  "---\n",
		"null document":    "~\n",
		"empty sections":   "source:\nsink:\nhttp:\npipeline:\nlog:\nmapping:\n",
		"children omitted": "source:\n  # dsn: postgres://...\n  # slot: riskwatch\nlog:\n  # level: debug\n",
		"null scalars":     "retention:\ngrace: ~\nbusiness_timezone: null\n",
		"empty mapping":    "mapping: []\n",
	}
	for name, yml := range inputs {
		t.Run(name, func(t *testing.T) {
			got := comparable(t, mustParse(t, yml, withSource()))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(%q)\n got  %+v\n want %+v", yml, got, want)
			}
		})
	}

	t.Run("Load without file", func(t *testing.T) {
		c, err := Load("", withSource())
		if err != nil {
			t.Fatal(err)
		}
		if got := comparable(t, c); !reflect.DeepEqual(got, want) {
			t.Errorf("Load(\"\")\n got  %+v\n want %+v", got, want)
		}
	})
}

func TestAuthSecretsFromEnv(t *testing.T) {
	env := map[string]string{EnvSourceDSN: "postgres://u@h/db", EnvReadToken: "r-env", EnvReadPassword: "rp-env",
		EnvOperatorToken: "o-env", EnvOperatorPassword: "op-env"}
	cfg, err := Parse([]byte("http:\n  auth:\n    read: {username: viewer, password: file}\n    operator: {username: oncall, token: file}\n"),
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Auth{Read: Credentials{Token: "r-env", Username: "viewer", Password: "rp-env"},
		Operator: Credentials{Token: "o-env", Username: "oncall", Password: "op-env"},
		Proxy:    Proxy{Header: DefaultProxyHeader, EmailHeader: DefaultProxyEmailHeader}}
	if !reflect.DeepEqual(cfg.HTTP.Auth, want) {
		t.Errorf("auth %+v, want %+v", cfg.HTTP.Auth, want)
	}
}

func TestDSNSources(t *testing.T) {
	const (
		fileSource = "postgres://file@src/db"
		fileSink   = "postgres://file@sink/db"
		envSource  = "postgres://env@src/db"
		envSink    = "postgres://env@sink/db"
	)
	tests := []struct {
		name               string
		yml                string
		getenv             func(string) string
		wantSource, wantSk string
	}{
		{"file only", "source: {dsn: '" + fileSource + "'}\nsink: {dsn: '" + fileSink + "'}\n", nil, fileSource, fileSink},
		{"env overrides both", "source: {dsn: '" + fileSource + "'}\nsink: {dsn: '" + fileSink + "'}\n", env(EnvSourceDSN, envSource, EnvSinkDSN, envSink), envSource, envSink},
		{"env source only", "source: {dsn: '" + fileSource + "'}\nsink: {dsn: '" + fileSink + "'}\n", env(EnvSourceDSN, envSource), envSource, fileSink},
		{"env sink only", "source: {dsn: '" + fileSource + "'}\nsink: {dsn: '" + fileSink + "'}\n", env(EnvSinkDSN, envSink), fileSource, envSink},
		{"sink defaults to file source", "source: {dsn: '" + fileSource + "'}\n", nil, fileSource, fileSource},
		{"sink defaults to env source", "source: {dsn: '" + fileSource + "'}\n", env(EnvSourceDSN, envSource), envSource, envSource},
		{"env only", "", env(EnvSourceDSN, envSource, EnvSinkDSN, envSink), envSource, envSink},
		{"empty env is unset", "source: {dsn: '" + fileSource + "'}\n", env(EnvSourceDSN, "", EnvSinkDSN, ""), fileSource, fileSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yml, tt.getenv)
			if c.Source.DSN != tt.wantSource {
				t.Errorf("source.dsn = %q, want %q", c.Source.DSN, tt.wantSource)
			}
			if c.Sink.DSN != tt.wantSk {
				t.Errorf("sink.dsn = %q, want %q", c.Sink.DSN, tt.wantSk)
			}
		})
	}
}

func TestParseOverridesEveryField(t *testing.T) {
	yml := `
source:
  dsn: postgres://u@src/db
  slot: rw_slot
  publication: rw_pub
  heartbeat_interval: 1s
  status_interval: 2s
  reconnect_min: 1s
  reconnect_max: 1m
  delivery: minute
  time_zone: Asia/Seoul
  server_id: 4242
sink:
  dsn: postgres://u@sink/db
  schema: agg
business_timezone: UTC
retention: 1d12h
retention_alerts: 10d
retention_evaluations: 2d
retention_deliveries: 3d
retention_dead_letters: 4d
retention_audit: 0s
retention_hours: 20d
retention_days: 0s
grace: 0s
max_future: 90s
max_amount: 5000000
http:
  listen: ":9090"
  max_streams: 7
  auth:
    read: {token: rt, username: viewer, password: vpw}
    operator: {token: ot}
    proxy: {enabled: true, header: X-Auth-Request-User, email_header: "", trusted: [10.0.3.0/24, "::1"], operators: [kim, lee@example.com]}
merchant_names: {table: crm.shops, id: shop_id, name: title, refresh: 10m, full_refresh: 2h}
mapping:
  - table: ledger
    kind: approval
    merchant: mid
    amount: amt
    time: ts
    filter: {column: type, in: [approval, capture]}
pipeline:
  flush_interval: 250ms
  max_batch_events: 1000
  queue_size: 8
  stuck_after: 5
  stuck_notify_after: 30s
rules:
  cancel_rate_spike: {min_baseline_approvals: 50, baseline_floor: 0.001, min_cancels: 3, multiplier: 2.5, min_approvals: 10}
  volume_drop: {large_daily_amount: 500000000, min_expected_fraction: 0.1, drop_ratio: 0.8}
  exposure_window: 72h
  priority: {cancel_dispersion: 0.2, cancel_batch_weight: 0.5, cancel_today_weight: 0.25, volume_min_spread: 0.1, cancel_p1_evidence: 9, cancel_p2_evidence: 3, volume_p1_evidence: 4, volume_p2_evidence: 2, p1_min_exposure: 10000000}
alerts: {repeat_interval: 1h, resolve_after: 3}
notify:
  backoff_min: 2s
  backoff_max: 1m
  receivers:
    - {name: hook, type: webhook, url: "https://h.example/x", headers: {Authorization: "Bearer t"}, timeout: 3s, rules: [volume_drop]}
    - {name: pd, type: pagerduty, routing_key: rk, min_priority: P1}
    - {name: chat, type: template, method: PUT, url: "https://chat.example/{{.Rule}}", headers: {X-Token: "t-{{.AlertID}}"}, body: '{"text": {{json .Summary}}}'}
kafka:
  brokers: ["k1:9092", "k2:9092"]
  topic: changes
  partitions: 24
  replication_factor: 3
  group: g
  input: debezium
  topics: [srv.public.payments, srv.public.payment_cancels]
  watermark_interval: 500ms
  idle_after: 2s
  session_timeout: 4s
standby: {lease: 30s, renew: 5s, id: eu-1}
log:
  level: debug
  format: json
`
	got := comparable(t, mustParse(t, yml, nil))
	want := Config{
		Source: Source{
			DSN: "postgres://u@src/db", Slot: "rw_slot", Publication: "rw_pub",
			HeartbeatInterval: Duration(time.Second), StatusInterval: Duration(2 * time.Second),
			ReconnectMin: Duration(time.Second), ReconnectMax: Duration(time.Minute), Delivery: "minute",
			TimeZone: "Asia/Seoul", ServerID: 4242, TimeLocation: func() *time.Location { l, _ := time.LoadLocation("Asia/Seoul"); return l }(),
		},
		Sink:             Sink{DSN: "postgres://u@sink/db", Schema: "agg"},
		BusinessTimezone: "UTC",
		Retention:        Duration(36 * time.Hour),
		Grace:            0,
		MaxFuture:        Duration(90 * time.Second),
		MaxAmount:        5_000_000,
		HTTP: HTTP{Listen: ":9090", MaxStreams: 7, Auth: Auth{
			Read:     Credentials{Token: "rt", Username: "viewer", Password: "vpw"},
			Operator: Credentials{Token: "ot"},
			Proxy: Proxy{Enabled: true, Header: "X-Auth-Request-User", Trusted: []string{"10.0.3.0/24", "::1"},
				Operators: []string{"kim", "lee@example.com"}},
		}},
		MerchantNames: MerchantNames{Table: "crm.shops", ID: "shop_id", Name: "title", Refresh: Duration(10 * time.Minute), FullRefresh: Duration(2 * time.Hour)},
		Mapping: []TableMapping{{
			Table: "ledger", Kind: "approval", Merchant: "mid", Amount: "amt", Time: "ts",
			Filter: &Filter{Column: "type", In: []string{"approval", "capture"}},
		}},
		Pipeline: Pipeline{FlushInterval: Duration(250 * time.Millisecond), MaxBatchEvents: 1000, QueueSize: 8, StuckAfter: 5, StuckNotifyAfter: Duration(30 * time.Second)},
		Rules: Rules{
			CancelRateSpike: CancelRateSpike{MinBaselineApprovals: 50, BaselineFloor: 0.001, MinCancels: 3, Multiplier: 2.5, MinApprovals: 10},
			VolumeDrop:      VolumeDrop{LargeDailyAmount: 500_000_000, MinExpectedFraction: 0.1, DropRatio: 0.8},
			ExposureWindow:  Duration(72 * time.Hour),
			Priority: Priority{CancelDispersion: 0.2, CancelBatchWeight: 0.5, CancelTodayWeight: 0.25, VolumeMinSpread: 0.1, CancelP1Evidence: 9, CancelP2Evidence: 3,
				VolumeP1Evidence: 4, VolumeP2Evidence: 2, P1MinExposure: 10_000_000},
		},
		Alerts: Alerts{RepeatInterval: Duration(time.Hour), ResolveAfter: 3},
		Notify: Notify{BackoffMin: Duration(2 * time.Second), BackoffMax: Duration(time.Minute), Receivers: []Receiver{
			{Name: "hook", Type: "webhook", URL: "https://h.example/x", Headers: map[string]string{"Authorization": "Bearer t"}, Timeout: Duration(3 * time.Second), Rules: []string{"volume_drop"}},
			{Name: "pd", Type: "pagerduty", RoutingKey: "rk", MinPriority: "P1"},
			{Name: "chat", Type: "template", Method: "PUT", URL: "https://chat.example/{{.Rule}}", Headers: map[string]string{"X-Token": "t-{{.AlertID}}"},
				Body: `{"text": {{json .Summary}}}`},
		}},
		Kafka: Kafka{Brokers: []string{"k1:9092", "k2:9092"}, Topic: "changes", Partitions: 24, ReplicationFactor: 3, Group: "g", Input: "debezium",
			Topics: []string{"srv.public.payments", "srv.public.payment_cancels"}, WatermarkInterval: Duration(500 * time.Millisecond),
			IdleAfter: Duration(2 * time.Second), SessionTimeout: Duration(4 * time.Second)},
		Standby:              Standby{Lease: Duration(30 * time.Second), Renew: Duration(5 * time.Second), ID: "eu-1"},
		Log:                  Log{Level: "debug", Format: "json"},
		RetentionAlerts:      Duration(10 * day),
		RetentionEvaluations: Duration(2 * day),
		RetentionDeliveries:  Duration(3 * day),
		RetentionDeadLetters: Duration(4 * day),
		RetentionAudit:       0,
		RetentionHours:       Duration(20 * day),
		RetentionDays:        0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse\n got  %+v\n want %+v", got, want)
	}
}

func TestExplicitZeroKept(t *testing.T) {
	for _, yml := range []string{"grace: 0s\n", "grace: 0\n", "grace: 0d\n"} {
		c := mustParse(t, yml, withSource())
		if c.Grace != 0 {
			t.Errorf("Parse(%q): grace = %v, want 0s", yml, c.Grace)
		}
	}
	// Explicit zeros where zero is invalid must reach validation, not be
	// papered over by defaults.
	_, err := Parse([]byte("pipeline: {queue_size: 0}\n"), withSource())
	if err == nil || !strings.Contains(err.Error(), "pipeline.queue_size: must be greater than 0, got 0") {
		t.Errorf("queue_size: 0 gave %v", err)
	}
}

func TestPartialSectionKeepsOtherDefaults(t *testing.T) {
	c := mustParse(t, "source:\n  slot: other\npipeline:\n  queue_size: 4\n", withSource())
	if c.Source.Slot != "other" || c.Source.Publication != "riskwatch" || c.Source.ReconnectMax.D() != 30*time.Second {
		t.Errorf("source = %+v", c.Source)
	}
	if c.Pipeline.QueueSize != 4 || c.Pipeline.MaxBatchEvents != 50000 {
		t.Errorf("pipeline = %+v", c.Pipeline)
	}
}

func TestLedgerMappingValid(t *testing.T) {
	yml := `
mapping:
  - table: public.ledger
    kind: approval
    merchant: merchant_id
    amount: amount
    time: created_at
    filter:
      column: type
      in: [approval]
  - table: public.ledger
    kind: cancel
    merchant: merchant_id
    amount: amount
    time: created_at
    filter:
      column: type
      in: [cancel]
`
	c := mustParse(t, yml, withSource())
	if len(c.Mapping) != 2 || c.Mapping[1].Filter == nil || c.Mapping[1].Filter.In[0] != "cancel" {
		t.Fatalf("mapping = %+v", c.Mapping)
	}
}

func TestSchemaTable(t *testing.T) {
	tests := []struct{ table, schema, name string }{
		{"public.payments", "public", "payments"},
		{"payments", "public", "payments"},
		{"shop.orders", "shop", "orders"},
		{"s.a.b", "s", "a.b"},
	}
	for _, tt := range tests {
		s, n := TableMapping{Table: tt.table}.SchemaTable()
		if s != tt.schema || n != tt.name {
			t.Errorf("SchemaTable(%q) = %q, %q; want %q, %q", tt.table, s, n, tt.schema, tt.name)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yml string
		want      []string
	}{
		{"top level", "retention: 8d\nretension: 9d\n", []string{"line 2", "retension"}},
		{"nested", "source:\n  slot: a\n  slto: b\n", []string{"line 3", "slto"}},
		{"in mapping item", "mapping:\n  - table: t\n    kind: approval\n    merchant: m\n    amount: a\n    time: ts\n    colour: red\n", []string{"line 7", "colour"}},
		{"with null value", "sorce:\n", []string{"line 1", "sorce"}},
		{"yaml-ignored field", "Location: UTC\n", []string{"line 1", "Location"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yml), withSource())
			if err == nil {
				t.Fatal("Parse succeeded, want unknown key error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, yml string
		want      []string
	}{
		{"bad duration", "retention: 8x\n", []string{"line 1", `"8x"`, "unknown unit"}},
		{"bare number duration", "source:\n  heartbeat_interval: 5\n", []string{"line 2", "missing unit"}},
		{"duration as list", "grace: [1s]\n", []string{"line 1", "expected a duration"}},
		{"every bad field reported", "retention: 8x\ngrace: 9y\n", []string{"line 1", "line 2"}},
		{"bad int", "pipeline:\n  queue_size: lots\n", []string{"line 2", "lots"}},
		{"not a mapping", "- a\n- b\n", []string{"line 1"}},
		{"syntax", "source: [\n", []string{"yaml"}},
		{"two documents", "grace: 1s\n---\ngrace: 2s\n", []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yml), withSource())
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestTypeErrorsNameKeys: every type error names its key path, keeps
// yaml.v3's line and message, and is a line of its own, also where a flow
// mapping puts several keys on one line.
func TestTypeErrorsNameKeys(t *testing.T) {
	tests := []struct {
		name, yml string
		want      []string
	}{
		{"duration as list", "grace: [1]\n", []string{`grace: line 1: expected a duration such as "1s" or "8d"`}},
		{"int in a flow mapping", "rules: {cancel_rate_spike: {min_cancels: abc}}\n",
			[]string{"rules.cancel_rate_spike.min_cancels: line 1: cannot unmarshal !!str `abc` into int64"}},
		{"int in block mappings", "rules:\n  cancel_rate_spike:\n    min_cancels: abc\n",
			[]string{"rules.cancel_rate_spike.min_cancels: line 3: cannot unmarshal !!str `abc` into int64"}},
		{"several on one line", "rules: {cancel_rate_spike: {min_cancels: abc, min_approvals: abc}, volume_drop: {large_daily_amount: abc}}\n",
			[]string{
				"rules.cancel_rate_spike.min_cancels: line 1: cannot unmarshal !!str `abc` into int64",
				"rules.cancel_rate_spike.min_approvals: line 1: cannot unmarshal !!str `abc` into int64",
				"rules.volume_drop.large_daily_amount: line 1: cannot unmarshal !!str `abc` into int64",
			}},
		{"sequence items", "mapping:\n  - {table: t, kind: [a], merchant: m, amount: a, time: ts}\n  - {table: t, kind: {x: 1}, merchant: m, amount: a, time: ts}\n",
			[]string{"mapping[0].kind: line 2: cannot unmarshal !!seq into string", "mapping[1].kind: line 3: cannot unmarshal !!map into string"}},
		{"receiver timeout", "notify:\n  receivers:\n    - {name: a, type: log, timeout: [1]}\n",
			[]string{`notify.receivers[0].timeout: line 3: expected a duration such as "1s" or "8d"`}},
		{"bad duration", "source:\n  heartbeat_interval: 5\n",
			[]string{`source.heartbeat_interval: line 2: invalid duration "5": missing unit after "5" (use ns, us, ms, s, m, h or d)`}},
		{"map value", "notify: {receivers: [{name: a, type: webhook, url: 'http://x', headers: {a: [1]}}]}\n",
			[]string{"notify.receivers[0].headers.a: line 1: cannot unmarshal !!seq into string"}},
		{"list item", "kafka: {brokers: [k1, [1]]}\n", []string{"kafka.brokers[1]: line 1: cannot unmarshal !!seq into string"}},
		{"list as mapping", "mapping:\n  - table: t\n    filter: {column: c, in: {a: 1}}\n",
			[]string{"mapping[0].filter.in: line 3: cannot unmarshal !!map into []string"}},
		{"section as scalar", "rules: 5\n", []string{"rules: line 1: cannot unmarshal !!int `5` into config.Rules"}},
		{"unknown key beside a type error", "pipeline:\n  queue_size: lots\n  colour: red\n",
			[]string{"pipeline.queue_size: line 2: cannot unmarshal !!str `lots` into int", "pipeline.colour: line 3: field colour not found in type config.Pipeline"}},
		{"repeated key", "source: {slot: a, slot: b}\n", []string{`source.slot: line 1: mapping key "slot" already defined at line 1`}},
		{"through an alias", "rules:\n  cancel_rate_spike: &c {min_cancels: x}\n  volume_drop: {large_daily_amount: *c}\n",
			[]string{
				"rules.cancel_rate_spike.min_cancels: line 2: cannot unmarshal !!str `x` into int64",
				"rules.volume_drop.large_daily_amount: line 2: cannot unmarshal !!map into int64",
			}},
		{"merge key", "rules: {cancel_rate_spike: {<<: {min_cancels: x}}}\n",
			[]string{"rules.cancel_rate_spike.min_cancels: line 1: cannot unmarshal !!str `x` into int64"}},
		{"the document itself", "- a\n- b\n", []string{"line 1: cannot unmarshal !!seq into config.Config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yml), withSource())
			if err == nil {
				t.Fatal("Parse succeeded, want type errors")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	ledger := func(kind string, in ...string) TableMapping {
		return TableMapping{Table: "public.ledger", Kind: kind, Merchant: "m", Amount: "a", Time: "t",
			Filter: &Filter{Column: "type", In: in}}
	}
	plain := func(table string) TableMapping {
		return TableMapping{Table: table, Kind: "approval", Merchant: "m", Amount: "a", Time: "t"}
	}
	tests := []struct {
		name   string
		mutate func(c *Config)
		// want is the whole error line when exact, otherwise a prefix that
		// starts with the field path.
		want  string
		exact bool
	}{
		{"source dsn required", func(c *Config) { c.Source.DSN = ""; c.Sink.DSN = "" },
			"source.dsn: required (set it in the file or RISKWATCH_SOURCE_DSN)", true},
		{"source dsn unparsable", func(c *Config) { c.Source.DSN = "postgres://u@h:notaport/db" },
			"source.dsn: cannot parse connection string", false},
		{"source slot uppercase", func(c *Config) { c.Source.Slot = "Riskwatch" },
			`source.slot: must match ^[a-z0-9_]{1,63}$, got "Riskwatch"`, true},
		{"source slot empty", func(c *Config) { c.Source.Slot = "" }, "source.slot: must match", false},
		{"source slot too long", func(c *Config) { c.Source.Slot = strings.Repeat("a", 64) }, "source.slot: must match", false},
		{"source publication", func(c *Config) { c.Source.Publication = "rw-pub" }, `source.publication: must match ^[a-z0-9_]{1,63}$, got "rw-pub"`, true},
		{"basic auth needs both", func(c *Config) { c.HTTP.Auth.Read = Credentials{Username: "viewer"} },
			"http.auth.read: username and password go together (HTTP Basic); set both or neither", true},
		{"basic username colon", func(c *Config) {
			c.HTTP.Auth.Operator = Credentials{Username: "a:b", Password: "p"}
			c.HTTP.Auth.Read.Token = "t"
		},
			"http.auth.operator.username: must not contain ':'", false},
		{"operator without read", func(c *Config) { c.HTTP.Auth.Operator = Credentials{Token: "t"} },
			"http.auth.read: must be set when http.auth.operator is", false},
		{"proxy without trusted", func(c *Config) { c.HTTP.Auth.Proxy.Enabled = true },
			"http.auth.proxy.trusted: required when the proxy is enabled", false},
		{"proxy trusted not an address", func(c *Config) {
			c.HTTP.Auth.Proxy = Proxy{Enabled: true, Header: DefaultProxyHeader, Trusted: []string{"10.0.0.1", "proxy.internal"}}
		}, `http.auth.proxy.trusted[1]: want an IP address or CIDR such as 10.0.0.5 or 10.0.0.0/24, got "proxy.internal"`, true},
		{"proxy header empty", func(c *Config) {
			c.HTTP.Auth.Proxy = Proxy{Enabled: true, Header: "", Trusted: []string{"127.0.0.1"}}
		}, `http.auth.proxy.header: must be an HTTP header name such as "X-Forwarded-User", got ""`, true},
		{"proxy email header", func(c *Config) {
			c.HTTP.Auth.Proxy = Proxy{Enabled: true, Header: "X-User", EmailHeader: "X Email", Trusted: []string{"127.0.0.1"}}
		}, `http.auth.proxy.email_header: must be an HTTP header name`, false},
		{"proxy headers the same", func(c *Config) {
			c.HTTP.Auth.Proxy = Proxy{Enabled: true, Header: "X-User", EmailHeader: "x-user", Trusted: []string{"127.0.0.1"}}
		}, `http.auth.proxy.email_header: must differ from http.auth.proxy.header ("X-User")`, true},
		{"proxy empty operator", func(c *Config) {
			c.HTTP.Auth.Proxy = Proxy{Enabled: true, Header: "X-User", Trusted: []string{"127.0.0.1"}, Operators: []string{"kim", " "}}
		}, "http.auth.proxy.operators[1]: must not be empty", true},
		{"merchant names id", func(c *Config) { c.MerchantNames.ID = "" },
			"merchant_names.id: is required when merchant_names.table is set", true},
		{"merchant names refresh", func(c *Config) { c.MerchantNames.Refresh = 0 },
			"merchant_names.refresh: must be greater than 0s, got 0s", true},
		{"merchant names full refresh", func(c *Config) { c.MerchantNames.FullRefresh = 0 },
			"merchant_names.full_refresh: must be greater than 0s, got 0s", true},
		{"delivery", func(c *Config) { c.Source.Delivery = "batch" }, `source.delivery: must be one of stream|minute, got "batch"`, true},
		{"heartbeat zero", func(c *Config) { c.Source.HeartbeatInterval = 0 }, "source.heartbeat_interval: must be greater than 0s, got 0s", true},
		{"status negative", func(c *Config) { c.Source.StatusInterval = Duration(-time.Second) }, "source.status_interval: must be greater than 0s, got -1s", true},
		{"reconnect min zero", func(c *Config) { c.Source.ReconnectMin = 0 }, "source.reconnect_min: must be greater than 0s", false},
		{"reconnect max zero", func(c *Config) { c.Source.ReconnectMax = 0 }, "source.reconnect_max: must be greater than 0s", false},
		{"reconnect max below min", func(c *Config) {
			c.Source.ReconnectMin = Duration(time.Minute)
			c.Source.ReconnectMax = Duration(30 * time.Second)
		}, "source.reconnect_max: must be at least source.reconnect_min (1m), got 30s", true},
		{"standby renew zero", func(c *Config) { c.Standby.Renew = 0 }, "standby.renew: must be greater than 0s, got 0s", true},
		{"standby lease zero", func(c *Config) { c.Standby.Lease = 0 }, "standby.lease: must be greater than 0s, got 0s", true},
		{"standby lease below twice renew", func(c *Config) { c.Standby.Lease = Duration(3 * time.Second) },
			"standby.lease: must be at least twice standby.renew (2s), got 3s", true},
		{"standby id too long", func(c *Config) { c.Standby.ID = strings.Repeat("x", 201) }, "standby.id: must be at most 200 bytes, got 201", true},
		{"sink dsn unparsable", func(c *Config) { c.Sink.DSN = "host=h port=x" }, "sink.dsn: cannot parse connection string", false},
		{"sink dsn empty", func(c *Config) { c.Sink.DSN = "" }, "sink.dsn: required", false},
		{"baseline floor above 1", func(c *Config) { c.Rules.CancelRateSpike.BaselineFloor = 1.5 }, "rules.cancel_rate_spike.baseline_floor: must be in [0, 1], got 1.5", true},
		{"multiplier zero", func(c *Config) { c.Rules.CancelRateSpike.Multiplier = 0 }, "rules.cancel_rate_spike.multiplier: must be in (0, 1000], got 0", true},
		{"min cancels zero", func(c *Config) { c.Rules.CancelRateSpike.MinCancels = 0 }, "rules.cancel_rate_spike.min_cancels: must be at least 1, got 0", true},
		{"min approvals negative", func(c *Config) { c.Rules.CancelRateSpike.MinApprovals = -1 }, "rules.cancel_rate_spike.min_approvals: must be at least 0", false},
		{"min baseline approvals negative", func(c *Config) { c.Rules.CancelRateSpike.MinBaselineApprovals = -1 }, "rules.cancel_rate_spike.min_baseline_approvals", false},
		{"large amount zero", func(c *Config) { c.Rules.VolumeDrop.LargeDailyAmount = 0 }, "rules.volume_drop.large_daily_amount: must be greater than 0, got 0", true},
		{"drop ratio zero", func(c *Config) { c.Rules.VolumeDrop.DropRatio = 0 }, "rules.volume_drop.drop_ratio: must be in (0, 1], got 0", true},
		{"expected fraction", func(c *Config) { c.Rules.VolumeDrop.MinExpectedFraction = -0.1 }, "rules.volume_drop.min_expected_fraction", false},
		{"exposure window too long", func(c *Config) { c.Rules.ExposureWindow = Duration(8 * 24 * time.Hour) }, "rules.exposure_window: must be whole minutes from 1m to 168h", false},
		{"exposure window zero", func(c *Config) { c.Rules.ExposureWindow = 0 }, "rules.exposure_window: must be whole minutes from 1m to 168h", false},
		{"exposure window seconds", func(c *Config) { c.Rules.ExposureWindow = Duration(90 * time.Second) }, "rules.exposure_window: must be whole minutes", false},
		{"dispersion negative", func(c *Config) { c.Rules.Priority.CancelDispersion = -0.1 }, "rules.priority.cancel_dispersion", false},
		{"min spread above 1", func(c *Config) { c.Rules.Priority.VolumeMinSpread = 2 }, "rules.priority.volume_min_spread", false},
		{"p2 evidence negative", func(c *Config) { c.Rules.Priority.VolumeP2Evidence = -1 }, "rules.priority.volume_p2_evidence: must be in [0, 300], got -1", true},
		{"cancel p2 above p1", func(c *Config) { c.Rules.Priority.CancelP2Evidence = 8 }, "rules.priority.cancel_p2_evidence: must be at most cancel_p1_evidence (5), got 8", true},
		{"volume p2 above p1", func(c *Config) { c.Rules.Priority.VolumeP2Evidence = 5 }, "rules.priority.volume_p2_evidence: must be at most volume_p1_evidence (1.6), got 5", true},
		{"p1 exposure negative", func(c *Config) { c.Rules.Priority.P1MinExposure = -1 }, "rules.priority.p1_min_exposure: must be at least 0, got -1", true},
		{"receiver min priority", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "x", Type: "log", MinPriority: "critical"}} }, "notify.receivers[0].min_priority", false},
		{"resolve after zero", func(c *Config) { c.Alerts.ResolveAfter = 0 }, "alerts.resolve_after: must be at least 1, got 0", true},
		{"repeat zero", func(c *Config) { c.Alerts.RepeatInterval = 0 }, "alerts.repeat_interval: must be greater than 0s", false},
		{"external url", func(c *Config) { c.HTTP.ExternalURL = "dash" }, `http.external_url: must be an absolute http(s) URL, got "dash"`, true},
		{"max streams zero", func(c *Config) { c.HTTP.MaxStreams = 0 }, "http.max_streams: must be at least 1, got 0", true},
		{"max streams negative", func(c *Config) { c.HTTP.MaxStreams = -5 }, "http.max_streams: must be at least 1, got -5", true},
		{"receiver type", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "x", Type: "email", URL: "https://h/"}} }, "notify.receivers[0].type", false},
		{"receiver url", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "x", Type: "webhook", URL: "ftp://h/"}} }, `notify.receivers[0].url: must be an absolute http(s) URL, got "ftp://h/"`, true},
		{"receiver name dup", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "x", Type: "log"}, {Name: "x", Type: "log"}}
		}, `notify.receivers[1].name: "x" is used by another receiver`, true},
		{"pagerduty key", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "pd", Type: "pagerduty"}} }, "notify.receivers[0].routing_key: required for pagerduty", true},
		{"receiver rule", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "x", Type: "log", Rules: []string{"spike"}}} }, "notify.receivers[0].rules[0]", false},
		{"backoff", func(c *Config) { c.Notify.BackoffMax = Duration(time.Millisecond) }, "notify.backoff_max: must be at least notify.backoff_min", false},
		{"sink schema digit", func(c *Config) { c.Sink.Schema = "1risk" }, `sink.schema: must match ^[a-z_][a-z0-9_]{0,62}$, got "1risk"`, true},
		{"sink schema empty", func(c *Config) { c.Sink.Schema = "" }, "sink.schema: must match", false},
		{"timezone unknown", func(c *Config) { c.BusinessTimezone = "Mars/Olympus" }, `business_timezone: unknown time zone "Mars/Olympus"`, false},
		{"timezone empty", func(c *Config) { c.BusinessTimezone = "" }, "business_timezone: required", false},
		{"location nil", func(c *Config) { c.Location = nil }, "business_timezone: Location not loaded", false},
		{"location mismatch", func(c *Config) { c.BusinessTimezone = "UTC" }, `business_timezone: is "UTC" but Location is "Asia/Seoul"`, false},
		{"retention short", func(c *Config) { c.Retention = Duration(30 * time.Minute) }, "retention: must be at least 1h, got 30m", true},
		{"grace negative", func(c *Config) { c.Grace = Duration(-time.Second) }, "grace: must be at least 0s and less than 1m, got -1s", true},
		{"grace one minute", func(c *Config) { c.Grace = Duration(time.Minute) }, "grace: must be at least 0s and less than 1m, got 1m", true},
		{"max future zero", func(c *Config) { c.MaxFuture = 0 }, "max_future: must be greater than 0s, got 0s", true},
		{"max amount zero", func(c *Config) { c.MaxAmount = 0 }, "max_amount: must be from 1 to 1000000000000000, got 0", true},
		{"max amount huge", func(c *Config) { c.MaxAmount = 1e15 + 1 }, "max_amount: must be from 1 to 1000000000000000, got 1000000000000001", true},
		{"stuck after zero", func(c *Config) { c.Pipeline.StuckAfter = 0 }, "pipeline.stuck_after: must be at least 1, got 0", true},
		{"stuck notify negative", func(c *Config) { c.Pipeline.StuckNotifyAfter = -1 }, "pipeline.stuck_notify_after: must not be negative, got -1ns", true},
		{"listen no port", func(c *Config) { c.HTTP.Listen = "localhost" }, "http.listen: must be host:port", false},
		{"listen port range", func(c *Config) { c.HTTP.Listen = ":65536" }, `http.listen: port must be a number from 0 to 65535, got "65536"`, true},
		{"listen named port", func(c *Config) { c.HTTP.Listen = "127.0.0.1:http" }, `http.listen: port must be a number from 0 to 65535, got "http"`, true},
		{"listen empty port", func(c *Config) { c.HTTP.Listen = "127.0.0.1:" }, "http.listen: port must be a number", false},
		{"mapping empty", func(c *Config) { c.Mapping = nil }, "mapping: at least one table mapping is required", true},
		{"mapping table required", func(c *Config) { c.Mapping[0].Table = "" }, "mapping[0].table: required", true},
		{"mapping table NUL", func(c *Config) { c.Mapping[1].Table = "pay\x00ments" }, "mapping[1].table: must not contain a NUL byte", true},
		{"mapping table empty schema", func(c *Config) { c.Mapping[0].Table = ".payments" }, `mapping[0].table: must be "schema.table" or "table", got ".payments"`, true},
		{"mapping table empty name", func(c *Config) { c.Mapping[0].Table = "public." }, "mapping[0].table: must be", false},
		{"mapping kind required", func(c *Config) { c.Mapping[0].Kind = "" }, `mapping[0].kind: required ("approval" or "cancel")`, true},
		{"mapping kind unknown", func(c *Config) { c.Mapping[1].Kind = "refund" }, `mapping[1].kind: must be "approval" or "cancel", got "refund"`, true},
		{"mapping merchant required", func(c *Config) { c.Mapping[0].Merchant = "" }, "mapping[0].merchant: required", true},
		{"mapping amount required", func(c *Config) { c.Mapping[1].Amount = "" }, "mapping[1].amount: required", true},
		{"mapping time required", func(c *Config) { c.Mapping[0].Time = "" }, "mapping[0].time: required", true},
		{"mapping column NUL", func(c *Config) { c.Mapping[0].Amount = "a\x00" }, "mapping[0].amount: must not contain a NUL byte", true},
		{"filter column required", func(c *Config) { c.Mapping[0].Filter = &Filter{In: []string{"x"}} }, "mapping[0].filter.column: required", true},
		{"filter in empty", func(c *Config) { c.Mapping[0].Filter = &Filter{Column: "type"} }, "mapping[0].filter.in: must list at least one value", true},
		{"filter in NUL", func(c *Config) { c.Mapping[0].Filter = &Filter{Column: "type", In: []string{"ok", "x\x00"}} }, "mapping[0].filter.in[1]: must not contain a NUL byte", true},
		{"table mapped twice unfiltered", func(c *Config) { c.Mapping = append(c.Mapping, plain("public.payments")) },
			"mapping[2]: table public.payments is mapped more than once; each mapping of it needs a filter", true},
		{"table mapped twice, earlier unfiltered", func(c *Config) {
			m := ledger("cancel", "cancel")
			m.Table = "public.payments"
			c.Mapping = append(c.Mapping, m)
		}, "mapping[2]: table public.payments is mapped more than once; each mapping of it needs a filter", true},
		{"unqualified name is public", func(c *Config) { c.Mapping = append(c.Mapping, plain("payment_cancels")) },
			"mapping[2]: table public.payment_cancels is mapped more than once", false},
		{"filters overlap", func(c *Config) {
			c.Mapping = []TableMapping{ledger("approval", "approval", "capture"), ledger("cancel", "cancel", "capture")}
		}, `mapping[1].filter.in: value "capture" is also selected by mapping[0] on table public.ledger; such rows would be counted twice`, true},
		{"flush interval zero", func(c *Config) { c.Pipeline.FlushInterval = 0 }, "pipeline.flush_interval: must be greater than 0s, got 0s", true},
		{"max batch zero", func(c *Config) { c.Pipeline.MaxBatchEvents = 0 }, "pipeline.max_batch_events: must be greater than 0, got 0", true},
		{"queue size negative", func(c *Config) { c.Pipeline.QueueSize = -1 }, "pipeline.queue_size: must be greater than 0, got -1", true},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level: must be one of debug|info|warn|error, got "verbose"`, true},
		{"log level case", func(c *Config) { c.Log.Level = "INFO" }, "log.level: must be one of", false},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: must be one of text|json, got "xml"`, true},
		{"retention alerts short", func(c *Config) { c.RetentionAlerts = Duration(30 * time.Minute) }, "retention_alerts: must be 0 (keep for ever) or at least 1h, got 30m", true},
		{"retention alerts below repeat", func(c *Config) { c.RetentionAlerts = Duration(3 * time.Hour) },
			"retention_alerts: must be 0 or at least alerts.repeat_interval (4h): a re-fire within it continues the resolved alert, got 3h", true},
		{"retention evaluations negative", func(c *Config) { c.RetentionEvaluations = Duration(-time.Hour) }, "retention_evaluations: must be 0 (keep for ever) or at least 1h, got -1h", true},
		{"retention deliveries", func(c *Config) { c.RetentionDeliveries = Duration(time.Minute) }, "retention_deliveries: must be 0", false},
		{"retention dead letters", func(c *Config) { c.RetentionDeadLetters = Duration(time.Minute) }, "retention_dead_letters: must be 0", false},
		{"retention audit", func(c *Config) { c.RetentionAudit = Duration(time.Minute) }, "retention_audit: must be 0", false},
		{"retention hours below the rules", func(c *Config) { c.RetentionHours = Duration(8 * day) }, "retention_hours: must be 0 (keep for ever) or at least retention and the rules' 8 days (9d)", false},
		{"retention days below retention", func(c *Config) { c.Retention = Duration(30 * day); c.RetentionDays = Duration(20 * day) }, "retention_days: must be 0 (keep for ever) or at least retention and the rules' 8 days (30d)", false},
		{"template body does not parse", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "a", Type: "log"}, {Name: "b", Type: "log"}, {Name: "chat", Type: "template", URL: "https://h/", Body: `{"t": {{json .Summary}`}}
		}, "notify.receivers[2].body: template: body:1: bad character U+007D '}'", true},
		{"template unknown field", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Body: `{"t": {{json .Merchnt}}}`}}
		}, "notify.receivers[0].body: with a sample firing cancel_rate_spike notification: template: body:1:13: executing \"body\" at <.Merchnt>: can't evaluate field Merchnt in type httptemplate.Data", true},
		{"template unknown function", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Body: `{{shout .Summary}}`}}
		}, `notify.receivers[0].body: template: body:1: function "shout" not defined`, true},
		{"template JSON not escaped", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Body: `{"text": "{{.Merchant}}"}`}}
		}, "notify.receivers[0].body: with a sample firing cancel_rate_spike notification: rendered body is not valid JSON", false},
		{"template url required", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template"}} },
			"notify.receivers[0].url: required (a template rendering to an absolute http(s) URL)", true},
		{"template url renders relative", func(c *Config) { c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "{{.Rule}}/x"}} },
			"notify.receivers[0].url: with a sample firing cancel_rate_spike notification: rendered URL must be an absolute http or https URL", false},
		{"template method", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Method: "DELETE"}}
		},
			`notify.receivers[0].method: must be one of POST|PUT|PATCH|GET, got "DELETE"`, true},
		{"template GET with body", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Method: "get", Body: "{}"}}
		}, "notify.receivers[0].body: a GET request carries no body", false},
		{"template reserved header", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Headers: map[string]string{"idempotency-key": "x"}}}
		}, "notify.receivers[0].headers[idempotency-key]: set by riskwatch itself, cannot be configured", true},
		{"template header renders a line break", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "chat", Type: "template", URL: "https://h/", Headers: map[string]string{"X-Who": "{{.MerchantName}}"}}}
		}, "notify.receivers[0].headers[X-Who]: with a sample firing cancel_rate_spike notification: rendered value contains a line break or NUL", true},
		{"method without template", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "x", Type: "webhook", URL: "https://h/", Method: "PUT"}}
		},
			"notify.receivers[0].method: only template receivers take a method", true},
		{"body without template", func(c *Config) {
			c.Notify.Receivers = []Receiver{{Name: "x", Type: "slack", URL: "https://h/", Body: "{}"}}
		},
			"notify.receivers[0].body: only template receivers take a body", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Source.DSN = testSourceDSN
			c.Sink.DSN = testSinkDSN
			tt.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate succeeded, want error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 1 {
				t.Errorf("want exactly one problem, got %d:\n%v", len(lines), err)
			}
			if tt.exact && lines[0] != tt.want {
				t.Errorf("error\n got  %q\n want %q", lines[0], tt.want)
			}
			if !tt.exact && !strings.HasPrefix(lines[0], tt.want) {
				t.Errorf("error %q does not start with %q", lines[0], tt.want)
			}
		})
	}
}

func TestValidateAcceptsEdgeValues(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"grace zero", func(c *Config) { c.Grace = 0 }},
		{"grace just under a minute", func(c *Config) { c.Grace = Duration(time.Minute - 1) }},
		{"retention one hour", func(c *Config) { c.Retention = Duration(time.Hour) }},
		{"reconnect max equals min", func(c *Config) { c.Source.ReconnectMax = c.Source.ReconnectMin }},
		{"listen any host", func(c *Config) { c.HTTP.Listen = ":8080" }},
		{"listen port zero", func(c *Config) { c.HTTP.Listen = "localhost:0" }},
		{"listen ipv6", func(c *Config) { c.HTTP.Listen = "[::1]:65535" }},
		{"one stream", func(c *Config) { c.HTTP.MaxStreams = 1 }},
		{"slot 63 chars", func(c *Config) { c.Source.Slot = strings.Repeat("a", 63) }},
		{"schema underscore", func(c *Config) { c.Sink.Schema = "_risk2" }},
		{"odd identifiers", func(c *Config) { c.Mapping[0].Merchant = `Merchant "ID"` }},
		{"sink dsn falls back", func(c *Config) { c.Sink.DSN = testSourceDSN }},
		{"filters on different columns", func(c *Config) {
			c.Mapping = append(c.Mapping, TableMapping{Table: "public.ledger", Kind: "approval", Merchant: "m", Amount: "a", Time: "t", Filter: &Filter{Column: "type", In: []string{"x"}}},
				TableMapping{Table: "public.ledger", Kind: "cancel", Merchant: "m", Amount: "a", Time: "t", Filter: &Filter{Column: "status", In: []string{"x"}}})
		}},
		{"utc", func(c *Config) { c.BusinessTimezone = "UTC"; c.Location = time.UTC }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Source.DSN = testSourceDSN
			c.Sink.DSN = testSinkDSN
			tt.mutate(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	yml := `
source:
  slot: Bad-Slot
retention: 30m
http:
  listen: nowhere
mapping:
  - table: public.payments
    kind: approval
    merchant: merchant_id
    amount: amount
    time: approved_at
  - table: public.payment_cancels
    kind: refund
    merchant: merchant_id
    amount: cancel_amount
    time: canceled_at
log:
  format: xml
`
	_, err := Parse([]byte(yml), nil)
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		"source.dsn: required (set it in the file or RISKWATCH_SOURCE_DSN)",
		`source.slot: must match ^[a-z0-9_]{1,63}$, got "Bad-Slot"`,
		"retention: must be at least 1h, got 30m",
		`http.listen: must be host:port such as "127.0.0.1:8080" or ":8080", got "nowhere"`,
		`mapping[1].kind: must be "approval" or "cancel", got "refund"`,
		`log.format: must be one of text|json, got "xml"`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors\n got  %q\n want %q", got, want)
	}
}

func TestDSNErrorsHidePassword(t *testing.T) {
	const secret = "Sup3rSecretPW"
	dsns := []string{
		"postgres://rw:" + secret + "@db:notaport/shop",
		"postgres://rw:" + secret + "@db/shop?connect_timeout=soon",
		"postgres://rw:" + secret + "@db/shop?sslmode=bogus",
		"postgres://rw@db/shop?password=" + secret + "&target_session_attrs=odd",
		"postgres://rw:" + secret + "@db/shop?password=" + secret + "&novalue",
		"postgres://rw:Sup3r/SecretPW@db:5432/shop?sslmode=bogus",
		"postgres://rw:Sup3r@SecretPW@db:5432,db2:x/shop",
		"postgres://rw:" + secret + "@[::1/shop",
		"host=db port=notaport user=rw password=" + secret,
		"host=db user=rw password='" + secret + "' sslmode=bogus",
		"host=db user=rw password='Sup3r SecretPW",
		"host=db user=rw password=Sup3r SecretPW dbname=shop",
		"host=db user=rw password=" + secret + " connect_timeout=never",
		"postgres:/rw:" + secret + "@db/shop",
	}
	pieces := []string{secret, "Sup3r", "SecretPW"}
	for _, dsn := range dsns {
		t.Run(dsn, func(t *testing.T) {
			for _, field := range []string{"source.dsn", "sink.dsn"} {
				getenv := env(EnvSourceDSN, dsn)
				if field == "sink.dsn" {
					getenv = env(EnvSourceDSN, testSourceDSN, EnvSinkDSN, dsn)
				}
				_, err := Parse(nil, getenv)
				if err == nil {
					t.Fatalf("%s: Parse succeeded, want a parse error", field)
				}
				msg := err.Error()
				// The sink defaults to the source; one bad string is one problem.
				if n := strings.Count(msg, "\n") + 1; n != 1 {
					t.Errorf("%s: want one problem, got %d: %q", field, n, msg)
				}
				if !strings.HasPrefix(msg, field+": cannot parse connection string") {
					t.Errorf("%s: error %q does not name the field", field, msg)
				}
				for _, p := range pieces {
					if strings.Contains(msg, p) {
						t.Errorf("%s: error %q contains password text %q", field, msg, p)
					}
				}
			}
		})
	}
}

func TestDSNErrorKeepsSafeDetail(t *testing.T) {
	_, err := Parse(nil, env(EnvSourceDSN, "postgres://rw:pw@db/shop?sslmode=bogus"))
	if err == nil || !strings.Contains(err.Error(), "sslmode") {
		t.Errorf("want the sslmode problem explained, got %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "riskwatch.yaml")
	yml := "source:\n  dsn: postgres://rw@db/shop\n  slot: rw_slot\nretention: 2d\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(EnvSinkDSN, "postgres://agg@sink/risk"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Source.DSN != "postgres://rw@db/shop" || c.Source.Slot != "rw_slot" || c.Retention.D() != 48*time.Hour || c.Sink.DSN != "postgres://agg@sink/risk" {
		t.Errorf("Load = %+v", c)
	}
	if c.Location == nil || c.Location.String() != "Asia/Seoul" {
		t.Errorf("Location = %v", c.Location)
	}
}

func TestLoadErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "absent.yaml")
		_, err := Load(p, withSource())
		if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load(%q) error = %v", p, err)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		p := write("typo.yaml", "grace: 1s\ngarce: 2s\n")
		_, err := Load(p, withSource())
		if err == nil || !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), "garce") || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("type errors name the file and the key", func(t *testing.T) {
		p := write("types.yaml", "grace: 1s\nrules:\n  cancel_rate_spike: {min_cancels: abc, multiplier: [2]}\n")
		_, err := Load(p, withSource())
		want := []string{
			p + ": rules.cancel_rate_spike.min_cancels: line 3: cannot unmarshal !!str `abc` into int64",
			p + ": rules.cancel_rate_spike.multiplier: line 3: cannot unmarshal !!seq into float64",
		}
		if err == nil || !reflect.DeepEqual(strings.Split(err.Error(), "\n"), want) {
			t.Errorf("error = %v, want %q", err, want)
		}
	})
	t.Run("every validation line", func(t *testing.T) {
		p := write("invalid.yaml", "retention: 30m\nlog: {level: loud}\n")
		_, err := Load(p, nil)
		if err == nil {
			t.Fatal("Load succeeded")
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != 3 {
			t.Errorf("want 3 problems, got %q", lines)
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, p+": ") {
				t.Errorf("line %q does not name the file", l)
			}
		}
		if !strings.Contains(err.Error(), p+": retention: must be at least 1h, got 30m") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestExampleMatchesDefault(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, withSource())
	if err != nil {
		t.Fatalf("Parse(example.yaml): %v", err)
	}
	want := *Default()
	want.Location = nil
	want.Source.DSN = testSourceDSN
	want.Sink.DSN = testSourceDSN
	if got := comparable(t, c); !reflect.DeepEqual(got, want) {
		t.Errorf("example.yaml\n got  %+v\n want %+v", got, want)
	}

	// Every key the decoder knows must appear in the example, so that the
	// documentation cannot fall behind the struct.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	collectKeys(doc.Content[0], "", keys)
	for _, k := range yamlKeys(reflect.TypeFor[Config](), "") {
		if !keys[k] {
			t.Errorf("example.yaml does not show %s", k)
		}
	}
}

func collectKeys(n *yaml.Node, prefix string, into map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			into[k] = true
			collectKeys(n.Content[i+1], k+".", into)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			collectKeys(c, prefix, into)
		}
	}
}

// yamlKeys lists dotted key paths of t; slice elements share their parent's
// prefix. Filter is optional and shown only in comments, so it is skipped.
func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "filter" {
			continue
		}
		if name == "receivers" {
			// Shown only as commented examples: the default is none.
			out = append(out, prefix+name)
			continue
		}
		out = append(out, prefix+name)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Location]() {
			out = append(out, yamlKeys(ft, prefix+name+".")...)
		}
	}
	return out
}

func TestMarshalRoundTrip(t *testing.T) {
	c := Default()
	c.Source.DSN = testSourceDSN
	c.Sink.DSN = testSinkDSN
	c.Mapping = append(c.Mapping, TableMapping{Table: "public.ledger", Kind: "cancel", Merchant: "m", Amount: "a", Time: "t",
		Filter: &Filter{Column: "type", In: []string{"cancel"}}})
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, nil)
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
	}
	if got, want := comparable(t, back), comparable(t, c); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip\n got  %+v\n want %+v\n%s", got, want, out)
	}
	if !strings.Contains(string(out), "retention: 8d\n") {
		t.Errorf("retention not marshalled as 8d:\n%s", out)
	}
}

// TestValidateKafka: capture and worker name every bad kafka field.
func TestValidateKafka(t *testing.T) {
	c := Default()
	if err := c.ValidateKafka(); err == nil || !strings.Contains(err.Error(), "kafka.brokers: required") {
		t.Fatalf("no brokers: %v", err)
	}
	c.Kafka = Kafka{Brokers: []string{"k1:9092", "nohost"}, Topic: "", Partitions: 0, ReplicationFactor: 0, Group: "", Input: "debezium",
		WatermarkInterval: Duration(2 * time.Second), IdleAfter: 0, SessionTimeout: Duration(time.Millisecond)}
	err := c.ValidateKafka()
	for _, want := range []string{"kafka.brokers[1]: must be host:port", "kafka.topic: required", "kafka.partitions: must be greater than 0",
		"kafka.replication_factor:", "kafka.group: required", "kafka.topics: required with input debezium", "kafka.watermark_interval:",
		"kafka.idle_after:", "kafka.session_timeout:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in: %v", want, err)
		}
	}
	c = Default()
	c.Kafka.Brokers = []string{"k1:9092"}
	if err := c.ValidateKafka(); err != nil {
		t.Fatalf("defaults with brokers: %v", err)
	}
	if got := c.KafkaTopics(); len(got) != 1 || got[0] != "riskwatch.changes" {
		t.Fatalf("KafkaTopics() = %v", got)
	}
	c.Source.Delivery = DeliveryMinute
	if err := c.ValidateKafka(); err == nil || !strings.Contains(err.Error(), `source.delivery: must be "stream" for capture and worker`) {
		t.Fatalf("minute delivery for capture: %v", err)
	}
}

// Parse is Load on bytes.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	return load(data, getenv)
}

// TestMySQLSource: a mysql:// source needs its own PostgreSQL sink, a DSN
// of the documented form, streaming delivery and a known time zone; the
// default mapping's tables are in the DSN's database.
func TestMySQLSource(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := Load("", env(map[string]string{EnvSourceDSN: "mysql://rw:pw@db:3306/shop", EnvSinkDSN: "postgres://rw@sink/rw"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid MySQL config: %v", err)
	}
	m, err := cfg.EventMapping()
	if err != nil {
		t.Fatal(err)
	}
	if tables := m.Tables(); len(tables) != 2 || tables[0] != [2]string{"shop", "payments"} || tables[1] != [2]string{"shop", "payment_cancels"} {
		t.Fatalf("default mapping tables = %v, want shop.payments and shop.payment_cancels", tables)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		edit func(*Config)
		want string
	}{
		{"sink required", map[string]string{EnvSourceDSN: "mysql://rw:pw@db:3306/shop"}, nil, "sink.dsn: required with a MySQL source"},
		{"no database", map[string]string{EnvSourceDSN: "mysql://rw:pw@db:3306/", EnvSinkDSN: "postgres://rw@sink/rw"}, nil, "source.dsn: a mysql:// DSN needs one database"},
		{"bad port", map[string]string{EnvSourceDSN: "mysql://rw:pw@db:99999/shop", EnvSinkDSN: "postgres://rw@sink/rw"}, nil, `source.dsn: port "99999" is not 1..65535`},
		{"minute delivery", map[string]string{EnvSourceDSN: "mysql://rw:pw@db/shop", EnvSinkDSN: "postgres://rw@sink/rw"},
			func(c *Config) { c.Source.Delivery = DeliveryMinute }, "source.delivery"},
		{"mysql sink", map[string]string{EnvSourceDSN: "mysql://rw:pw@db/shop", EnvSinkDSN: "mysql://rw:pw@db/shop2"}, nil, "sink.dsn: the sink must be PostgreSQL"},
	} {
		cfg, err := Load("", env(c.env))
		if err == nil {
			if c.edit != nil {
				c.edit(cfg)
			}
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: err = %v, want it to say %q without the password", c.name, err, c.want)
		}
	}
	body := "source:\n  dsn: mysql://rw:pw@db/shop\n  time_zone: Mars/Olympus\nsink:\n  dsn: postgres://rw@sink/rw\n"
	p := filepath.Join(t.TempDir(), "rw.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(p, env(nil))
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), `source.time_zone: unknown time zone "Mars/Olympus"`) {
		t.Fatalf("bad time zone: %v", err)
	}
}

// A MySQL source's pipeline defaults are deeper; what the file sets stays,
// and a PostgreSQL source keeps the generic ones.
func TestMySQLPipelineDefaults(t *testing.T) {
	mysql := env(EnvSourceDSN, "mysql://rw:pw@db:3306/shop", EnvSinkDSN, "postgres://rw@sink/rw")
	for _, tc := range []struct {
		name, yml       string
		getenv          func(string) string
		queue, maxBatch int
		flush           time.Duration
	}{
		{"mysql, unset", "", mysql, MySQLQueueSize, MySQLMaxBatchEvents, 60 * time.Millisecond},
		{"mysql, null", "pipeline:\n  queue_size:\n  flush_interval:\n", mysql, MySQLQueueSize, MySQLMaxBatchEvents, 60 * time.Millisecond},
		{"mysql, queue set", "pipeline:\n  queue_size: 256\n", mysql, 256, MySQLMaxBatchEvents, 60 * time.Millisecond},
		{"mysql, batch set", "pipeline:\n  max_batch_events: 1000\n", mysql, MySQLQueueSize, 1000, 60 * time.Millisecond},
		{"mysql, flush set", "pipeline:\n  flush_interval: 100ms\n", mysql, MySQLQueueSize, MySQLMaxBatchEvents, 100 * time.Millisecond},
		{"postgres, unset", "", withSource(), 256, 50000, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yml), tc.getenv)
			if err != nil {
				t.Fatal(err)
			}
			if c.Pipeline.QueueSize != tc.queue || c.Pipeline.MaxBatchEvents != tc.maxBatch || c.Pipeline.FlushInterval.D() != tc.flush {
				t.Errorf("queue_size %d, max_batch_events %d, flush_interval %s; want %d, %d, %s",
					c.Pipeline.QueueSize, c.Pipeline.MaxBatchEvents, c.Pipeline.FlushInterval.D(), tc.queue, tc.maxBatch, tc.flush)
			}
		})
	}
}
