// Package config loads riskwatch.yaml.
//
// Every field has a default, so an empty file (or no file) is a valid
// configuration apart from the source DSN, which is best supplied through
// RISKWATCH_SOURCE_DSN so the password stays out of the file. Unknown keys
// are rejected so that a typo cannot silently fall back to a default. A key
// present with no value (e.g. "source:" with all its children commented out)
// counts as absent and keeps its default; a key given an explicit zero
// ("grace: 0s") keeps the zero.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	// The business timezone must resolve on minimal container images that
	// ship no zoneinfo; day boundaries would otherwise depend on the host.
	_ "time/tzdata"

	"gopkg.in/yaml.v3"

	"github.com/riskwatch/riskwatch/internal/rules"
)

// Environment variables that override the file. DSNs usually carry a
// password, which belongs in a secret store rather than in a config file.
const (
	EnvSourceDSN = "RISKWATCH_SOURCE_DSN"
	EnvSinkDSN   = "RISKWATCH_SINK_DSN"
	// The dashboard's secrets, for the same reason.
	EnvReadToken        = "RISKWATCH_READ_TOKEN"
	EnvReadPassword     = "RISKWATCH_READ_PASSWORD"
	EnvOperatorToken    = "RISKWATCH_OPERATOR_TOKEN"
	EnvOperatorPassword = "RISKWATCH_OPERATOR_PASSWORD"
)

// Mapping kinds.
const (
	KindApproval = "approval"
	KindCancel   = "cancel"
)

// Config is the whole of riskwatch.yaml.
type Config struct {
	Source           Source         `yaml:"source"`
	Sink             Sink           `yaml:"sink"`
	BusinessTimezone string         `yaml:"business_timezone"` // default "Asia/Seoul"
	Location         *time.Location `yaml:"-"`                 // loaded from BusinessTimezone by Load/Parse
	Retention        Duration       `yaml:"retention"`         // default 8d; must be >= 1h
	Grace            Duration       `yaml:"grace"`             // default 1s; 0 <= grace < 1m
	MaxFuture        Duration       `yaml:"max_future"`        // default 5m; > 0 (events further than this after their commit time are dead-lettered)
	// MaxAmount is the largest amount aggregated; a row above it is a dead
	// letter (amount_out_of_range). It keeps every sum far from int64's
	// end: 9.2 million rows at this amount in one bucket before a sum
	// could overflow (which is checked too).
	MaxAmount     int64          `yaml:"max_amount"` // default 1,000,000,000,000 KRW; 1..1e15
	HTTP          HTTP           `yaml:"http"`
	MerchantNames MerchantNames  `yaml:"merchant_names"`
	Mapping       []TableMapping `yaml:"mapping"` // default: DefaultMapping()
	Pipeline      Pipeline       `yaml:"pipeline"`
	Rules         Rules          `yaml:"rules"`
	Alerts        Alerts         `yaml:"alerts"`
	Notify        Notify         `yaml:"notify"`
	Kafka         Kafka          `yaml:"kafka"`
	Standby       Standby        `yaml:"standby"`
	Log           Log            `yaml:"log"`

	// How long the sink keeps what is not minute aggregates (those follow
	// Retention); 0 keeps it for ever, anything else is at least 1h
	// (docs/retention.md).
	RetentionAlerts      Duration `yaml:"retention_alerts"`       // default 90d: resolved alerts, with their evaluations and notifications; >= alerts.repeat_interval
	RetentionEvaluations Duration `yaml:"retention_evaluations"`  // default 30d: alert evaluations, by minute
	RetentionDeliveries  Duration `yaml:"retention_deliveries"`   // default 30d: delivered or rejected deliveries, and notifications left with none
	RetentionDeadLetters Duration `yaml:"retention_dead_letters"` // default 30d
	RetentionAudit       Duration `yaml:"retention_audit"`        // default 365d: operator actions (the audit trail)
	RetentionHours       Duration `yaml:"retention_hours"`        // default 90d: hourly rollups; >= retention and what the rules read
	RetentionDays        Duration `yaml:"retention_days"`         // default 400d: daily rollups; same floor
}

