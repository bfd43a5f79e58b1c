package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// svgPlot draws one small chart: bars (histogram) or a line (series), with
// axes and labels. Hand-written SVG keeps the benchmark free of a plotting
// dependency; these are three simple charts.
type svgPlot struct {
	title, xLabel, yLabel string
	xs, ys                []float64
	bars                  bool
	xTicks                []string // bar labels when bars
}

func (p svgPlot) write(path string) error {
	const w, h, left, right, top, bottom = 640.0, 320.0, 64.0, 16.0, 36.0, 48.0
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", int(w), int(h), int(w), int(h))
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%g" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(p.title))
	ymax := 0.0
	for _, y := range p.ys {
		ymax = math.Max(ymax, y)
	}
	if ymax == 0 {
		ymax = 1
	}
	pw, ph := w-left-right, h-top-bottom
	yAt := func(y float64) float64 { return top + ph - ph*y/ymax }
	// Axes and y ticks.
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/><line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`+"\n",
		left, top, left, top+ph, left, top+ph, left+pw, top+ph)
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text><line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#eee"/>`+"\n",
			left-4, yAt(y)+4, short(y), left+1, yAt(y), left+pw, yAt(y))
	}
	if p.bars {
		n := float64(len(p.ys))
		bw := pw / math.Max(n, 1)
		for i, y := range p.ys {
			x := left + float64(i)*bw
			fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="#1c7ed6"/>`+"\n", x+1, yAt(y), math.Max(bw-2, 1), top+ph-yAt(y))
			if i < len(p.xTicks) {
				fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", x+bw/2, top+ph+14, html.EscapeString(p.xTicks[i]))
			}
		}
	} else if len(p.xs) > 0 {
		xmax := p.xs[len(p.xs)-1]
		if xmax == 0 {
			xmax = 1
		}
		var pts []string
		for i := range p.xs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", left+pw*p.xs[i]/xmax, yAt(p.ys[i])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#1c7ed6" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
		for i := 0; i <= 4; i++ {
			x := xmax * float64(i) / 4
			fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", left+pw*x/xmax, top+ph+14, short(x))
		}
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", left+pw/2, h-8, html.EscapeString(p.xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%g" text-anchor="middle" transform="rotate(-90 14 %g)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(p.yLabel))
	b.WriteString("</svg>\n")
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v == math.Trunc(v) || v >= 10:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// writePlots draws the latency distributions and the lag over the peak.
func writePlots(dir string, res *Results) error {
	p := res.Peak
	var c2aX []string
	var c2aY []float64
	prev := 0.0
	for _, bk := range p.C2ABuckets {
		if math.IsInf(bk.LE, 1) {
			continue
		}
		label := fmt.Sprintf("%gms", bk.LE*1000)
		if bk.LE >= 1 {
			label = fmt.Sprintf("%gs", bk.LE)
		}
		if len(c2aX)%2 == 1 { // every other label: they would overlap
			label = ""
		}
		c2aX = append(c2aX, label)
		c2aY = append(c2aY, bk.Count-prev)
		prev = bk.Count
	}
	// Alert latency in 100 ms bins from 0 to 3 s.
	alX, alY := make([]string, 30), make([]float64, 30)
	for i := 0; i < len(alX); i += 5 {
		alX[i] = fmt.Sprintf("%.1fs", float64(i)/10)
	}
	for _, s := range p.AlertSamples {
		alY[min(max(int(s*10), 0), len(alY)-1)]++
	}
	var lx, ly []float64
	for _, pt := range p.LagSeries {
		lx, ly = append(lx, pt[0]), append(ly, pt[1])
	}
	for _, pl := range []struct {
		file string
		plot svgPlot
	}{
		{"commit-to-aggregate.svg", svgPlot{title: fmt.Sprintf("Commit to aggregate at %.0f TPS (events per bucket)", p.TargetTPS), xLabel: "latency (upper bound of each bucket)", yLabel: "events", ys: c2aY, xTicks: c2aX, bars: true}},
		{"alert-latency.svg", svgPlot{title: fmt.Sprintf("Alert latency, minute end to webhook (%d alerts)", len(p.AlertSamples)), xLabel: "seconds after the minute ended", yLabel: "alerts", ys: alY, xTicks: alX, bars: true}},
		{"replication-lag.svg", svgPlot{title: "Replication lag during the peak", xLabel: "seconds since the peak started", yLabel: "lag (s)", xs: lx, ys: ly}},
	} {
		if err := pl.plot.write(filepath.Join(dir, pl.file)); err != nil {
			return fmt.Errorf("writing %s: %w", pl.file, err)
		}
	}
	return nil
}

// Markers around the generated part of BENCHMARKS.md; the rest of the file
// (hand-written notes, figures from other commands) is kept. oldBeginMark
// is what the runner wrote when it was a riskwatch subcommand.
const (
	beginMark    = "<!-- make bench: begin (generated by riskwatch-bench; edits are overwritten) -->"
	oldBeginMark = "<!-- make bench: begin (generated by `riskwatch bench`; edits are overwritten) -->"
	endMark      = "<!-- make bench: end -->"
)

// RatioTargets are the full-load targets, each a ratio to a floor measured in
// the same run (see Results), so that they hold on any machine. The first
// round's targets were absolute (engine CPU ≤ 0.15 cores, commit →
// aggregate p99 ≤ 250 ms, alert p99 ≤ 1.5 s, catch-up ≥ 100,000 events/s,
// first start ≤ 60 s), met on 2026-11-26 with margins of 1.44×, 1.69×,
// 1.2× and 1.64×; each ratio target keeps that margin over the ratio
// measured on 2026-12-06 for the code those figures came from
// (BENCHMARKS.md, "Targets"). Commit → aggregate is judged at the median:
// its p99 is set by the minute's close (every merchant evaluated while
// the stream waits), not by the flush, and moved 148 → 503 → 1054 ms for
// the same code on the same machine kind, so it is reported beside its
// floor without a target.
type RatioTargets struct {
	PeakCPU, CommitToAggregateP50, AlertLatency, CatchUp, Bootstrap float64
}

// Targets returns the ratio targets.
func Targets() RatioTargets {
	return RatioTargets{PeakCPU: 1.5, CommitToAggregateP50: 1.0, AlertLatency: 1.5, CatchUp: 0.65, Bootstrap: 2.5}
}

// WriteMarkdown replaces the generated section of path (appending one when
// missing) with the results; plots are linked relative to plotDir.
func WriteMarkdown(path string, res *Results, plotDir, goBench string) error {
	if res.Source == SourceMariaDB {
		return writeMariaDBMarkdown(path, res, plotDir)
	}
	var b strings.Builder
	m := res.Machine
	check := func(ok bool) string { return verdict(res.Quick, ok) }
	fmt.Fprintf(&b, "%s\n\n## Full load (`make bench`, %s run)\n\n", beginMark, runMode(res))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %.0f GiB, %s, %s, %s (private cluster: fsync off, synchronous_commit on, shared_buffers 128MB).  \n",
		m.CPU, m.Cores, m.MemoryGiB, m.OS, m.GoVersion, m.PostgreSQL)
	writeRunData(&b, res, "PostgreSQL")
	p := res.Peak
	t := Targets()
	b.WriteString("Each headline figure stands beside a floor measured in the same run on the same data — what PostgreSQL itself, or the configuration, takes for the same work — and its target is a ratio to that floor, so that it holds on any machine ([how the targets were set](#targets)).\n\n")
	row := scenarioTable(&b, map[string]bool{"1 peak": p.Seconds > 0, "2 catch-up": res.CatchUp.Backlog > 0, "3 bootstrap": res.Bootstrap.Seconds > 0,
		"4 restart": len(res.Restart.Seconds) > 0, "5 baseline": res.Baseline.Runs > 0})
	row("1 peak", fmt.Sprintf("achieved payments/s over %.0f s (events/s incl. cancels)", p.Seconds), fmt.Sprintf("%.0f (%.0f)", p.PaymentsPerS, p.EventsPerS), "", "", fmt.Sprintf("%.0f TPS", p.TargetTPS))
	row("1 peak", "engine CPU (cores), sink writes included", fmt.Sprintf("%.3f", p.EngineCores), fmt.Sprintf("walsender serving it %.3f", p.WalsenderCore), x(p.CPURatio),
		fmt.Sprintf("≤ %.2f×: %s", t.PeakCPU, check(p.CPURatio > 0 && p.CPURatio <= t.PeakCPU)))
	row("1 peak", fmt.Sprintf("commit → aggregate p50 / p99 (%d events after the generator's %.0f s warm-up; whole run %s / %s)", p.CommitToAggregate.Count, p.WarmUp,
		ms(p.CommitToAggregateWholeRun.P50), ms(p.CommitToAggregateWholeRun.P99)), ms(p.CommitToAggregate.P50)+" / "+ms(p.CommitToAggregate.P99),
		fmt.Sprintf("flush interval + sink transaction p99: %s", ms(p.C2AFloor)), x(p.C2AP50Ratio)+" / "+x(p.C2ARatio),
		fmt.Sprintf("p50 ≤ %.2f×: %s; p99 not judged (the minute's close)", t.CommitToAggregateP50, check(p.C2AP50Ratio > 0 && p.C2AP50Ratio <= t.CommitToAggregateP50)))
	row("1 peak", fmt.Sprintf("alert latency p50 / p99, minute end → webhook (%d alerts of minutes wholly within the peak)", p.AlertLatency.Count), ms(p.AlertLatency.P50)+" / "+ms(p.AlertLatency.P99),
		fmt.Sprintf("grace %s", ms(p.Grace)), x(p.AlertRatio), fmt.Sprintf("≤ %.2f×: %s", t.AlertLatency, check(p.AlertLatency.Count > 0 && p.AlertRatio <= t.AlertLatency)))
	row("1 peak", "engine max RSS", fmt.Sprintf("%.0f MiB", float64(p.EngineMaxRSS)/(1<<20)), "", "", "≤ 256 MiB: "+check(p.EngineMaxRSS <= 256<<20))
	row("1 peak", "replication lag p50 / p99 / max", fmt.Sprintf("%s / %s / %s", ms(p.LagSeconds.P50), ms(p.LagSeconds.P99), ms(p.LagSeconds.Max)), "", "", "")
	c := res.CatchUp
	row("2 catch-up", fmt.Sprintf("backlog of %d committed changes: events/s until live", c.Backlog), fmt.Sprintf("%.0f (%d events in %.1f s, %.2f cores)", c.EventsPerS, c.Events, c.Seconds, c.Cores),
		fmt.Sprintf("pg_recvlogical draining it: %.0f/s (%.1f s)", c.FloorEventsPerS, c.FloorSeconds), x(c.Ratio), fmt.Sprintf("≥ %.2f×: %s", t.CatchUp, check(c.Ratio >= t.CatchUp)))
	bs := res.Bootstrap
	row("3 bootstrap", "first start → first closed minute", fmt.Sprintf("%.1f s (max RSS %.0f MiB)", bs.Seconds, float64(bs.PeakRSS)/(1<<20)),
		fmt.Sprintf("the snapshot's GROUP BY alone: %.1f s", bs.GroupBySeconds), x(bs.Ratio), fmt.Sprintf("≤ %.2f×: %s", t.Bootstrap, check(bs.Ratio > 0 && bs.Ratio <= t.Bootstrap)))
	rs := res.Restart
	row("4 restart", fmt.Sprintf("SIGKILL under load → live (median of %d)", len(rs.Seconds)), fmt.Sprintf("%.1f s (%s)", rs.Median, joinF(rs.Seconds)), "", "", "≤ 10 s: "+check(len(rs.Seconds) > 0 && rs.Median <= 10))
	bl := res.Baseline
	row("5 baseline", fmt.Sprintf("SQL-polling job, one run for all merchants (median of %d)", bl.Runs), fmt.Sprintf("%.2f s, %.2f s source CPU", bl.MedianSeconds, bl.MedianCPU), "", "", "")
	row("5 baseline", fmt.Sprintf("riskwatch source CPU per minute at the day's average rate, %.0f payments/s (walsender + other connections)", bl.AverageTPS),
		fmt.Sprintf("%.3f s (%.3f + %.3f)", bl.RiskwatchCPU, bl.RiskwatchWalsenderCPU, bl.RiskwatchOtherCPU), fmt.Sprintf("pg_recvlogical %.3f s, pg_receivewal %.3f s", bl.FloorLogicalCPU, bl.FloorPhysicalCPU), "", "")
	streamNote := ""
	if bl.FloorPhysicalRatio > 0 && bl.FloorPhysicalRatio < 100 {
		streamNote = fmt.Sprintf("streaming is under PostgreSQL's floor: shipping the WAL at all is %.0f×", bl.FloorPhysicalRatio)
	}
	row("5 baseline", "source CPU ratio, SQL job / riskwatch streaming (`source.delivery: stream`, the default), at the day's average rate", "", "", fmt.Sprintf("%.0f×", bl.CPURatio), streamNote)
	mn := bl.Minute
	row("5 baseline", fmt.Sprintf("riskwatch with `source.delivery: minute`, source CPU per minute at %.0f payments/s (drains + other connections, over %d drains)", mn.AverageTPS, mn.Drains),
		fmt.Sprintf("%.3f s (%.3f + %.3f)", mn.CPU, mn.DrainCPU, mn.OtherCPU), "", "", "")
	row("5 baseline", "source CPU ratio, SQL job / riskwatch with minute delivery", "", fmt.Sprintf("SQL job %.2f s a run", bl.MedianCPU), fmt.Sprintf("%.0f×", mn.CPURatio), "≥ 100×: "+check(mn.CPURatio >= 100))
	row("5 baseline", fmt.Sprintf("minute delivery: drain p50 / p99 (%d drains); alert latency p50 / p99, minute end → webhook (%d alerts)", mn.DrainSeconds.Count, mn.AlertLatency.Count),
		fmt.Sprintf("%s / %s; %s / %s", ms(mn.DrainSeconds.P50), ms(mn.DrainSeconds.P99), ms(mn.AlertLatency.P50), ms(mn.AlertLatency.P99)), "", "", "")
	row("5 baseline", "floor, same traffic: pg_recvlogical's and pg_receivewal's walsender per minute, and the SQL job's ratio to each", fmt.Sprintf("%.3f s, %.3f s", bl.FloorLogicalCPU, bl.FloorPhysicalCPU), "", fmt.Sprintf("%.0f×, %.0f×", bl.FloorLogicalRatio, bl.FloorPhysicalRatio), "")
	row("5 baseline", "source WAL written per minute at the day's average rate", fmt.Sprintf("%.1f MiB", bl.WALBytesPerMin/(1<<20)), "", "", "")
	row("5 baseline", fmt.Sprintf("the SQL job / riskwatch at the peak's %.0f TPS (walsender %.2f s per minute)", p.TargetTPS, bl.RiskwatchPeakCPU), "", "", fmt.Sprintf("%.1f×", bl.PeakCPURatio), "")
	row("5 baseline", "alert latency: SQL job (run time after the minute) vs riskwatch p99, streaming at the peak / minute delivery", fmt.Sprintf("%.2f s vs %.2f s / %.2f s", bl.MedianSeconds, p.AlertLatency.P99, mn.AlertLatency.P99), "", "",
		"lower: "+check(p.AlertLatency.P99 < bl.MedianSeconds && mn.AlertLatency.Count > 0 && mn.AlertLatency.P99 < bl.MedianSeconds))
	if bl.Note != "" {
		fmt.Fprintf(&b, "\n%s\n", bl.Note)
	}
	fmt.Fprintf(&b, "\nPlots: [commit → aggregate](%[1]s/commit-to-aggregate.svg), [alert latency](%[1]s/alert-latency.svg), [replication lag](%[1]s/replication-lag.svg); raw figures in [results.json](%[1]s/results.json).\n", plotDir)
	if goBench != "" {
		fmt.Fprintf(&b, "\n### Hot paths (Go benchmarks, `scripts/bench-go.sh`)\n\n```\n%s```\n", goBench)
	}
	b.WriteString("\n" + endMark + "\n")

	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	if i < 0 {
		i = strings.Index(s, oldBeginMark)
	}
	switch {
	case i >= 0 && j > i:
		s = s[:i] + b.String() + strings.TrimPrefix(s[j+len(endMark):], "\n")
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + b.String()
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

func ms(s float64) string { return fmt.Sprintf("%.0f ms", s*1000) }

func x(r float64) string { return fmt.Sprintf("%.2f×", r) }

func runMode(res *Results) string {
	if res.Quick {
		return "quick (reduced: not the targets' scale)"
	}
	return "full"
}

// verdict is how a target reads: a quick run judges none.
func verdict(quick, ok bool) string {
	switch {
	case quick:
		return "(quick run: not judged)"
	case ok:
		return "met"
	default:
		return "**missed**"
	}
}

// writeRunData writes the lines on how the run was made and on what data,
// after the machine's.
func writeRunData(b *strings.Builder, res *Results, server string) {
	sc := res.Scale
	fmt.Fprintf(b, "Command: `%s`, %s → %s; one run of each scenario (medians are over the samples within it).  \n",
		res.Command, res.Started.Format(time.RFC3339), res.Finished.Format(time.RFC3339))
	fmt.Fprintf(b, "Data: %d merchants, %d business days at %d payments/day (%d payments loaded in %.0f s). The engine, the simulator and %s share the machine's %d cores.\n\n",
		sc.Merchants, sc.Days, sc.PaymentsPerDay, res.History.Payments, res.History.Seconds, server, res.Machine.Cores)
}

// scenarioTable starts a results table in b and returns its row writer:
// a scenario that did not run (--scenarios) says so once instead of
// showing zeros.
func scenarioTable(b *strings.Builder, ran map[string]bool) func(scenario, figure, measured, floor, ratio, target string) {
	b.WriteString("| scenario | figure | measured | floor (same run) | ratio | target |\n|---|---|---:|---:|---:|---|\n")
	noted := map[string]bool{}
	return func(s, f, v, fl, ra, tg string) {
		switch {
		case ran[s]:
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", s, f, v, fl, ra, tg)
		case !noted[s]:
			noted[s] = true
			fmt.Fprintf(b, "| %s | not run (--scenarios) | | | | |\n", s)
		}
	}
}

func joinF(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.1f", x))
	}
	return strings.Join(parts, ", ")
}

// Replot rewrites the plots of dir from its results.json (after a change to
// the charts, without measuring again).
func Replot(dir string) (*Results, error) {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, "results.json"), err)
	}
	// Results written before the median was judged lack its ratio; it is
	// derived from figures they hold.
	if p := &res.Peak; p.C2AP50Ratio == 0 && p.C2AFloor > 0 {
		p.C2AP50Ratio = p.CommitToAggregate.P50 / p.C2AFloor
	}
	return &res, writePlots(dir, &res)
}
