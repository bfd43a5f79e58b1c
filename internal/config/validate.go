package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

var (
	// Slot and publication names go into replication protocol commands,
	// which take no bind parameters and which pglogrepl builds without
	// quoting, so only names PostgreSQL accepts unquoted (within
	// NAMEDATALEN) are safe.
	slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	// The sink schema is created by riskwatch; keeping it a plain lowercase
	// identifier avoids case-folding surprises when operators query it.
	schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// problems collects validation failures as "<field path>: <problem>".
type problems []error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// Validate checks every field and returns ALL problems joined (errors.Join),
// each formatted "<field path>: <problem>", so an operator fixes the file in
// one round instead of one restart per mistake.
func (c *Config) Validate() error {
	var p problems

	c.validateSource(&p)
	c.validateSink(&p)

	_, tzErr := time.LoadLocation(c.BusinessTimezone)
	switch {
	case c.BusinessTimezone == "":
		p.add("business_timezone", "required (an IANA name such as %q)", defaultTimezone)
	case tzErr != nil:
		p.add("business_timezone", "unknown time zone %q (use an IANA name such as %q)", c.BusinessTimezone, defaultTimezone)
	case c.Location == nil:
		// Day buckets are computed in Location; nil would panic later.
		p.add("business_timezone", "Location not loaded; build the config with Load or Default")
	case c.Location.String() != c.BusinessTimezone:
		p.add("business_timezone", "is %q but Location is %q; they must agree", c.BusinessTimezone, c.Location.String())
	}

	if c.Retention < Duration(time.Hour) {
		p.add("retention", "must be at least 1h, got %s", c.Retention)
	}
	c.validateRetention(&p)
	if c.Grace < 0 || c.Grace >= Duration(time.Minute) {
		p.add("grace", "must be at least 0s and less than 1m, got %s", c.Grace)
	}
	positive(&p, "max_future", c.MaxFuture)
	if c.MaxAmount < 1 || c.MaxAmount > maxMaxAmount {
		p.add("max_amount", "must be from 1 to %d, got %d", int64(maxMaxAmount), c.MaxAmount)
	}

	validateListen(&p, "http.listen", c.HTTP.Listen)
	atLeast(&p, "http.max_streams", c.HTTP.MaxStreams, 1)

	c.validateMapping(&p)

	positive(&p, "pipeline.flush_interval", c.Pipeline.FlushInterval)
	positiveInt(&p, "pipeline.max_batch_events", c.Pipeline.MaxBatchEvents)
	positiveInt(&p, "pipeline.queue_size", c.Pipeline.QueueSize)
	atLeast(&p, "pipeline.stuck_after", c.Pipeline.StuckAfter, 1)
	if c.Pipeline.StuckNotifyAfter < 0 {
		p.add("pipeline.stuck_notify_after", "must not be negative, got %s", c.Pipeline.StuckNotifyAfter)
	}

	c.validateRules(&p)
	c.validateNotify(&p)
	c.validateStandby(&p)

	oneOf(&p, "log.level", c.Log.Level, logLevels)
	oneOf(&p, "log.format", c.Log.Format, logFormats)

	return errors.Join(p...)
}

func (c *Config) validateStandby(p *problems) {
	s := c.Standby
	positive(p, "standby.renew", s.Renew)
	switch {
	case s.Lease <= 0:
		positive(p, "standby.lease", s.Lease)
	case s.Renew > 0 && s.Lease < 2*s.Renew:
		// One renewal may fail without losing the lease, and the active
		// process has a renew interval to stop before the lease expires.
		p.add("standby.lease", "must be at least twice standby.renew (%s), got %s", s.Renew, s.Lease)
	}
	if len(s.ID) > 200 {
		p.add("standby.id", "must be at most 200 bytes, got %d", len(s.ID))
	}
}

func (c *Config) validateSource(p *problems) {
	s := c.Source
	switch {
	case s.DSN == "":
		p.add("source.dsn", "required (set it in the file or %s)", EnvSourceDSN)
	case s.IsMySQL():
		if msg := checkMySQLDSN(s.DSN); msg != "" {
			p.add("source.dsn", "%s", msg)
		}
		if s.MinuteDelivery() {
			p.add("source.delivery", "%q is for PostgreSQL sources; a MySQL source always streams", s.Delivery)
		}
	default:
		if msg := checkDSN(s.DSN); msg != "" {
			p.add("source.dsn", "%s", msg)
		}
	}
	if s.TimeLocation == nil {
		p.add("source.time_zone", "unknown time zone %q (want an IANA name such as UTC or Asia/Seoul)", s.TimeZone)
	}
	if !slotNameRE.MatchString(s.Slot) {
		p.add("source.slot", "must match %s, got %q", slotNameRE, s.Slot)
	}
	if !slotNameRE.MatchString(s.Publication) {
		p.add("source.publication", "must match %s, got %q", slotNameRE, s.Publication)
	}
	oneOf(p, "source.delivery", s.Delivery, []string{DeliveryStream, DeliveryMinute})
	positive(p, "source.heartbeat_interval", s.HeartbeatInterval)
	positive(p, "source.status_interval", s.StatusInterval)
	positive(p, "source.reconnect_min", s.ReconnectMin)
	positive(p, "source.reconnect_max", s.ReconnectMax)
	if s.ReconnectMin > 0 && s.ReconnectMax > 0 && s.ReconnectMax < s.ReconnectMin {
		p.add("source.reconnect_max", "must be at least source.reconnect_min (%s), got %s", s.ReconnectMin, s.ReconnectMax)
	}
}

func (c *Config) validateSink(p *problems) {
	switch {
	case c.Sink.DSN == c.Source.DSN:
		// Either both are empty, which the source.dsn error already
		// explains, or this is the single-server setup, whose string
		// source.dsn already checked; saying it twice adds nothing.
	case c.Sink.DSN != "":
		if msg := checkDSN(c.Sink.DSN); msg != "" {
			p.add("sink.dsn", "%s", msg)
		}
	case c.Source.IsMySQL():
		p.add("sink.dsn", "required with a MySQL source: the sink is PostgreSQL (set it or %s)", EnvSinkDSN)
	case c.Source.DSN != "":
		// Load copies source.dsn here; only a hand-built config gets this far.
		p.add("sink.dsn", "required (set it, %s, or source.dsn)", EnvSinkDSN)
	}
	if strings.HasPrefix(c.Sink.DSN, "mysql://") {
		p.add("sink.dsn", "the sink must be PostgreSQL, not MySQL")
	}

	if !schemaNameRE.MatchString(c.Sink.Schema) {
		p.add("sink.schema", "must match %s, got %q", schemaNameRE, c.Sink.Schema)
	}
}

func (c *Config) validateMapping(p *problems) {
	if len(c.Mapping) == 0 {
		// Load substitutes DefaultMapping; a hand-built config must not
		// silently watch nothing.
		p.add("mapping", "at least one table mapping is required")
		return
	}
	type seen struct {
		index    int
		filtered bool
	}
	byTable := map[string][]seen{}
	for i, m := range c.Mapping {
		f := fmt.Sprintf("mapping[%d]", i)
		tableOK := identifier(p, f+".table", m.Table)
		if tableOK {
			if s, t := m.SchemaTable(); s == "" || t == "" {
				p.add(f+".table", "must be \"schema.table\" or \"table\", got %q", m.Table)
				tableOK = false
			}
		}
		switch m.Kind {
		case KindApproval, KindCancel:
		case "":
			p.add(f+".kind", "required (%q or %q)", KindApproval, KindCancel)
		default:
			p.add(f+".kind", "must be %q or %q, got %q", KindApproval, KindCancel, m.Kind)
		}
		identifier(p, f+".merchant", m.Merchant)
		identifier(p, f+".amount", m.Amount)
		identifier(p, f+".time", m.Time)
		if m.Filter != nil {
			identifier(p, f+".filter.column", m.Filter.Column)
			if len(m.Filter.In) == 0 {
				p.add(f+".filter.in", "must list at least one value")
			}
			for j, v := range m.Filter.In {
				if strings.ContainsRune(v, 0) {
					p.add(fmt.Sprintf("%s.filter.in[%d]", f, j), "must not contain a NUL byte")
				}
			}
		}
		if !tableOK {
			continue
		}

		// A row of a table mapped twice would be counted by both mappings
		// unless filters split the rows between them.
		s, t := m.SchemaTable()
		key := s + "." + t
		earlier := byTable[key]
		byTable[key] = append(earlier, seen{index: i, filtered: m.Filter != nil})
		if len(earlier) == 0 {
			continue
		}
		allFiltered := m.Filter != nil
		for _, e := range earlier {
			allFiltered = allFiltered && e.filtered
		}
		if !allFiltered {
			p.add(f, "table %s is mapped more than once; each mapping of it needs a filter", key)
			continue
		}
		// Filters on different columns may or may not overlap, which only
		// the data can tell; on the same column an overlap is certain.
		for _, e := range earlier {
			prev := c.Mapping[e.index].Filter
			if prev.Column != m.Filter.Column {
				continue
			}
			for _, v := range m.Filter.In {
				if slices.Contains(prev.In, v) {
					p.add(f+".filter.in", "value %q is also selected by mapping[%d] on table %s; such rows would be counted twice", v, e.index, key)
				}
			}
		}
	}
}

// identifier checks a column or table name. Names are quoted by the SQL
// code, never spliced, so anything non-empty is acceptable except NUL,
// which PostgreSQL cannot store in a name.
func identifier(p *problems, field, v string) bool {
	switch {
	case v == "":
		p.add(field, "required")
		return false
	case strings.ContainsRune(v, 0):
		p.add(field, "must not contain a NUL byte")
		return false
	}
	return true
}

func positive(p *problems, field string, d Duration) {
	if d <= 0 {
		p.add(field, "must be greater than 0s, got %s", d)
	}
}

func httpURL(p *problems, field, u string) {
	if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		p.add(field, "must be an absolute http(s) URL, got %q", u)
	}
}

