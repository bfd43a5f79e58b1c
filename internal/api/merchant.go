package api

import (
	"net/http"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
	"github.com/riskwatch/riskwatch/internal/window"
)

// buckets are the series' bucket starts for step over [from, to): minutes,
// or hours and days of the business time zone.
func (s *Server) buckets(step string, from, to time.Time) ([]time.Time, error) {
	loc := s.opts.Config.Location
	var out []time.Time
	var next func(time.Time) time.Time
	switch step {
	case "1m":
		from = window.MinuteOf(from).Start()
		next = func(t time.Time) time.Time { return t.Add(time.Minute) }
	case "1h":
		from = s.cal().Hour(window.MinuteOf(from))
		next = func(t time.Time) time.Time { return t.Add(time.Hour) }
	case "1d":
		lt := from.In(loc)
		from = time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
		next = func(t time.Time) time.Time {
			lt := t.In(loc)
			return time.Date(lt.Year(), lt.Month(), lt.Day()+1, 0, 0, 0, 0, loc)
		}
	default:
		return nil, badf("step: want 1m, 1h or 1d, got %q", step)
	}
	for t := from; t.Before(to); t = next(t) {
		if len(out) == maxPoints {
			return nil, badf("from..to at step %s is more than %d points; use a larger step", step, maxPoints)
		}
		out = append(out, t.UTC())
	}
	return out, nil
}

func (s *Server) cal() window.Calendar { return window.NewCalendar(s.opts.Config.Location) }

type seriesJSON struct {
	Merchant  map[string]any `json:"merchant"`
	Step      string         `json:"step"`
	From      time.Time      `json:"from"`
	To        time.Time      `json:"to"`
	RateH     []*float64     `json:"rate_h"`
	Effective []*float64     `json:"effective_baseline"`
	AlertLine []*float64     `json:"alert_line"`
	// SameHour is the cancel rate of the same hours of the day over the
	// 7-day baseline (null with too little history), which the evidence
	// weighs the hour against beside the 7-day rate.
	SameHour       []*float64  `json:"same_hour_baseline"`
	BaselineSource string      `json:"baseline_source"`
	Alerts         []alertJSON `json:"alerts"`
	pointsJSON
}

