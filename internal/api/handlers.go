package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// maxPoints bounds one series answer (8 days of minutes is 11,520).
const maxPoints = 20000

type statusJSON struct {
	Now              time.Time  `json:"now"`
	BusinessTimezone string     `json:"business_timezone"`
	Ready            bool       `json:"ready"`
	LastClosedMinute *time.Time `json:"last_closed_minute"`
	LagBytes         int64      `json:"lag_bytes"`
	LagSeconds       float64    `json:"lag_seconds"`
	Delivery         string     `json:"delivery"`
	EventsPerSecond  float64    `json:"events_per_second"`
	Version          string     `json:"version"`
	RetentionSeconds int64      `json:"retention_seconds"`
	CanAck           bool       `json:"can_ack"`
	// Identity is who the caller is when known (a proxy's user or a
	// Basic username), which an operator action records.
	Identity *identityJSON  `json:"identity"`
	Rules    map[string]any `json:"rules"`
	Stuck    *stuckJSON     `json:"stuck"`
	// Role is "active" or "standby" for riskwatch run (absent for a
	// Kafka worker), Lease the lease as this process last saw it.
	Role  string     `json:"role,omitempty"`
	Lease *leaseJSON `json:"lease,omitempty"`
}

// leaseJSON is lease.Info: who holds the lease of run processes sharing
// the sink.
type leaseJSON struct {
	Holder    string     `json:"holder"`
	Epoch     int64      `json:"epoch"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// stuckJSON is engine.Stuck: the same failure at the same position over
// and over.
type stuckJSON struct {
	Since    time.Time `json:"since"`
	Failures int       `json:"failures"`
	Error    string    `json:"error"`
	Position string    `json:"position"`
}

// status is the pipeline's status as the caller sees it.
func (s *Server) status(caller principal) statusJSON {
	st := s.opts.Engine.Status()
	cfg := s.opts.Config
	c, v := cfg.Rules.CancelRateSpike, cfg.Rules.VolumeDrop
	out := statusJSON{
		Now: s.now().UTC(), BusinessTimezone: cfg.Location.String(), Ready: st.Ready,
		LagBytes: st.LagBytes, LagSeconds: st.LagSeconds, Delivery: cfg.Source.Delivery, EventsPerSecond: st.EventsPerSecond,
		Version: s.opts.Version, RetentionSeconds: int64(cfg.Retention.D().Seconds()), CanAck: caller.level >= levelOperator, Identity: identityOf(caller),
		Rules: map[string]any{
			rules.CancelRateSpike: map[string]any{"multiplier": c.Multiplier, "baseline_floor": c.BaselineFloor, "min_cancels": c.MinCancels,
				"min_approvals": c.MinApprovals, "min_baseline_approvals": c.MinBaselineApprovals},
			rules.VolumeDrop: map[string]any{"large_daily_amount": v.LargeDailyAmount, "min_expected_fraction": v.MinExpectedFraction, "drop_ratio": v.DropRatio},
		},
	}
	if st.LastClosed != 0 {
		t := st.LastClosed.Start()
		out.LastClosedMinute = &t
	}
	if k := st.Stuck; k != nil {
		out.Stuck = &stuckJSON{Since: k.Since.UTC(), Failures: k.Failures, Error: k.Error, Position: k.Position}
	}
	if s.opts.Lease != nil {
		li := s.opts.Lease.Info()
		out.Role, out.Lease = li.Role, &leaseJSON{Holder: li.Holder, Epoch: li.Epoch}
		if !li.ExpiresAt.IsZero() {
			t := li.ExpiresAt.UTC()
			out.Lease.ExpiresAt = &t
		}
	}
	return out
}

func (s *Server) handleStatus(r *http.Request) (any, error) {
	return s.status(principalOf(r.Context())), nil
}

// lastClosed is the newest closed minute, or the minute before now when
// nothing closed yet (a fresh engine still bootstrapping).
func (s *Server) lastClosed() window.Minute {
	if m := s.opts.Engine.Status().LastClosed; m != 0 {
		return m
	}
	return window.MinuteOf(s.now()) - 1
}

// parseTime reads an RFC 3339 time, or a wall-clock "2006-01-02T15:04" (as
// an HTML datetime-local input gives it) in the business time zone.
func (s *Server) parseTime(q url.Values, name string) (time.Time, bool, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, false, nil
	}
	// An RFC 3339 time carries its offset, which ParseInLocation keeps.
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		t, err := time.ParseInLocation(layout, v, s.opts.Config.Location)
		if err != nil {
			continue
		}
		// Nothing stored predates Unix time, and a floor there keeps the
		// bounds derived from t (a default range's start, a week before)
		// far from year 0, which PostgreSQL's dates do not have.
		if t.Before(time.Unix(0, 0)) || t.UTC().Year() > 9999 {
			return time.Time{}, false, badf("%s: want a time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z, got %q", name, v)
		}
		return t.UTC(), true, nil
	}
	return time.Time{}, false, badf("%s: want an RFC 3339 time (2026-11-25T09:00:00+09:00) or a business-time-zone 2026-11-25T09:00, got %q", name, v)
}

func parseLimit(q url.Values, def, hi int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > hi {
		return 0, badf("limit: want an integer from 1 to %d, got %q", hi, v)
	}
	return n, nil
}

// parseID reads a merchant or alert id. Both start at 1: the engine refuses
// merchant ids below 1, alert ids come from a sequence, and the store
// reads a 0 in a filter as "any".
func parseID(v, what string) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, badf("%s: want a positive integer id, got %q", what, v)
	}
	return id, nil
}

type pointsJSON struct {
	T              []int64 `json:"t"`
	Approvals      []int64 `json:"approvals"`
	ApprovedAmount []int64 `json:"approved_amount"`
	Cancels        []int64 `json:"cancels"`
	CanceledAmount []int64 `json:"canceled_amount"`
}

func newPoints(n int) pointsJSON {
	return pointsJSON{T: make([]int64, n), Approvals: make([]int64, n), ApprovedAmount: make([]int64, n),
		Cancels: make([]int64, n), CanceledAmount: make([]int64, n)}
}

func (p *pointsJSON) set(i int, a window.Agg) {
	p.Approvals[i], p.ApprovedAmount[i], p.Cancels[i], p.CanceledAmount[i] = a.Approvals, a.ApprovedAmount, a.Cancels, a.CanceledAmount
}

func (s *Server) handlePlatform(r *http.Request) (any, error) {
	q := r.URL.Query()
	last := s.lastClosed()
	from, to, err := s.minuteRange(q, last, 3*time.Hour)
	if err != nil {
		return nil, err
	}
	pts, err := s.dash.PlatformMinutes(r.Context(), from, to)
	if err != nil {
		return nil, err
	}
	out := newPoints(int(to - from))
	for i := range out.T {
		out.T[i] = (from + window.Minute(i)).Start().Unix()
	}
	for _, p := range pts {
		out.set(int(window.MinuteOf(p.At)-from), p.Agg)
	}
	return struct {
		From       time.Time `json:"from"`
		To         time.Time `json:"to"`
		Step       string    `json:"step"`
		LastClosed time.Time `json:"last_closed_minute"`
		pointsJSON
	}{From: from.Start(), To: to.Start(), Step: "1m", LastClosed: last.Start(), pointsJSON: out}, nil
}

// minuteRange reads from/to as whole minutes, ending by default (and at
// most) after the last closed minute, spanning at most the retention.
func (s *Server) minuteRange(q url.Values, last window.Minute, def time.Duration) (window.Minute, window.Minute, error) {
	to := last + 1
	if t, ok, err := s.parseTime(q, "to"); err != nil {
		return 0, 0, err
	} else if ok {
		to = min(window.MinuteOf(t.Add(time.Minute-time.Microsecond)), last+1)
	}
	from := to - window.Minute(def/time.Minute)
	if t, ok, err := s.parseTime(q, "from"); err != nil {
		return 0, 0, err
	} else if ok {
		from = window.MinuteOf(t)
	}
	if from >= to {
		return 0, 0, badf("from must be before to (and before the end of the last closed minute, %s)", (last + 1).Start().Format(time.RFC3339))
	}
	if span := time.Duration(to-from) * time.Minute; span > s.opts.Config.Retention.D() {
		return 0, 0, badf("from..to spans %s, more than the retention %s", span, s.opts.Config.Retention.D())
	}
	return from, to, nil
}

func (s *Server) handleSearch(r *http.Request) (any, error) {
	q := r.URL.Query()
	limit, err := parseLimit(q, 20, 200)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(q.Get("q"))
	if len(text) > 200 {
		return nil, badf("q: at most 200 characters")
	}
	id := int64(-1)
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		id = n
	}
	ms, err := s.dash.SearchMerchants(r.Context(), text, id, limit)
	if err != nil {
		return nil, err
	}
	type m struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	out := make([]m, 0, len(ms))
	for _, x := range ms {
		out = append(out, m{x.ID, x.Name})
	}
	// A number nobody has named is still a merchant the engine may know.
	if id > 0 && (len(ms) == 0 || ms[0].ID != id) {
		out = append([]m{{ID: id}}, out...)
		out = out[:min(len(out), limit)]
	}
	return map[string]any{"merchants": out}, nil
}

func (s *Server) names(r *http.Request, ids []int64) map[int64]string {
	names, err := s.dash.MerchantNames(r.Context(), ids)
	if err != nil {
		// Names are labels; a page without them is still useful.
		s.log.Warn("reading merchant names", "err", err)
		return map[int64]string{}
	}
	return names
}

type riskJSON struct {
	ID             int64    `json:"id"`
	Name           string   `json:"name"`
	AH             int64    `json:"a_h"`
	CH             int64    `json:"c_h"`
	RateH          *float64 `json:"rate_h"`
	Baseline       float64  `json:"baseline"`
	BaselineSource string   `json:"baseline_source"`
	Effective      float64  `json:"effective_baseline"`
	Ratio          *float64 `json:"ratio"`
	Score          float64  `json:"score"`
	Fires          bool     `json:"fires"`
	// Evidence (−log10 of the least alarming explanation's probability;
	// 0 below min_cancels, where it is not computed), the priority a
	// firing alert has, and the money at stake.
	Evidence       float64 `json:"evidence"`
	Priority       string  `json:"priority,omitempty"`
	CanceledAmount int64   `json:"canceled_amount_h"`
	Exposure       int64   `json:"exposure"`
}

type volumeJSON struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	DailyAvg float64  `json:"daily_avg"`
	Expected float64  `json:"expected"`
	Today    int64    `json:"today"`
	Drop     *float64 `json:"drop"`
	Fires    bool     `json:"fires"`
	// Evidence against the spread of the last 7 days' same-time amounts
	// (Spread), the priority a firing alert has, the money at stake.
	Evidence float64 `json:"evidence"`
	Spread   float64 `json:"spread"`
	Priority string  `json:"priority,omitempty"`
	Exposure int64   `json:"exposure"`
}

// rankingHandler serves one list of the ranking, each entry with its
// merchant's name.
func rankingHandler[T, J any](s *Server, list func(*rules.Ranking) []T, merchant func(T) int64, conv func(T, string) J) jsonHandler {
	return func(r *http.Request) (any, error) {
		limit, err := parseLimit(r.URL.Query(), 50, rules.RankLimit)
		if err != nil {
			return nil, err
		}
		rk := s.opts.Engine.Ranking()
		if rk == nil {
			return map[string]any{"as_of_minute": nil, "merchants": []any{}}, nil
		}
		l := list(rk)
		out := withNames(s, r, l[:min(limit, len(l))], merchant, conv)
		return map[string]any{"as_of_minute": rk.AsOf.Start(), "merchants": out}, nil
	}
}

// withNames converts list, looking up the names of its merchants at once.
func withNames[T, J any](s *Server, r *http.Request, list []T, merchant func(T) int64, conv func(T, string) J) []J {
	ids := make([]int64, len(list))
	for i, e := range list {
		ids[i] = merchant(e)
	}
	names := s.names(r, ids)
	out := make([]J, len(list))
	for i, e := range list {
		out[i] = conv(e, names[ids[i]])
	}
	return out
}

func (s *Server) handleRiskRanking() jsonHandler {
	return rankingHandler(s, func(rk *rules.Ranking) []rules.RiskEntry { return rk.Risk },
		func(e rules.RiskEntry) int64 { return e.Merchant },
		func(e rules.RiskEntry, name string) riskJSON {
			return riskJSON{ID: e.Merchant, Name: name, AH: e.AH, CH: e.CH, RateH: e.RateH, Baseline: e.Baseline,
				BaselineSource: e.BaselineSource, Effective: e.Effective, Ratio: e.Ratio, Score: e.Score, Fires: e.Fires,
				Evidence: e.Evidence, Priority: e.CancelEvidence.Priority.String(), CanceledAmount: e.CanceledAmount, Exposure: e.CancelEvidence.Exposure}
		})
}

func (s *Server) handleVolumeRanking() jsonHandler {
	return rankingHandler(s, func(rk *rules.Ranking) []rules.VolumeEval { return rk.Volume },
		func(e rules.VolumeEval) int64 { return e.Merchant },
		func(e rules.VolumeEval, name string) volumeJSON {
			return volumeJSON{ID: e.Merchant, Name: name, DailyAvg: e.DailyAvg, Expected: e.Expected, Today: e.Today, Drop: e.Drop, Fires: e.Fires,
				Evidence: e.Evidence, Spread: e.Spread, Priority: e.VolumeEvidence.Priority.String(), Exposure: e.VolumeEvidence.Exposure}
		})
}

type ackJSON struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment"`
	// Priority is what the ack covers: an escalation past it notifies
	// again.
	Priority string `json:"priority,omitempty"`
}