func atLeast[T int | int64](p *problems, field string, v, lo T) {
	if v < lo {
		p.add(field, "must be at least %d, got %d", lo, v)
	}
}

func positiveInt[T int | int64](p *problems, field string, v T) {
	if v <= 0 {
		p.add(field, "must be greater than 0, got %d", v)
	}
}

func oneOf(p *problems, field, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		p.add(field, "must be one of %s, got %q", strings.Join(allowed, "|"), v)
	}
}

func validateListen(p *problems, field, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(field, "must be host:port such as \"127.0.0.1:8080\" or \":8080\", got %q", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.add(field, "port must be a number from 0 to 65535, got %q", port)
	}
}

// checkDSN returns why dsn cannot be parsed, or "" when it can.
//
// pgconn's own error text echoes the connection string with passwords
// masked only on a best-effort basis, so the DSN is never echoed here and
// the remaining detail is dropped if it still contains any piece of a
// password.
// checkMySQLDSN checks mysql://USER:PASSWORD@HOST:PORT/DATABASE without
// echoing the password.
func checkMySQLDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "cannot parse connection string (want mysql://USER:PASSWORD@HOST:PORT/DATABASE)"
	}
	switch {
	case u.User.Username() == "":
		return "a mysql:// DSN needs a user: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
	case u.Hostname() == "":
		return "a mysql:// DSN needs a host: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
	case strings.Trim(u.Path, "/") == "" || strings.Contains(strings.Trim(u.Path, "/"), "/"):
		return "a mysql:// DSN needs one database: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("port %q is not 1..65535", p)
		}
	}
	return ""
}

