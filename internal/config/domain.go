package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/rules"
)

// The configuration's conversions into the values the pure packages take:
// event and rules do no I/O and import no configuration, so the
// conversion lives here, beside the fields it reads.

// RuleParams converts the thresholds of SPEC §5 and §6 exactly from the
// decimals as written, with the priority settings and exposure window of
// SPEC §7a.
func (c *Config) RuleParams() (rules.Params, error) {
	cr, v := c.Rules.CancelRateSpike, c.Rules.VolumeDrop
	pr := c.Rules.Priority
	p := rules.Params{
		Cancel: rules.CancelRateParams{MinBaselineApprovals: cr.MinBaselineApprovals, MinCancels: cr.MinCancels, MinApprovals: cr.MinApprovals},
		Volume: rules.VolumeDropParams{LargeDailyAmount: v.LargeDailyAmount},
		Priority: rules.PriorityParams{CancelDispersion: pr.CancelDispersion, CancelBatchWeight: pr.CancelBatchWeight, CancelTodayWeight: pr.CancelTodayWeight, VolumeMinSpread: pr.VolumeMinSpread,
			CancelP1Evidence: pr.CancelP1Evidence, CancelP2Evidence: pr.CancelP2Evidence,
			VolumeP1Evidence: pr.VolumeP1Evidence, VolumeP2Evidence: pr.VolumeP2Evidence, P1MinExposure: pr.P1MinExposure},
		ExposureMinutes: int(c.Rules.ExposureWindow.D() / time.Minute),
	}
	for _, f := range []struct {
		field string
		v     float64
		dst   *rules.Ratio
	}{
		{"rules.cancel_rate_spike.baseline_floor", cr.BaselineFloor, &p.Cancel.BaselineFloor},
		{"rules.cancel_rate_spike.multiplier", cr.Multiplier, &p.Cancel.Multiplier},
		{"rules.volume_drop.min_expected_fraction", v.MinExpectedFraction, &p.Volume.MinExpectedFraction},
		{"rules.volume_drop.drop_ratio", v.DropRatio, &p.Volume.DropRatio},
	} {
		r, err := rules.RatioFromFloat(f.v)
		if err != nil {
			return p, fmt.Errorf("%s: %w", f.field, err)
		}
		*f.dst = r
	}
	return p, nil
}

// EventMapping is the configured mapping of source tables to events, with
// the limits events are validated against.
func (c *Config) EventMapping() (*event.Mapping, error) {
	specs := make([]event.Spec, 0, len(c.Mapping))
	for i, t := range c.Mapping {
		kind, err := event.ParseKind(t.Kind)
		if err != nil {
			return nil, fmt.Errorf("mapping[%d].kind: %w", i, err)
		}
		schema, table := t.SchemaTable()
		if c.Source.IsMySQL() && (schema == "public" || !strings.Contains(t.Table, ".")) {
			// MySQL has databases, not schemas: an unqualified table (and
			// the default mapping's public.) is in the DSN's database.
			schema = mysqlDatabase(c.Source.DSN)
		}
		sp := event.Spec{Schema: schema, Table: table, Kind: kind, Merchant: t.Merchant, Amount: t.Amount, Time: t.Time}
		if t.Filter != nil {
			sp.FilterColumn, sp.FilterIn = t.Filter.Column, t.Filter.In
		}
		specs = append(specs, sp)
	}
	return event.NewMapping(specs, event.Limits{MaxFuture: c.MaxFuture.D(), Retention: c.Retention.D(), MaxAmount: c.MaxAmount})
}

// mysqlDatabase is the database a mysql:// DSN names.
func mysqlDatabase(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	return strings.Trim(u.Path, "/")
}