func (s *Server) handleSeries(r *http.Request) (any, error) {
	ctx := r.Context()
	id, err := parseID(r.PathValue("id"), "merchant id")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	step := q.Get("step")
	if step == "" {
		step = "1m"
	}
	last := s.lastClosed()
	to := last.End()
	if t, ok, err := s.parseTime(q, "to"); err != nil {
		return nil, err
	} else if ok && t.Before(to) {
		to = t
	}
	def, ok := map[string]time.Duration{"1m": time.Hour, "1h": 24 * time.Hour, "1d": 8 * 24 * time.Hour}[step]
	if !ok {
		return nil, badf("step: want 1m, 1h or 1d, got %q", step)
	}
	from := to.Add(-def)
	if t, ok, err := s.parseTime(q, "from"); err != nil {
		return nil, err
	} else if ok {
		from = t
	}
	if !from.Before(to) {
		return nil, badf("from must be before to (and before the end of the last closed minute, %s)", last.End().Format(time.RFC3339))
	}
	if step == "1m" && to.Sub(from) > s.opts.Config.Retention.D() {
		return nil, badf("from..to spans %s; at step 1m at most the retention %s", to.Sub(from), s.opts.Config.Retention.D())
	}
	starts, err := s.buckets(step, from, to)
	if err != nil {
		return nil, err
	}
	if len(starts) == 0 {
		return nil, badf("from..to holds no %s bucket", step)
	}
	st := s.dash
	out := seriesJSON{Step: step, From: starts[0], To: to, pointsJSON: newPoints(len(starts))}
	index := make(map[int64]int, len(starts))
	for i, t := range starts {
		out.T[i] = t.Unix()
		index[t.Unix()] = i
	}
	var pts []dashboard.Point
	switch step {
	case "1m":
		pts, err = st.MerchantMinutes(ctx, id, window.MinuteOf(starts[0]), window.MinuteOf(to.Add(time.Minute-time.Microsecond)))
	case "1h":
		pts, err = st.MerchantHours(ctx, id, starts[0], to)
	case "1d":
		// Days are dates; their rows come back as UTC midnight of the date.
		lf, lt := starts[0].In(s.opts.Config.Location), to.In(s.opts.Config.Location)
		pts, err = st.MerchantDays(ctx, id, lf, time.Date(lt.Year(), lt.Month(), lt.Day()+1, 0, 0, 0, 0, time.UTC))
		for i := range pts {
			d := pts[i].At
			pts[i].At = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, s.opts.Config.Location)
		}
	}
	if err != nil {
		return nil, err
	}
	for _, p := range pts {
		if i, ok := index[p.At.Unix()]; ok {
			out.set(i, p.Agg)
		}
	}

	// The rule's lines at each bucket's last closed minute.
	at := make([]window.Minute, len(starts))
	for i := range starts {
		end := to
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		at[i] = min(window.MinuteOf(end.Add(-time.Microsecond)), last)
		if at[i] < window.MinuteOf(starts[i]) {
			at[i] = last + 1 // nothing of the bucket closed yet
		}
	}
	lo := at[0] - rules.HourMinutes + 1 - rules.BaselineMinutes
	if oldest, ok, err := st.OldestMinute(ctx); err != nil {
		return nil, err
	} else if ok {
		lo = max(lo, oldest)
	}
	hi := min(at[len(at)-1], last) + 1
	out.RateH, out.Effective, out.AlertLine, out.SameHour = make([]*float64, len(at)), make([]*float64, len(at)), make([]*float64, len(at)), make([]*float64, len(at))
	if lo < hi {
		mm, err := st.MerchantMinutes(ctx, id, lo, hi)
		if err != nil {
			return nil, err
		}
		pm, err := st.PlatformMinutes(ctx, lo, hi)
		if err != nil {
			return nil, err
		}
		lines := cancelLines(s.params.Cancel, s.opts.Config.Location, newMinuteSums(lo, hi, mm), newMinuteSums(lo, hi, pm), at, last)
		for i, l := range lines {
			out.RateH[i], out.Effective[i], out.AlertLine[i], out.SameHour[i] = l.RateH, l.Effective, l.AlertLine, l.SameHour
			if l.Source != "" {
				out.BaselineSource = l.Source
			}
		}
	}
	alerts, err := s.alerts.Alerts(ctx, alertstore.AlertFilter{Merchant: id, ActiveFrom: starts[0], ActiveTo: to, Limit: 500})
	if err != nil {
		return nil, err
	}
	name := s.names(r, []int64{id})[id]
	out.Merchant = map[string]any{"id": id, "name": name}
	out.Alerts = make([]alertJSON, len(alerts))
	for i, a := range alerts {
		out.Alerts[i] = toAlertJSON(a, name)
	}
	return out, nil
}

func (s *Server) handleVolume(r *http.Request) (any, error) {
	ctx := r.Context()
	id, err := parseID(r.PathValue("id"), "merchant id")
	if err != nil {
		return nil, err
	}
	loc := s.opts.Config.Location
	last := s.lastClosed()
	day := s.cal().Day(last)
	if v := r.URL.Query().Get("day"); v != "" {
		d, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return nil, badf("day: want YYYY-MM-DD, got %q", v)
		}
		// The curves are drawn from minutes, which exist only within the
		// retention; a later day has no closed minute yet.
		first := s.cal().Day(last - window.Minute(s.opts.Config.Retention.D()/time.Minute) + 1)
		if d.Before(first) || d.After(day) {
			return nil, badf("day: want a business day from %s to %s (the retention up to the last closed minute), got %q",
				first.Format(time.DateOnly), day.Format(time.DateOnly), v)
		}
		day = d
	}
	start := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
	weekStart := time.Date(day.Year(), day.Month(), day.Day()-7, 0, 0, 0, 0, loc)
	end := time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc)
	days, err := s.dash.MerchantDays(ctx, id, weekStart, start)
	if err != nil {
		return nil, err
	}
	var sum7 int64
	for _, d := range days {
		sum7 += d.ApprovedAmount
	}
	mins, err := s.dash.MerchantMinutes(ctx, id, window.MinuteOf(weekStart), window.MinuteOf(end))
	if err != nil {
		return nil, err
	}
	c := volumeCurves(s.params.Volume, loc, day, sum7, mins, last)
	t := make([]int64, len(c.Starts))
	for i, st := range c.Starts {
		t[i] = st.Unix()
	}
	v := s.opts.Config.Rules.VolumeDrop
	return map[string]any{
		"day": start.Format(time.DateOnly), "large": c.Large, "daily_avg": c.DailyAvg,
		"large_daily_amount": v.LargeDailyAmount, "drop_ratio": v.DropRatio, "min_expected": v.MinExpectedFraction * c.DailyAvg,
		"t": t, "today": c.Today, "expected": c.Expected, "alert_line": c.AlertLine,
	}, nil
}