// Standby: several `riskwatch run` processes on one sink and source, one
// active and the others waiting, through a lease in the sink
// (docs/standby.md).
type Standby struct {
	// Lease is how long the active process holds the lease after each
	// renewal, by the sink's clock; a standby takes over at the latest
	// this long after the active one stopped renewing (a process that
	// dies is noticed sooner: its sink session ends).
	Lease Duration `yaml:"lease"` // default 10s; >= 2 x renew
	// Renew is how often the active process renews (a standby asks four
	// times as often whether it may take over). The active one stops
	// writing and sending after lease − renew without a renewal.
	Renew Duration `yaml:"renew"` // default 2s; > 0
	// ID names this process in the lease (default host:pid).
	ID string `yaml:"id"`
}

// Kafka configures scale-out: `riskwatch capture` publishes the source's
// changes to a topic, `riskwatch worker` processes aggregate and evaluate
// them in a consumer group. `riskwatch run` ignores it.
type Kafka struct {
	Brokers []string `yaml:"brokers,omitempty"` // host:port seeds; required by capture and worker
	// Topic capture publishes to and workers read (input "capture").
	Topic string `yaml:"topic"` // default "riskwatch.changes"
	// Partitions of Topic when capture creates it.
	Partitions int `yaml:"partitions"` // default 12; > 0
	// ReplicationFactor of Topic when capture creates it; -1 is the broker's default.
	ReplicationFactor int    `yaml:"replication_factor"` // default -1
	Group             string `yaml:"group"`              // default "riskwatch-workers"
	// Input is InputCapture (riskwatch capture's topic, with watermarks),
	// InputDebezium (topics of Debezium's PostgreSQL or MySQL connector,
	// told apart by each record's source.connector) or InputMaxwell
	// (Maxwell's JSON); the last two are listed in Topics.
	Input string `yaml:"input"` // default "capture"
	// Topics are the Debezium connector's per-table topics, or Maxwell's
	// (inputs debezium and maxwell).
	Topics []string `yaml:"topics,omitempty"`
	// WatermarkInterval: capture writes a watermark to every partition at
	// least this often.
	WatermarkInterval Duration `yaml:"watermark_interval"` // default 250ms; (0, 1s]
	// IdleAfter (inputs debezium and maxwell, without watermarks): a partition read
	// to its end for this long stops holding back the closing of minutes.
	IdleAfter Duration `yaml:"idle_after"` // default 5s; > 0
	// SessionTimeout: a worker silent this long leaves the group and its
	// partitions go to the others.
	SessionTimeout Duration `yaml:"session_timeout"` // default 10s; >= 100ms
}

// The values of kafka.input.
const (
	InputCapture  = "capture"
	InputDebezium = "debezium"
	InputMaxwell  = "maxwell"
)

// Rules holds the thresholds of SPEC §5 and §6, named as there. Fractions
// are read as the decimal written in the file and compared exactly.
type Rules struct {
	CancelRateSpike CancelRateSpike `yaml:"cancel_rate_spike"`
	VolumeDrop      VolumeDrop      `yaml:"volume_drop"`
	// ExposureWindow is how far back approvals are still exposed to
	// cancellation: the money at stake of SPEC §7a.
	ExposureWindow Duration `yaml:"exposure_window"` // default 168h (7 days); whole minutes, 1m..168h
	Priority       Priority `yaml:"priority"`
}

