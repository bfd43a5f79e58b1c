package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/score"
)

// Setting is one choice of the rules.priority thresholds the detection
// run scores (zero fields keep the defaults).
type Setting struct {
	Name              string  `json:"name"`
	CancelP1Evidence  float64 `json:"cancel_p1_evidence,omitempty"`
	CancelP2Evidence  float64 `json:"cancel_p2_evidence,omitempty"`
	VolumeP1Evidence  float64 `json:"volume_p1_evidence,omitempty"`
	VolumeP2Evidence  float64 `json:"volume_p2_evidence,omitempty"`
	P1MinExposure     int64   `json:"p1_min_exposure,omitempty"`
	CancelDispersion  float64 `json:"cancel_dispersion,omitempty"`
	CancelBatchWeight float64 `json:"cancel_batch_weight,omitempty"`
	// CancelTodayWeight: a negative value is written as 0 (off), which
	// omitempty could not carry.
	CancelTodayWeight float64 `json:"cancel_today_weight,omitempty"`
	VolumeMinSpread   float64 `json:"volume_min_spread,omitempty"`
}

// yaml is the setting as rules.priority keys.
func (s Setting) yaml() string {
	var b strings.Builder
	for _, kv := range []struct {
		key string
		v   float64
	}{{"cancel_p1_evidence", s.CancelP1Evidence}, {"cancel_p2_evidence", s.CancelP2Evidence}, {"volume_p1_evidence", s.VolumeP1Evidence},
		{"volume_p2_evidence", s.VolumeP2Evidence}, {"p1_min_exposure", float64(s.P1MinExposure)}, {"cancel_dispersion", s.CancelDispersion},
		{"cancel_batch_weight", s.CancelBatchWeight}, {"volume_min_spread", s.VolumeMinSpread}, {"cancel_today_weight", s.CancelTodayWeight}} {
		if kv.v != 0 {
			fmt.Fprintf(&b, "    %s: %g\n", kv.key, max(kv.v, 0))
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "  priority:\n" + b.String()
}

// DefaultSettings are the points of the trade-off curve: the defaults, and
// stricter and looser thresholds around them (a zero field keeps the
// default).
func DefaultSettings() []Setting {
	return []Setting{
		{Name: "defaults"},
		{Name: "cancel P1 5", CancelP1Evidence: 5},
		{Name: "cancel P1 9", CancelP1Evidence: 9},
		{Name: "cancel P1 12", CancelP1Evidence: 12},
		{Name: "volume P1 2.5", VolumeP1Evidence: 2.5},
		{Name: "volume P1 4", VolumeP1Evidence: 4},
		{Name: "P1 from 1,000,000 KRW", P1MinExposure: 1_000_000},
		{Name: "P1 from 10,000,000 KRW", P1MinExposure: 10_000_000},
		{Name: "Poisson, batches in full (no dispersion, weight 0)", CancelDispersion: 1e-9, CancelBatchWeight: 1e-9},
	}
}

// ReadSettings reads settings from a JSON array.
func ReadSettings(path string) ([]Setting, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ss []Setting
	if err := json.Unmarshal(b, &ss); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ss, nil
}

// DetectionOptions say what the detection-quality run measures.
type DetectionOptions struct {
	Riskwatch string
	Out       string
	Seeds     []uint64
	Settings  []Setting
	// Merchants and PaymentsPerDay: the population (0: the full scale).
	Merchants, PaymentsPerDay int
	Logger                    *slog.Logger
	Command                   string
}

// DetectionRun is one seed scored under one setting.
type DetectionRun struct {
	Seed    uint64        `json:"seed"`
	Setting string        `json:"setting"`
	Report  *score.Report `json:"report"`
	Seconds float64       `json:"backtest_seconds"`
}

// DetectionResults are every seed under every setting.
type DetectionResults struct {
	Started, Finished time.Time
	Command           string
	Machine           Machine
	Merchants         int
	PaymentsPerDay    int
	ScoredDay         string
	Settings          []Setting
	Runs              []DetectionRun
}

// Detection generates, for each seed, the realistic history with the
// scored day's incident mix (sim history --profile realistic
// --scored-day), lets the engine take its first snapshot, and scores the
// backtest of the scored day against the ground truth under each setting.
func Detection(ctx context.Context, o DetectionOptions) (*DetectionResults, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sc := scaleFor(false)
	if o.Merchants == 0 {
		o.Merchants = sc.Merchants
	}
	if o.PaymentsPerDay == 0 {
		o.PaymentsPerDay = sc.PaymentsPerDay
	}
	if len(o.Settings) == 0 {
		o.Settings = DefaultSettings()
	}
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		return nil, err
	}
	// History up to today's midnight: the scored day is yesterday, its 7
	// days before it complete, all within the engine's retention.
	t := time.Now().In(loc)
	anchor := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	day := anchor.AddDate(0, 0, -1)
	res := &DetectionResults{Started: time.Now().UTC(), Command: o.Command, Machine: machine(), Merchants: o.Merchants,
		PaymentsPerDay: o.PaymentsPerDay, ScoredDay: day.Format(time.DateOnly), Settings: o.Settings}
	for i, seed := range o.Seeds {
		o.Logger.Info("detection seed", "seed", seed, "n", fmt.Sprintf("%d/%d", i+1, len(o.Seeds)))
		runs, err := detectSeed(ctx, o, seed, anchor, day)
		if err != nil {
			return res, fmt.Errorf("seed %d: %w", seed, err)
		}
		res.Runs = append(res.Runs, runs...)
	}
	res.Finished = time.Now().UTC()
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return res, err
	}
	return res, os.WriteFile(filepath.Join(o.Out, "detection.json"), b, 0o644)
}

