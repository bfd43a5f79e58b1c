package config

import (
	"errors"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify/httptemplate"
)

// TemplateSpec is a template receiver's request as httptemplate takes it.
func (r Receiver) TemplateSpec() httptemplate.Spec {
	return httptemplate.Spec{Method: r.Method, URL: r.URL, Headers: r.Headers, Body: r.Body}
}

// validateTemplate parses a template receiver's templates and runs them on
// sample notifications, reporting each problem under its own field
// (notify.receivers[2].body: …), so that a broken template stops the start
// rather than the first page.
func (c *Config) validateTemplate(p *problems, field string, r Receiver) {
	loc := c.Location
	if loc == nil {
		loc = time.UTC // business_timezone reports its own problem
	}
	_, err := httptemplate.Parse(r.TemplateSpec(), loc)
	if err == nil {
		return
	}
	var joined interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		var fe *httptemplate.FieldError
		if errors.As(e, &fe) {
			p.add(field+"."+fe.Field, "%v", fe.Err)
		} else {
			p.add(field, "%v", e)
		}
	}
}

// retentionKeys are the sink's retention settings besides the minutes'.
func (c *Config) retentionKeys() []struct {
	field string
	d     Duration
} {
	return []struct {
		field string
		d     Duration
	}{
		{"retention_alerts", c.RetentionAlerts}, {"retention_evaluations", c.RetentionEvaluations},
		{"retention_deliveries", c.RetentionDeliveries}, {"retention_dead_letters", c.RetentionDeadLetters},
		{"retention_audit", c.RetentionAudit}, {"retention_hours", c.RetentionHours}, {"retention_days", c.RetentionDays},
	}
}

func (c *Config) validateRetention(p *problems) {
	for _, k := range c.retentionKeys() {
		if k.d != 0 && k.d < Duration(time.Hour) {
			p.add(k.field, "must be 0 (keep for ever) or at least 1h, got %s", k.d)
		}
	}
	// A re-fire within repeat_interval continues the alert it follows
	// (SPEC §7a); a restart finds that alert in the sink, so it must still
	// be there.
	if c.RetentionAlerts >= Duration(time.Hour) && c.RetentionAlerts < c.Alerts.RepeatInterval {
		p.add("retention_alerts", "must be 0 or at least alerts.repeat_interval (%s): a re-fire within it continues the resolved alert, got %s",
			c.Alerts.RepeatInterval, c.RetentionAlerts)
	}
	// The rules restore their 7-day baselines from the rollups, and the
	// dashboard shows the minutes' range from them too.
	floor := max(c.Retention, Duration(RollupFloor))
	for _, k := range []struct {
		field string
		d     Duration
	}{{"retention_hours", c.RetentionHours}, {"retention_days", c.RetentionDays}} {
		if k.d != 0 && k.d < floor {
			p.add(k.field, "must be 0 (keep for ever) or at least retention and the rules' 8 days (%s), got %s", floor, k.d)
		}
	}
}

// RollupFloor is the least rollup retention: the rules read 7 days and an
// hour back, and a day of margin covers late events and the business day.
const RollupFloor = 9 * 24 * time.Hour