type alertJSON struct {
	ID           int64          `json:"id"`
	Rule         string         `json:"rule"`
	MerchantID   int64          `json:"merchant_id"`
	MerchantName string         `json:"merchant_name"`
	State        string         `json:"state"`
	ActiveAt     time.Time      `json:"active_at"`
	ResolvedAt   *time.Time     `json:"resolved_at"`
	LastEvalAt   time.Time      `json:"last_eval_at"`
	Values       map[string]any `json:"values"`
	Summary      string         `json:"summary"`
	Ack          *ackJSON       `json:"ack"`
	Transition   string         `json:"transition,omitempty"`
	// Priority is P1, P2 or P3 (null for an alert from before priorities);
	// Evidence, CanceledAmount and Exposure repeat the values' figures.
	Priority       *string  `json:"priority"`
	Evidence       *float64 `json:"evidence"`
	CanceledAmount *int64   `json:"canceled_amount_h"`
	Exposure       *int64   `json:"exposure"`
	Continues      *int64   `json:"continues"`
}

func toAlertJSON(a *alert.Alert, name string) alertJSON {
	out := alertJSON{ID: a.ID, Rule: a.Rule, MerchantID: a.Merchant, MerchantName: name, State: a.State.String(),
		ActiveAt: a.ActiveAt.UTC(), LastEvalAt: a.LastEvalAt.UTC(), Values: a.Values}
	if out.Values == nil {
		out.Values = map[string]any{}
	}
	kind := alert.NotifyFiring
	if a.State == alert.Resolved {
		t := a.ResolvedAt.UTC()
		out.ResolvedAt = &t
		kind = alert.NotifyResolved
	}
	out.Summary = alert.Summary(a.Rule, a.Merchant, a.Values, kind)
	if a.Ack != nil {
		out.Ack = &ackJSON{By: a.Ack.By, At: a.Ack.At.UTC(), Comment: a.Ack.Comment, Priority: a.Ack.Priority.String()}
	}
	if a.Priority != 0 {
		p := a.Priority.String()
		out.Priority = &p
	}
	if v, ok := a.Values["evidence"].(float64); ok {
		out.Evidence = &v
	}
	for _, f := range []struct {
		key string
		dst **int64
	}{{"canceled_amount_h", &out.CanceledAmount}, {"exposure", &out.Exposure}} {
		switch v := a.Values[f.key].(type) {
		case float64:
			n := int64(v)
			*f.dst = &n
		case int64:
			*f.dst = &v
		}
	}
	if a.Continues != 0 {
		out.Continues = &a.Continues
	}
	return out
}