// Priority: how evidence and money make a firing alert P1, P2 or P3 (SPEC
// §7a; docs/design.md, "Evidence and priority", has how the defaults were
// measured). Evidence is −log10 of the probability of the alert's figures
// under the least alarming explanation from the merchant's own history.
type Priority struct {
	CancelDispersion  float64 `yaml:"cancel_dispersion"`   // default 0.1; 0..10: day-to-day variance of a merchant's cancel rate (squared coefficient of variation)
	CancelBatchWeight float64 `yaml:"cancel_batch_weight"` // default 0.5; 0..1: how far a batch of cancels in one minute counts as one event
	CancelTodayWeight float64 `yaml:"cancel_today_weight"` // default 0 (off); 0..1: how far today's cancels before the hour count as evidence of today's level
	VolumeMinSpread   float64 `yaml:"volume_min_spread"`   // default 0.05; 0..1: least day-to-day spread of the same-time amount credited
	CancelP1Evidence  float64 `yaml:"cancel_p1_evidence"`  // default 5
	CancelP2Evidence  float64 `yaml:"cancel_p2_evidence"`  // default 3; <= cancel_p1_evidence
	VolumeP1Evidence  float64 `yaml:"volume_p1_evidence"`  // default 1.6
	VolumeP2Evidence  float64 `yaml:"volume_p2_evidence"`  // default 1.6 (no P2 band: see docs/design.md); <= volume_p1_evidence
	P1MinExposure     int64   `yaml:"p1_min_exposure"`     // default 3,000,000 KRW; >= 0: less at stake never pages
}

// CancelRateSpike: the 1-hour cancel rate against the 7-day rate (SPEC §5).
type CancelRateSpike struct {
	MinBaselineApprovals int64   `yaml:"min_baseline_approvals"` // default 100; >= 0
	BaselineFloor        float64 `yaml:"baseline_floor"`         // default 0.002; 0..1
	MinCancels           int64   `yaml:"min_cancels"`            // default 5; >= 1
	Multiplier           float64 `yaml:"multiplier"`             // default 2.0; > 0
	MinApprovals         int64   `yaml:"min_approvals"`          // default 20; >= 0
}

// VolumeDrop: a large merchant's volume today against its usual curve (SPEC §6).
type VolumeDrop struct {
	LargeDailyAmount    int64   `yaml:"large_daily_amount"`    // default 1,000,000,000 KRW; > 0
	MinExpectedFraction float64 `yaml:"min_expected_fraction"` // default 0.05; 0..1
	DropRatio           float64 `yaml:"drop_ratio"`            // default 0.5; (0, 1]
}

// DefaultPriority is rules.priority's defaults (rules.DefaultPriorityParams).
func DefaultPriority() Priority {
	d := rules.DefaultPriorityParams()
	return Priority{CancelDispersion: d.CancelDispersion, CancelBatchWeight: d.CancelBatchWeight, CancelTodayWeight: d.CancelTodayWeight, VolumeMinSpread: d.VolumeMinSpread, CancelP1Evidence: d.CancelP1Evidence,
		CancelP2Evidence: d.CancelP2Evidence, VolumeP1Evidence: d.VolumeP1Evidence, VolumeP2Evidence: d.VolumeP2Evidence, P1MinExposure: d.P1MinExposure}
}

// Alerts is the alert lifecycle (SPEC §7).
type Alerts struct {
	RepeatInterval Duration `yaml:"repeat_interval"` // default 4h; > 0
	ResolveAfter   int      `yaml:"resolve_after"`   // default 5; >= 1
}

// Notify lists where alerts are sent.
type Notify struct {
	Receivers  []Receiver `yaml:"receivers"`
	BackoffMin Duration   `yaml:"backoff_min"` // default 1s; > 0
	BackoffMax Duration   `yaml:"backoff_max"` // default 5m; >= backoff_min
}

