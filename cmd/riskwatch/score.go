package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/score"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// cmdSimScore replays [from, to) as `backtest` does (or reads a backtest's
// JSON lines) and scores its alerts against the simulator's ground truth.
func cmdSimScore(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("sim score", stderr)
	truthPath := fs.String("truth", "", "the ground truth file `sim history --truth` wrote (required)")
	fromS := fs.String("from", "", "first minute scored: RFC 3339 time or a date (YYYY-MM-DD) in the business time zone")
	toS := fs.String("to", "", "end (exclusive): same forms as --from")
	linesPath := fs.String("backtest", "", "score these `backtest` JSON lines instead of replaying the sink")
	format := fs.String("format", "table", "table or json")
	cfg, log, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	if *truthPath == "" {
		return usageError{"sim score: --truth is required"}
	}
	if *format != "json" && *format != "table" {
		return usageError{fmt.Sprintf("--format must be json or table, got %q", *format)}
	}
	from, to, err := timeRange(*fromS, *toS, cfg.Location)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(*truthPath)
	if err != nil {
		return fmt.Errorf("--truth: %w", err)
	}
	truth, err := score.ParseTruth(b)
	if err != nil {
		return fmt.Errorf("--truth %s: %w", *truthPath, err)
	}
	var trs []score.Transition
	add := func(t score.Transition) { trs = append(trs, t) }
	if *linesPath != "" {
		if err := readTransitions(*linesPath, add); err != nil {
			return err
		}
	} else {
		err = withStore(ctx, cfg, func(st *store.DB) error {
			o := engine.BacktestOptions{From: window.MinuteOf(from), To: window.MinuteOf(to.Add(-time.Nanosecond)) + 1, ProgressOut: stderr, Logger: log,
				Emit: func(tr engine.Transition) error {
					add(score.Transition{Rule: tr.Rule, MerchantID: tr.MerchantID, State: tr.State, Minute: tr.Minute,
						Priority: tr.Priority, Notify: tr.Notify, NotifyPriority: tr.NotifyPriority})
					return nil
				}}
			return engine.Backtest(ctx, aggregates.New(st), cfg, o)
		})
		if err != nil {
			return err
		}
	}
	r, err := score.Score(truth, trs, from, to)
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.WriteTable(stdout)
}

// readTransitions reads `backtest` JSON lines.
func readTransitions(path string, add func(score.Transition)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--backtest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		var t score.Transition
		if err := json.Unmarshal(sc.Bytes(), &t); err != nil {
			return fmt.Errorf("--backtest %s line %d: %w", path, n, err)
		}
		add(t)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--backtest %s: %w", path, err)
	}
	return nil
}