func (s *Server) alertsJSON(r *http.Request, list []*alert.Alert) []alertJSON {
	return withNames(s, r, list, func(a *alert.Alert) int64 { return a.Merchant }, toAlertJSON)
}

func (s *Server) handleAlerts(r *http.Request) (any, error) {
	q := r.URL.Query()
	f := alertstore.AlertFilter{State: q.Get("state"), Rule: q.Get("rule"), Order: q.Get("order")}
	var err error
	if f.Order != "" && f.Order != alertstore.OrderNewest && f.Order != alertstore.OrderPriority && f.Order != alertstore.OrderMoney {
		return nil, badf("order: want %s, %s or %s, got %q", alertstore.OrderNewest, alertstore.OrderPriority, alertstore.OrderMoney, f.Order)
	}
	if v := q.Get("priority"); v != "" {
		p, ok := rules.ParsePriority(v)
		if !ok {
			return nil, badf("priority: want P1, P2 or P3, got %q", v)
		}
		f.MinPriority = p
	}
	if f.Limit, err = parseLimit(q, 100, 500); err != nil {
		return nil, err
	}
	if f.State != "" && f.State != "firing" && f.State != "resolved" {
		return nil, badf("state: want firing or resolved, got %q", f.State)
	}
	if f.Rule != "" && f.Rule != rules.CancelRateSpike && f.Rule != rules.VolumeDrop && f.Rule != alert.RuleStuck {
		return nil, badf("rule: want %s, %s or %s, got %q", rules.CancelRateSpike, rules.VolumeDrop, alert.RuleStuck, f.Rule)
	}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"merchant", &f.Merchant}, {"before", &f.Before}} {
		if v := q.Get(p.name); v != "" {
			if *p.dst, err = parseID(v, p.name); err != nil {
				return nil, err
			}
		}
	}
	list, err := s.alerts.Alerts(r.Context(), f)
	if err != nil {
		return nil, err
	}
	return map[string]any{"alerts": s.alertsJSON(r, list)}, nil
}

func (s *Server) handleAck(r *http.Request) (any, error) {
	id, who, comment, err := alertAction(r, "acknowledges")
	if err != nil {
		return nil, err
	}
	a, err := s.alerts.Ack(r.Context(), id, who, comment, s.now())
	if err != nil {
		return nil, err
	}
	out := s.alertsJSON(r, []*alert.Alert{a})[0]
	s.log.Info("alert acknowledged", "id", a.ID, "rule", a.Rule, "merchant", a.Merchant, "by", who.Name, "via", who.Via)
	pushed := out
	pushed.Transition = "acknowledged"
	s.hub.publish("alert", pushed)
	return out, nil
}

func (s *Server) handleMerchant(r *http.Request) (any, error) {
	id, err := parseID(r.PathValue("id"), "merchant id")
	if err != nil {
		return nil, err
	}
	list, err := s.alerts.Alerts(r.Context(), alertstore.AlertFilter{State: "firing", Merchant: id})
	if err != nil {
		return nil, err
	}
	name := s.names(r, []int64{id})[id]
	alerts := make([]alertJSON, len(list))
	for i, a := range list {
		alerts[i] = toAlertJSON(a, name)
	}
	return map[string]any{"id": id, "name": name, "open_alerts": alerts}, nil
}