// Receiver is one notification channel.
type Receiver struct {
	Name string `yaml:"name"` // unique; [a-z0-9_-]
	// Type: webhook (generic JSON), slack (incoming webhook), pagerduty
	// (Events API v2), alertmanager (API v2), template (an HTTP request
	// rendered from text/template templates: any chat tool or SMS
	// gateway; docs/template-receiver.md) or log (the engine's own log).
	// For template, url and the values of headers are templates too.
	Type       string            `yaml:"type"`
	URL        string            `yaml:"url"`         // http(s); for alertmanager the base URL; pagerduty defaults to the public Events API
	RoutingKey string            `yaml:"routing_key"` // pagerduty only; required there
	Headers    map[string]string `yaml:"headers"`     // webhook and template only (e.g. Authorization)
	Timeout    Duration          `yaml:"timeout"`     // default 10s per send
	// Rules, when set, limits the receiver to these rules.
	Rules []string `yaml:"rules"`
	// MinPriority: the least urgent priority the receiver takes (P1, P2
	// or P3; default P3, everything).
	MinPriority string `yaml:"min_priority"`

	// Method and Body: template only. Method is POST (default), PUT,
	// PATCH or GET; Body is a template (no body when empty).
	Method string `yaml:"method"`
	Body   string `yaml:"body"`
}

// Source is the PostgreSQL server read through logical replication.
type Source struct {
	DSN               string   `yaml:"dsn"`                // required (after env override); env RISKWATCH_SOURCE_DSN overrides the file
	Slot              string   `yaml:"slot"`               // default "riskwatch"; must match ^[a-z0-9_]{1,63}$
	Publication       string   `yaml:"publication"`        // default "riskwatch"; same pattern
	HeartbeatInterval Duration `yaml:"heartbeat_interval"` // default 200ms; > 0
	StatusInterval    Duration `yaml:"status_interval"`    // default 1s; > 0
	ReconnectMin      Duration `yaml:"reconnect_min"`      // default 500ms; > 0
	ReconnectMax      Duration `yaml:"reconnect_max"`      // default 30s; >= reconnect_min
	// Delivery is how changes are read: "stream" (default) holds the
	// replication connection open and applies each commit within about
	// 100 ms; "minute" connects once a minute, just after the minute's end
	// + grace, and reads everything committed up to then (alerts as
	// prompt, aggregates up to a minute old, far less source CPU at low
	// rates). Only riskwatch run reads "minute"; capture always streams.
	Delivery string `yaml:"delivery"`
	// TimeZone reads a MySQL source's DATETIME columns, which carry no
	// zone (TIMESTAMP is absolute). Default "UTC"; an IANA name.
	TimeZone string `yaml:"time_zone"`
	// ServerID is the replica server_id a MySQL source's binlog connection
	// registers with; 0 (default) derives one from source.slot. It must
	// differ from every real server's and replica's.
	ServerID uint32 `yaml:"server_id"`

	// TimeLocation is TimeZone loaded (set by Load).
	TimeLocation *time.Location `yaml:"-"`
}

// IsMySQL reports whether the source is MySQL or MariaDB (a mysql:// DSN);
// otherwise it is PostgreSQL.
func (s Source) IsMySQL() bool { return strings.HasPrefix(s.DSN, "mysql://") }

// Delivery values.
const (
	DeliveryStream = "stream"
	DeliveryMinute = "minute"
)

// MinuteDelivery reports whether the source is read once a minute.
func (s Source) MinuteDelivery() bool { return s.Delivery == DeliveryMinute }

// Sink is the PostgreSQL database the aggregates are written to.
type Sink struct {
	DSN    string `yaml:"dsn"`    // env RISKWATCH_SINK_DSN overrides; when still empty it defaults to source.dsn (the sink may be the same server)
	Schema string `yaml:"schema"` // default "riskwatch"; must match ^[a-z_][a-z0-9_]{0,62}$
}

// HTTP is the metrics/health/query listener.
type HTTP struct {
	Listen string `yaml:"listen"` // default "127.0.0.1:8080"; must parse with net.SplitHostPort, port numeric 0..65535
	// ExternalURL is how operators reach the dashboard; alerts link to it.
	// Default: http://<listen>.
	ExternalURL string `yaml:"external_url"`
	Auth        Auth   `yaml:"auth"`
	// MaxStreams caps the dashboard's open event streams (GET /api/events);
	// each holds a connection, a goroutine and a 256-event buffer.
	MaxStreams int `yaml:"max_streams"` // default 100; >= 1
}