func detectSeed(ctx context.Context, o DetectionOptions, seed uint64, anchor, day time.Time) ([]DetectionRun, error) {
	out := filepath.Join(o.Out, fmt.Sprintf("seed-%d", seed))
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	// Detection is measured on PostgreSQL; res takes what starting it records.
	r := &runner{opts: Options{Riskwatch: o.Riskwatch, Out: out, Logger: o.Logger}, log: o.Logger, sc: scaleFor(false), src: &pgSource{}, res: &Results{}}
	defer r.close()
	if err := r.startCluster(ctx); err != nil {
		return nil, err
	}
	large := int64(1_000_000_000) * int64(o.PaymentsPerDay) / 3_000_000
	truth := filepath.Join(out, "ground-truth.json")
	t0 := time.Now()
	if err := r.sim(ctx, "history", "--days", "9", "--now", anchor.Format(time.RFC3339), "--payments-per-day", fmt.Sprint(o.PaymentsPerDay),
		"--merchants", fmt.Sprint(o.Merchants), "--seed", fmt.Sprint(seed), "--large-daily-amount", fmt.Sprint(large),
		"--profile", "realistic", "--scored-day", "--truth", truth); err != nil {
		return nil, err
	}
	o.Logger.Info("detection history", "seed", seed, "elapsed", time.Since(t0).Round(time.Second))
	cfg := func(name string, s Setting) (string, error) {
		body := fmt.Sprintf(`source:
  dsn: %q
sink:
  dsn: %q
http:
  listen: 127.0.0.1:%d
retention: 10d
rules:
  volume_drop:
    large_daily_amount: %d
%slog:
  format: json
`, r.src.engineDSN(), r.sinkCluster.DSN("risk"), r.port, large, s.yaml())
		path := filepath.Join(out, name)
		return path, os.WriteFile(path, []byte(body), 0o600)
	}
	base, err := cfg("riskwatch.yaml", Setting{})
	if err != nil {
		return nil, err
	}
	p, err := r.startEngine("first snapshot", base)
	if err != nil {
		return nil, err
	}
	if _, err := r.waitFor(ctx, p, 30*time.Minute, "live", live); err != nil {
		return nil, err
	}
	p.stop(30 * time.Second)
	r.engine = nil

	var runs []DetectionRun
	for i, s := range o.Settings {
		path, err := cfg(fmt.Sprintf("setting-%d.yaml", i), s)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, o.Riskwatch, "sim", "score", "--config", path, "--truth", truth,
			"--from", day.Format(time.RFC3339), "--to", day.AddDate(0, 0, 1).Format(time.RFC3339), "--format", "json")
		logf, err := os.Create(filepath.Join(out, fmt.Sprintf("score-%d.log", i)))
		if err != nil {
			return nil, err
		}
		cmd.Stderr = logf
		b, err := cmd.Output()
		logf.Close()
		if err != nil {
			return nil, fmt.Errorf("sim score (%s): %w (log: %s)", s.Name, err, logf.Name())
		}
		var rep score.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, fmt.Errorf("sim score (%s): %w", s.Name, err)
		}
		if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("score-%d.json", i)), b, 0o644); err != nil {
			return nil, err
		}
		runs = append(runs, DetectionRun{Seed: seed, Setting: s.Name, Report: &rep, Seconds: time.Since(t0).Seconds()})
		o.Logger.Info("detection scored", "seed", seed, "setting", s.Name, "elapsed", time.Since(t0).Round(time.Second))
	}
	return runs, nil
}