func checkDSN(dsn string) string {
	_, err := pgconn.ParseConfig(dsn)
	if err == nil {
		return ""
	}
	detail := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// Re-render the error without its connection string; the message
		// and cause are what the operator needs, and the DSN is in the file.
		bare := *pe
		bare.ConnString = ""
		detail = strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	}
	detail = strings.ReplaceAll(detail, dsn, RedactDSN(dsn))
	for _, secret := range dsnSecrets(dsn) {
		if leaks(detail, secret) {
			return "cannot parse connection string (details withheld because they would reveal the password)"
		}
	}
	return "cannot parse connection string: " + detail
}

// leaks reports whether msg contains secret or any whitespace-separated
// piece of it; a malformed password can be split by the parser and echoed
// in parts.
func leaks(msg, secret string) bool {
	if secret == "" {
		return false
	}
	if strings.Contains(msg, secret) {
		return true
	}
	for _, piece := range strings.Fields(secret) {
		if strings.Contains(msg, piece) {
			return true
		}
	}
	return false
}

var (
	receiverTypes  = []string{"webhook", "slack", "pagerduty", "alertmanager", "template", "log"}
	ruleNames      = []string{"cancel_rate_spike", "volume_drop"}
	receiverNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)
)

func fraction(p *problems, field string, v, lo float64, loOpen bool, hi float64) {
	if v < lo || (loOpen && v == lo) || v > hi || v != v {
		open := "["
		if loOpen {
			open = "("
		}
		p.add(field, "must be in %s%g, %g], got %g", open, lo, hi, v)
	}
}