// Auth guards the dashboard and its API. An empty level needs no
// credentials.
type Auth struct {
	Read     Credentials `yaml:"read"`     // every GET of the dashboard and API
	Operator Credentials `yaml:"operator"` // acknowledging alerts (and read)
	// Proxy trusts an SSO proxy's identity header (docs/operators.md).
	Proxy Proxy `yaml:"proxy"`
}

// Proxy names operators through an SSO reverse proxy (oauth2-proxy and
// the like), which authenticates people and passes who they are in a
// header. The header is believed only from the listed proxy addresses:
// anyone else could send it too.
type Proxy struct {
	Enabled bool `yaml:"enabled"` // default false
	// Header holds the user name; default X-Forwarded-User (what
	// oauth2-proxy sets upstream; X-Auth-Request-User under nginx's
	// auth_request).
	Header string `yaml:"header"`
	// EmailHeader holds the user's email, recorded beside the name;
	// default X-Forwarded-Email; "" records none.
	EmailHeader string `yaml:"email_header"`
	// Trusted lists the proxy's addresses (IPs or CIDRs) as this server
	// sees the TCP peer; required when enabled.
	Trusted []string `yaml:"trusted,omitempty"`
	// Operators lists the proxied users (names or emails, either matching,
	// case-insensitively) who may act; the others only read. Empty: every
	// proxied user operates.
	Operators []string `yaml:"operators,omitempty"`
}

// Proxy header defaults: oauth2-proxy's upstream headers.
const (
	DefaultProxyHeader      = "X-Forwarded-User"
	DefaultProxyEmailHeader = "X-Forwarded-Email"
)

// Credentials accept a bearer token, HTTP Basic, or either.
type Credentials struct {
	Token    string `yaml:"token"`    // env RISKWATCH_{READ,OPERATOR}_TOKEN overrides
	Username string `yaml:"username"` // with password: HTTP Basic
	Password string `yaml:"password"` // env RISKWATCH_{READ,OPERATOR}_PASSWORD overrides
}

// Configured reports whether any credential is set.
func (c Credentials) Configured() bool { return c.Token != "" || c.Username != "" || c.Password != "" }

// MerchantNames copies merchant names from a source table to the sink for
// the dashboard's search and labels. Display only: no rule reads them.
type MerchantNames struct {
	Table   string   `yaml:"table"`   // default "public.merchants"; "" disables (merchants show as ids)
	ID      string   `yaml:"id"`      // default "id"
	Name    string   `yaml:"name"`    // default "name"
	Refresh Duration `yaml:"refresh"` // default 1m; > 0: new merchants (ids above the highest known)
	// FullRefresh: every name read again, for renames and ids issued out of
	// order. Default 1h; > 0.
	FullRefresh Duration `yaml:"full_refresh"`
}

// SchemaTable splits Table like TableMapping.SchemaTable.
func (m MerchantNames) SchemaTable() (schema, table string) {
	return TableMapping{Table: m.Table}.SchemaTable()
}

// TableMapping tells riskwatch which columns of a source table carry the
// merchant, amount and event time, and whether its rows are approvals or
// cancellations.
type TableMapping struct {
	Table    string  `yaml:"table"`    // "schema.table" or "table" (schema then defaults to "public"); required
	Kind     string  `yaml:"kind"`     // "approval" or "cancel"; required
	Merchant string  `yaml:"merchant"` // column name; required
	Amount   string  `yaml:"amount"`   // column name; required
	Time     string  `yaml:"time"`     // column name; required
	Filter   *Filter `yaml:"filter"`   // optional
}