// detectionFigures are the per-run figures the markdown tabulates.
type detectionFigures struct {
	literal, literalMerchants, p1, falseP1, p1Share, pages, p2, falseP2 float64
	caughtP1, caughtP2, caughtAll, incidents, controlsAbove, targets    float64
	nTargets                                                            int
	failed                                                              []string
}

func figures(r *score.Report) detectionFigures {
	all, p12, p1 := r.Tiers[2], r.Tiers[1], r.Tiers[0]
	f := detectionFigures{
		literal: float64(all.Alerts) / r.Days, literalMerchants: float64(all.Merchants),
		p1: float64(p1.Alerts) / r.Days, falseP1: float64(p1.Alerts) * (1 - p1.IncidentAlertShare) / r.Days, p1Share: p1.IncidentAlertShare,
		pages: p1.NotificationsPerDay, p2: float64(p12.Alerts) / r.Days, falseP2: float64(p12.Alerts) * (1 - p12.IncidentAlertShare) / r.Days,
		caughtP1: float64(p1.IncidentsCaught), caughtP2: float64(p12.IncidentsCaught), caughtAll: float64(all.IncidentsCaught),
		incidents: float64(all.Incidents), controlsAbove: float64(len(r.ControlsAbove)), nTargets: len(r.Targets),
	}
	for _, t := range r.Targets {
		if t.Pass {
			f.targets++
		} else {
			f.failed = append(f.failed, t.Name)
		}
	}
	return f
}