func (c *Config) validateRules(p *problems) {
	cr := c.Rules.CancelRateSpike
	atLeast(p, "rules.cancel_rate_spike.min_baseline_approvals", cr.MinBaselineApprovals, 0)
	fraction(p, "rules.cancel_rate_spike.baseline_floor", cr.BaselineFloor, 0, false, 1)
	atLeast(p, "rules.cancel_rate_spike.min_cancels", cr.MinCancels, 1)
	fraction(p, "rules.cancel_rate_spike.multiplier", cr.Multiplier, 0, true, 1000)
	atLeast(p, "rules.cancel_rate_spike.min_approvals", cr.MinApprovals, 0)
	vd := c.Rules.VolumeDrop
	positiveInt(p, "rules.volume_drop.large_daily_amount", vd.LargeDailyAmount)
	fraction(p, "rules.volume_drop.min_expected_fraction", vd.MinExpectedFraction, 0, false, 1)
	fraction(p, "rules.volume_drop.drop_ratio", vd.DropRatio, 0, true, 1)
	if w := c.Rules.ExposureWindow.D(); w < time.Minute || w > 7*24*time.Hour || w%time.Minute != 0 {
		p.add("rules.exposure_window", "must be whole minutes from 1m to 168h (the 7 days the rules state holds), got %s", c.Rules.ExposureWindow)
	}
	pr := c.Rules.Priority
	fraction(p, "rules.priority.cancel_dispersion", pr.CancelDispersion, 0, false, 10)
	fraction(p, "rules.priority.cancel_batch_weight", pr.CancelBatchWeight, 0, false, 1)
	fraction(p, "rules.priority.cancel_today_weight", pr.CancelTodayWeight, 0, false, 1)
	fraction(p, "rules.priority.volume_min_spread", pr.VolumeMinSpread, 0, false, 1)
	for _, e := range []struct {
		field string
		v     float64
	}{{"cancel_p1_evidence", pr.CancelP1Evidence}, {"cancel_p2_evidence", pr.CancelP2Evidence}, {"volume_p1_evidence", pr.VolumeP1Evidence}, {"volume_p2_evidence", pr.VolumeP2Evidence}} {
		fraction(p, "rules.priority."+e.field, e.v, 0, false, 300)
	}
	if pr.CancelP2Evidence > pr.CancelP1Evidence {
		p.add("rules.priority.cancel_p2_evidence", "must be at most cancel_p1_evidence (%g), got %g", pr.CancelP1Evidence, pr.CancelP2Evidence)
	}
	if pr.VolumeP2Evidence > pr.VolumeP1Evidence {
		p.add("rules.priority.volume_p2_evidence", "must be at most volume_p1_evidence (%g), got %g", pr.VolumeP1Evidence, pr.VolumeP2Evidence)
	}
	atLeast(p, "rules.priority.p1_min_exposure", pr.P1MinExposure, 0)
	positive(p, "alerts.repeat_interval", c.Alerts.RepeatInterval)
	atLeast(p, "alerts.resolve_after", c.Alerts.ResolveAfter, 1)
	for _, a := range []struct {
		field string
		c     Credentials
	}{{"http.auth.read", c.HTTP.Auth.Read}, {"http.auth.operator", c.HTTP.Auth.Operator}} {
		if (a.c.Username == "") != (a.c.Password == "") {
			p.add(a.field, "username and password go together (HTTP Basic); set both or neither")
		}
		if strings.Contains(a.c.Username, ":") {
			p.add(a.field+".username", "must not contain ':' (HTTP Basic separates it from the password with one)")
		}
	}
	if c.HTTP.Auth.Operator.Configured() && !c.HTTP.Auth.Read.Configured() {
		p.add("http.auth.read", "must be set when http.auth.operator is: otherwise anyone could read what only operators may act on")
	}
	c.HTTP.Auth.Proxy.validate(p)
	if mn := c.MerchantNames; mn.Table != "" {
		if mn.ID == "" {
			p.add("merchant_names.id", "is required when merchant_names.table is set")
		}
		if mn.Name == "" {
			p.add("merchant_names.name", "is required when merchant_names.table is set")
		}
		positive(p, "merchant_names.refresh", mn.Refresh)
		positive(p, "merchant_names.full_refresh", mn.FullRefresh)
	}
	if u := c.HTTP.ExternalURL; u != "" {
		httpURL(p, "http.external_url", u)
	}
}