// Filter keeps only rows whose Column's text value is one of In (e.g. a
// ledger table's type column).
type Filter struct {
	Column string   `yaml:"column"` // required when filter given
	In     []string `yaml:"in"`     // non-empty
}

// SchemaTable splits Table into schema and table name ("public" when
// unqualified). It splits at the first dot, so a dot inside the table name
// is kept ("s.a.b" is table "a.b" in schema "s").
func (m TableMapping) SchemaTable() (schema, table string) {
	if s, t, ok := strings.Cut(m.Table, "."); ok {
		return s, t
	}
	return "public", m.Table
}

// Pipeline sizes the receiver -> applier path.
type Pipeline struct {
	FlushInterval  Duration `yaml:"flush_interval"`   // default 100ms (60ms with a MySQL source); > 0
	MaxBatchEvents int      `yaml:"max_batch_events"` // default 50000 (500000 with a MySQL source); > 0
	QueueSize      int      `yaml:"queue_size"`       // default 256 (16384 with a MySQL source): transactions buffered between receiver and applier; > 0
	// StuckAfter: this many identical failures in a row at the same source
	// position mark the pipeline stuck (/readyz 503, riskwatch_pipeline_stuck,
	// the dashboard's banner).
	StuckAfter int `yaml:"stuck_after"` // default 3; >= 1
	// StuckNotifyAfter: a pipeline stuck this long is also an alert to the
	// receivers (rule pipeline_stuck), so a server restart of a few seconds
	// pages nobody.
	StuckNotifyAfter Duration `yaml:"stuck_notify_after"` // default 1m; >= 0
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error, default info
	Format string `yaml:"format"` // text|json, default text
}