// WriteDetectionMarkdown rewrites BENCHMARKS.md's detection section (between
// its markers, appended when missing) from the results.
func WriteDetectionMarkdown(path string, res *DetectionResults, linked string) error {
	var b strings.Builder
	b.WriteString(detectionBegin + "\n\n## Detection quality (`make bench-detection`)\n\n")
	m := res.Machine
	var seeds []string
	for _, r := range res.Runs {
		if s := fmt.Sprint(r.Seed); !slices.Contains(seeds, s) {
			seeds = append(seeds, s)
		}
	}
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s. Command: `%s`, %s → %s.  \n", m.CPU, m.Cores, m.GoVersion, res.Command,
		res.Started.Format(time.RFC3339), res.Finished.Format(time.RFC3339))
	fmt.Fprintf(&b, "Data: `sim history --profile realistic --scored-day`, %d merchants, %d payments/day, 8 whole business days; the last (%s, Asia/Seoul) scored with `sim score` for seeds %s. Results: [detection.json](%s/detection.json).\n\n",
		res.Merchants, res.PaymentsPerDay, res.ScoredDay, strings.Join(seeds, ", "), linked)
	b.WriteString("Each cell is the median over the seeds, with the worst seed in brackets. \"False\" means on a merchant without an incident (controls included); pages are P1 notifications that start or raise an alert, a flap's continuation not counted again.\n\n")
	b.WriteString("| setting | literal firings/day | P1/day | false P1/day | P1 on incidents | pages/day | P1–P2/day | false P1–P2/day | incidents caught P1 / P1–P2 / literal | controls above P3 | targets met |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for _, s := range res.Settings {
		var fs []detectionFigures
		for _, r := range res.Runs {
			if r.Setting == s.Name {
				fs = append(fs, figures(r.Report))
			}
		}
		if len(fs) == 0 {
			continue
		}
		col := func(get func(f detectionFigures) float64, higherWorse bool, format string) string {
			var xs []float64
			for _, f := range fs {
				xs = append(xs, get(f))
			}
			slices.Sort(xs)
			worst := xs[0]
			if higherWorse {
				worst = xs[len(xs)-1]
			}
			return fmt.Sprintf(format+" ("+format+")", quantile(xs, 0.5), worst)
		}
		inc := fs[0].incidents
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s of %.0f | %s | %s of %d |\n", s.Name,
			col(func(f detectionFigures) float64 { return f.literal }, true, "%.0f"),
			col(func(f detectionFigures) float64 { return f.p1 }, true, "%.1f"),
			col(func(f detectionFigures) float64 { return f.falseP1 }, true, "%.1f"),
			col(func(f detectionFigures) float64 { return 100 * f.p1Share }, false, "%.0f%%"),
			col(func(f detectionFigures) float64 { return f.pages }, true, "%.1f"),
			col(func(f detectionFigures) float64 { return f.p2 }, true, "%.1f"),
			col(func(f detectionFigures) float64 { return f.falseP2 }, true, "%.1f"),
			col(func(f detectionFigures) float64 { return f.caughtP1 }, false, "%.0f"),
			col(func(f detectionFigures) float64 { return f.caughtP2 }, false, "%.0f"),
			col(func(f detectionFigures) float64 { return f.caughtAll }, false, "%.0f"), inc,
			col(func(f detectionFigures) float64 { return f.controlsAbove }, true, "%.0f"),
			col(func(f detectionFigures) float64 { return f.targets }, false, "%.0f"), fs[0].nTargets)
	}
	// The targets of the first setting (the defaults), seed by seed.
	if len(res.Settings) > 0 {
		fmt.Fprintf(&b, "\nTargets under %q, seed by seed:\n\n| target |", res.Settings[0].Name)
		var first []DetectionRun
		for _, r := range res.Runs {
			if r.Setting == res.Settings[0].Name {
				first = append(first, r)
				fmt.Fprintf(&b, " seed %d |", r.Seed)
			}
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(first)) + "\n")
		if len(first) > 0 {
			for i, t := range first[0].Report.Targets {
				fmt.Fprintf(&b, "| %s |", t.Name)
				for _, r := range first {
					tg := r.Report.Targets[i]
					res := "met"
					if !tg.Pass {
						res = "**missed**"
					}
					fmt.Fprintf(&b, " %s: %s |", res, strings.ReplaceAll(tg.Detail, "|", "/"))
				}
				b.WriteString("\n")
			}
		}
	}
	b.WriteString("\n" + detectionEnd + "\n")
	return replaceSection(path, detectionBegin, detectionEnd, b.String())
}

const (
	detectionBegin = "<!-- detection quality: begin (generated by riskwatch-bench --detection; edits are overwritten) -->"
	detectionEnd   = "<!-- detection quality: end -->"
)

// replaceSection puts section between begin and end in the file at path,
// or appends it when the markers are missing.
func replaceSection(path, begin, end, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + strings.TrimSuffix(section, "\n") + s[j+len(end):]
	default:
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s += "\n"
		}
		s += section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