func (c *Config) validateNotify(p *problems) {
	positive(p, "notify.backoff_min", c.Notify.BackoffMin)
	positive(p, "notify.backoff_max", c.Notify.BackoffMax)
	if c.Notify.BackoffMax < c.Notify.BackoffMin {
		p.add("notify.backoff_max", "must be at least notify.backoff_min (%s), got %s", c.Notify.BackoffMin, c.Notify.BackoffMax)
	}
	seen := map[string]bool{}
	for i, r := range c.Notify.Receivers {
		f := fmt.Sprintf("notify.receivers[%d]", i)
		if !receiverNameRE.MatchString(r.Name) {
			p.add(f+".name", "must match %s, got %q", receiverNameRE, r.Name)
		} else if seen[r.Name] {
			p.add(f+".name", "%q is used by another receiver", r.Name)
		}
		seen[r.Name] = true
		oneOf(p, f+".type", r.Type, receiverTypes)
		switch r.Type {
		case "webhook", "slack", "alertmanager":
			httpURL(p, f+".url", r.URL)
		case "pagerduty":
			if r.RoutingKey == "" {
				p.add(f+".routing_key", "required for pagerduty")
			}
			if r.URL != "" {
				httpURL(p, f+".url", r.URL)
			}
		case "template":
			c.validateTemplate(p, f, r)
		}
		if r.Type != "webhook" && r.Type != "template" && len(r.Headers) > 0 {
			p.add(f+".headers", "only webhook and template receivers take headers")
		}
		if r.Type != "template" && r.Method != "" {
			p.add(f+".method", "only template receivers take a method")
		}
		if r.Type != "template" && r.Body != "" {
			p.add(f+".body", "only template receivers take a body")
		}
		if r.Timeout < 0 {
			p.add(f+".timeout", "must not be negative, got %s", r.Timeout)
		}
		for j, rule := range r.Rules {
			oneOf(p, fmt.Sprintf("%s.rules[%d]", f, j), rule, ruleNames)
		}
		if r.MinPriority != "" {
			oneOf(p, f+".min_priority", r.MinPriority, []string{"P1", "P2", "P3"})
		}
	}
}