// DefaultMapping is the default source schema of SPEC: public.payments (kind
// approval, merchant merchant_id, amount amount, time approved_at) and
// public.payment_cancels (kind cancel, merchant merchant_id, amount
// cancel_amount, time canceled_at). It returns a fresh slice on every call
// so callers may modify it.
func DefaultMapping() []TableMapping {
	return []TableMapping{
		{Table: "public.payments", Kind: KindApproval, Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Table: "public.payment_cancels", Kind: KindCancel, Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}
}

const defaultTimezone = "Asia/Seoul"

// DefaultMaxAmount is 1조 KRW: far above any card payment, far below where
// sums of amounts could overflow.
const DefaultMaxAmount = 1_000_000_000_000

// maxMaxAmount bounds max_amount so that a bucket holds at least 9,223
// rows at the limit before its sum could overflow int64.
const maxMaxAmount = 1_000_000_000_000_000

// Default returns a config with every default filled in (DSNs empty,
// Location = Asia/Seoul).
func Default() *Config {
	loc, err := time.LoadLocation(defaultTimezone)
	if err != nil {
		// Cannot happen: time/tzdata is linked in.
		panic(fmt.Sprintf("config: load %s: %v", defaultTimezone, err))
	}
	return &Config{
		Source: Source{
			Slot:              "riskwatch",
			Publication:       "riskwatch",
			HeartbeatInterval: Duration(200 * time.Millisecond),
			StatusInterval:    Duration(time.Second),
			ReconnectMin:      Duration(500 * time.Millisecond),
			ReconnectMax:      Duration(30 * time.Second),
			Delivery:          DeliveryStream,
			TimeZone:          "UTC",
			TimeLocation:      time.UTC,
		},
		Sink:             Sink{Schema: "riskwatch"},
		BusinessTimezone: defaultTimezone,
		Location:         loc,
		Retention:        Duration(8 * day),
		Grace:            Duration(time.Second),
		MaxFuture:        Duration(5 * time.Minute),
		MaxAmount:        DefaultMaxAmount,
		HTTP:             HTTP{Listen: "127.0.0.1:8080", MaxStreams: 100, Auth: Auth{Proxy: Proxy{Header: DefaultProxyHeader, EmailHeader: DefaultProxyEmailHeader}}},
		MerchantNames:    MerchantNames{Table: "public.merchants", ID: "id", Name: "name", Refresh: Duration(time.Minute), FullRefresh: Duration(time.Hour)},
		Rules: Rules{
			CancelRateSpike: CancelRateSpike{MinBaselineApprovals: 100, BaselineFloor: 0.002, MinCancels: 5, Multiplier: 2.0, MinApprovals: 20},
			VolumeDrop:      VolumeDrop{LargeDailyAmount: 1_000_000_000, MinExpectedFraction: 0.05, DropRatio: 0.5},
			ExposureWindow:  Duration(7 * day),
			Priority:        DefaultPriority(),
		},
		Alerts:  Alerts{RepeatInterval: Duration(4 * time.Hour), ResolveAfter: 5},
		Notify:  Notify{BackoffMin: Duration(time.Second), BackoffMax: Duration(5 * time.Minute)},
		Mapping: DefaultMapping(),
		Pipeline: Pipeline{
			FlushInterval:    Duration(100 * time.Millisecond),
			MaxBatchEvents:   50000,
			QueueSize:        256,
			StuckAfter:       3,
			StuckNotifyAfter: Duration(time.Minute),
		},
		Kafka: Kafka{Topic: "riskwatch.changes", Partitions: 12, ReplicationFactor: -1, Group: "riskwatch-workers", Input: "capture",
			WatermarkInterval: Duration(250 * time.Millisecond), IdleAfter: Duration(5 * time.Second), SessionTimeout: Duration(10 * time.Second)},
		Standby: Standby{Lease: Duration(10 * time.Second), Renew: Duration(2 * time.Second)},
		Log:     Log{Level: "info", Format: "text"},

		RetentionAlerts:      Duration(90 * day),
		RetentionEvaluations: Duration(30 * day),
		RetentionDeliveries:  Duration(30 * day),
		RetentionDeadLetters: Duration(30 * day),
		RetentionAudit:       Duration(365 * day),
		RetentionHours:       Duration(90 * day),
		RetentionDays:        Duration(400 * day),
	}
}

// Load reads the YAML file at path (path "" means: no file, defaults only),
// applies env overrides through getenv (pass os.Getenv in production; tests
// pass a map lookup; nil means no environment), fills defaults, loads
// Location, and validates. Errors name the file.
func Load(path string, getenv func(string) string) (*Config, error) {
	if path == "" {
		return load(nil, getenv)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// *fs.PathError already names the file.
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := load(data, getenv)
	if err != nil {
		return nil, prefixEach(path, err)
	}
	return cfg, nil
}

func load(data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cfg := Default()
	// Decoding into the defaults is what lets an explicit zero survive.
	if err := decode(data, cfg); err != nil {
		return nil, err
	}
	if len(cfg.Mapping) == 0 {
		cfg.Mapping = DefaultMapping()
	}
	if len(cfg.Notify.Receivers) == 0 {
		cfg.Notify.Receivers = nil
	}
	for _, o := range []struct {
		env string
		dst *string
	}{
		{EnvSourceDSN, &cfg.Source.DSN}, {EnvSinkDSN, &cfg.Sink.DSN},
		{EnvReadToken, &cfg.HTTP.Auth.Read.Token}, {EnvReadPassword, &cfg.HTTP.Auth.Read.Password},
		{EnvOperatorToken, &cfg.HTTP.Auth.Operator.Token}, {EnvOperatorPassword, &cfg.HTTP.Auth.Operator.Password},
	} {
		if v := getenv(o.env); v != "" {
			*o.dst = v
		}
	}
	if cfg.Sink.DSN == "" && !cfg.Source.IsMySQL() {
		cfg.Sink.DSN = cfg.Source.DSN
	}
	if cfg.Source.IsMySQL() {
		mysqlPipeline(data, &cfg.Pipeline)
	}
	cfg.Source.TimeLocation = nil
	if loc, err := time.LoadLocation(cfg.Source.TimeZone); err == nil {
		cfg.Source.TimeLocation = loc
	}
	// On failure Location stays nil and Validate reports the timezone.
	cfg.Location = nil
	if cfg.BusinessTimezone != "" {
		if loc, err := time.LoadLocation(cfg.BusinessTimezone); err == nil {
			cfg.Location = loc
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// A binlog source's pipeline defaults: behind a backlog they let the
// receiver read on while the sink writes, and batches grow until many
// events share each merchant-minute row, the sink's unit of cost
// (measured: a 5M-change MariaDB backlog caught up at 153,000 events/s
// against 74,000 with 256 and 50,000). Live, a flush interval holds a few
// hundred events and neither limit matters. A full PostgreSQL run with
// them was worse at the alert latency p99 and the restart, unattributed
// in one run, so the PostgreSQL source keeps the smaller ones.
//
// Its flush interval is shorter, for the binlog source's commit →
// aggregate target (p99 ≤ 250 ms): at 5,000 TPS on MariaDB, 60 ms instead
// of 100 took the p99 from 412–449 ms to 223–369 ms with the engine's CPU
// and the sink's total time unchanged (smaller transactions, each
// quicker). Not measured against the PostgreSQL source's targets, which
// keeps 100 ms.
const (
	MySQLQueueSize      = 16384
	MySQLMaxBatchEvents = 500000
	MySQLFlushInterval  = Duration(60 * time.Millisecond)
)

// mysqlPipeline applies the binlog source's defaults to what data leaves
// unset (decode has already reported any error in it).
func mysqlPipeline(data []byte, p *Pipeline) {
	var given struct {
		Pipeline struct {
			QueueSize      *int    `yaml:"queue_size"`
			MaxBatchEvents *int    `yaml:"max_batch_events"`
			FlushInterval  *string `yaml:"flush_interval"`
		} `yaml:"pipeline"`
	}
	_ = yaml.Unmarshal(data, &given)
	if given.Pipeline.QueueSize == nil {
		p.QueueSize = MySQLQueueSize
	}
	if given.Pipeline.MaxBatchEvents == nil {
		p.MaxBatchEvents = MySQLMaxBatchEvents
	}
	if given.Pipeline.FlushInterval == nil {
		p.FlushInterval = MySQLFlushInterval
	}
}

// decode overlays the YAML document in data onto cfg.
//
// It decodes twice: a strict pass whose only job is to report unknown keys
// and type errors with their lines and key paths (withKeyPaths), then a
// pass from a node tree with null-valued keys removed, so that "key:" with
// nothing after it keeps the default instead of zeroing a whole section.
// yaml.v3 offers strictness only on its Decoder and pruning only on nodes,
// hence the two passes.
func decode(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var scratch Config
	var typeErr *yaml.TypeError
	switch err := dec.Decode(&scratch); {
	case errors.Is(err, io.EOF):
		return nil // empty file or only comments
	case errors.As(err, &typeErr):
		return withKeyPaths(data, typeErr)
	case err != nil:
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document; riskwatch.yaml must hold exactly one")
	}

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil
	}
	root := doc.Content[0]
	pruneNulls(root)
	return root.Decode(cfg)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// pruneNulls removes mapping entries whose value is null, at every depth.
// Sequence items are left alone: a null list entry is a mistake that
// validation should report rather than hide.
func pruneNulls(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if isNull(n.Content[i+1]) {
				continue
			}
			pruneNulls(n.Content[i+1])
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			pruneNulls(c)
		}
	}
}

// prefixEach puts name in front of every line of a joined error so each
// reported problem names the file on its own, while errors.Is/As still see
// the original errors.
func prefixEach(name string, err error) error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		errs := joined.Unwrap()
		out := make([]error, 0, len(errs))
		for _, e := range errs {
			out = append(out, fmt.Errorf("%s: %w", name, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", name, err)
}