// ValidateKafka checks the kafka section, which only capture and worker
// need; each problem names its field.
func (c *Config) ValidateKafka() error {
	var p problems
	k := c.Kafka
	if c.Source.MinuteDelivery() {
		// Capture exists for rates one node cannot take, where streaming
		// costs the source least per change anyway.
		p.add("source.delivery", "must be %q for capture and worker (%q is for riskwatch run)", DeliveryStream, DeliveryMinute)
	}
	if len(k.Brokers) == 0 {
		p.add("kafka.brokers", "required: at least one host:port")
	}
	for i, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			p.add(fmt.Sprintf("kafka.brokers[%d]", i), "must be host:port, got %q", b)
		}
	}
	if k.Topic == "" {
		p.add("kafka.topic", "required")
	}
	positiveInt(&p, "kafka.partitions", k.Partitions)
	if k.ReplicationFactor == 0 || k.ReplicationFactor < -1 {
		p.add("kafka.replication_factor", "must be -1 (the broker's default) or at least 1, got %d", k.ReplicationFactor)
	}
	if k.Group == "" {
		p.add("kafka.group", "required")
	}
	oneOf(&p, "kafka.input", k.Input, []string{InputCapture, InputDebezium, InputMaxwell})
	if k.Input == InputDebezium && len(k.Topics) == 0 {
		p.add("kafka.topics", "required with input debezium: the connector's per-table topics")
	}
	if k.Input == InputMaxwell && len(k.Topics) == 0 {
		p.add("kafka.topics", "required with input maxwell: the topics Maxwell writes (kafka_topic)")
	}
	if k.WatermarkInterval <= 0 || k.WatermarkInterval > Duration(time.Second) {
		p.add("kafka.watermark_interval", "must be more than 0s and at most 1s, got %s", k.WatermarkInterval)
	}
	positive(&p, "kafka.idle_after", k.IdleAfter)
	if k.SessionTimeout < Duration(100*time.Millisecond) {
		p.add("kafka.session_timeout", "must be at least 100ms, got %s", k.SessionTimeout)
	}
	return errors.Join(p...)
}

// KafkaTopics are the topics workers consume.
func (c *Config) KafkaTopics() []string {
	if c.Kafka.Input != InputCapture {
		return c.Kafka.Topics
	}
	return []string{c.Kafka.Topic}
}

// headerNameRE is an HTTP field name (RFC 9110's token).
var headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

func (px Proxy) validate(p *problems) {
	const f = "http.auth.proxy"
	if !px.Enabled {
		return
	}
	if !headerNameRE.MatchString(px.Header) {
		p.add(f+".header", "must be an HTTP header name such as %q, got %q", DefaultProxyHeader, px.Header)
	}
	if px.EmailHeader != "" && !headerNameRE.MatchString(px.EmailHeader) {
		p.add(f+".email_header", "must be an HTTP header name such as %q (or empty), got %q", DefaultProxyEmailHeader, px.EmailHeader)
	}
	if px.EmailHeader != "" && strings.EqualFold(px.Header, px.EmailHeader) {
		p.add(f+".email_header", "must differ from http.auth.proxy.header (%q)", px.Header)
	}
	if len(px.Trusted) == 0 {
		p.add(f+".trusted", "required when the proxy is enabled: the addresses the proxy connects from (IPs or CIDRs); from anywhere else the header is ignored")
	}
	for i, t := range px.Trusted {
		if _, err := parseTrusted(t); err != nil {
			p.add(fmt.Sprintf("%s.trusted[%d]", f, i), "%v", err)
		}
	}
	for i, o := range px.Operators {
		if strings.TrimSpace(o) == "" {
			p.add(fmt.Sprintf("%s.operators[%d]", f, i), "must not be empty")
		}
	}
}

// ParseTrusted reads proxy addresses: IPs ("10.0.0.5", "::1") or CIDRs
// ("10.0.0.0/8"), each as a prefix.
func ParseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		pr, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("http.auth.proxy.trusted[%d]: %w", i, err)
		}
		out = append(out, pr)
	}
	return out, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if pr, err := netip.ParsePrefix(s); err == nil {
		if pr.Addr().Is4In6() {
			pr = netip.PrefixFrom(pr.Addr().Unmap(), max(pr.Bits()-96, 0))
		}
		return pr.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("want an IP address or CIDR such as 10.0.0.5 or 10.0.0.0/24, got %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
