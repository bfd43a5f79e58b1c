package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// parseInterspersed parses flags that may come before or after positional
// arguments ("ack 17 --by kim" as well as "ack --by kim 17"); Go's flag
// package alone stops at the first positional.
func parseInterspersed(fs flags, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func cmdBacktest(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("backtest", stderr)
	fromS := fs.String("from", "", "first minute evaluated: RFC 3339 time or a date (YYYY-MM-DD) in the business time zone")
	toS := fs.String("to", "", "end (exclusive): same forms as --from")
	format := fs.String("format", "json", "json (one object per line) or table")
	cfg, log, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	if *format != "json" && *format != "table" {
		return usageError{fmt.Sprintf("--format must be json or table, got %q", *format)}
	}
	from, to, err := timeRange(*fromS, *toS, cfg.Location)
	if err != nil {
		return err
	}
	return withStore(ctx, cfg, func(st *store.DB) error {
		// Minutes are whole: a from inside a minute starts at that minute.
		o := engine.BacktestOptions{From: window.MinuteOf(from), To: window.MinuteOf(to.Add(-time.Nanosecond)) + 1, ProgressOut: stderr, Logger: log}
		var table *tabwriter.Writer
		enc := json.NewEncoder(stdout)
		if *format == "table" {
			table = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(table, "MINUTE\tRULE\tMERCHANT\tSTATE\tPRIORITY\tVALUES")
			defer table.Flush()
		}
		o.Emit = func(tr engine.Transition) error {
			if table == nil {
				return enc.Encode(tr)
			}
			_, err := fmt.Fprintf(table, "%s\t%s\t%d\t%s\t%s\t%s\n", tr.Minute, tr.Rule, tr.MerchantID, tr.State, tr.Priority, formatValues(tr.Values))
			return err
		}
		return engine.Backtest(ctx, aggregates.New(st), cfg, o)
	})
}

func timeRange(fromS, toS string, loc *time.Location) (time.Time, time.Time, error) {
	from, err := parseTime(fromS, loc)
	if err != nil {
		return from, from, usageError{fmt.Sprintf("--from: %v", err)}
	}
	to, err := parseTime(toS, loc)
	if err != nil {
		return from, to, usageError{fmt.Sprintf("--to: %v", err)}
	}
	if !from.Before(to) {
		return from, to, usageError{fmt.Sprintf("--from %s is not before --to %s", fromS, toS)}
	}
	return from, to, nil
}

// formatValues renders values as k=v pairs in key order.
func formatValues(v map[string]any) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		switch x := v[k].(type) {
		case nil:
			parts[i] = k + "=null"
		case float64:
			parts[i] = k + "=" + strconv.FormatFloat(x, 'g', 6, 64)
		default:
			parts[i] = fmt.Sprintf("%s=%v", k, x)
		}
	}
	return strings.Join(parts, " ")
}

func cmdAlerts(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("alerts", stderr)
	state := fs.String("state", "firing", "firing, resolved or all")
	rule := fs.String("rule", "", "only this rule")
	merchant := fs.Int64("merchant", 0, "only this merchant")
	limit := fs.Int("limit", 100, "at most this many, newest first")
	format := fs.String("format", "table", "table or json")
	cfg, _, err := setup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	f := alertstore.AlertFilter{State: *state, Rule: *rule, Merchant: *merchant, Limit: *limit}
	switch *state {
	case "all":
		f.State = ""
	case "firing", "resolved":
	default:
		return usageError{fmt.Sprintf("--state must be firing, resolved or all, got %q", *state)}
	}
	return withStore(ctx, cfg, func(st *store.DB) error {
		list, err := alertstore.New(st).Alerts(ctx, f)
		if err != nil {
			return err
		}
		if *format == "json" {
			enc := json.NewEncoder(stdout)
			for _, a := range list {
				if err := enc.Encode(alertJSON(a, cfg.Location)); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		defer tw.Flush()
		fmt.Fprintln(tw, "ID\tRULE\tMERCHANT\tSTATE\tSINCE\tACK\tVALUES")
		for _, a := range list {
			ack := "-"
			if a.Ack != nil {
				ack = a.Ack.By
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", a.ID, a.Rule, a.Merchant, a.State, a.ActiveAt.In(cfg.Location).Format("2006-01-02 15:04"), ack, formatValues(a.Values))
		}
		return nil
	})
}

func alertJSON(a *alert.Alert, loc *time.Location) map[string]any {
	out := map[string]any{
		"id": a.ID, "rule": a.Rule, "merchant_id": a.Merchant, "state": a.State.String(),
		"active_at": a.ActiveAt.UTC().Format(time.RFC3339), "last_eval_at": a.LastEvalAt.UTC().Format(time.RFC3339), "values": a.Values,
	}
	if !a.ResolvedAt.IsZero() {
		out["resolved_at"] = a.ResolvedAt.UTC().Format(time.RFC3339)
	}
	if a.Ack != nil {
		out["ack"] = map[string]any{"by": a.Ack.By, "at": a.Ack.At.UTC().Format(time.RFC3339), "comment": a.Ack.Comment}
	}
	return out
}

func cmdAck(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("ack", stderr)
	by := fs.String("by", "", "who acknowledges (required)")
	comment := fs.String("comment", "", "why, what is being done")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"ack: exactly one alert ID expected"}
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return usageError{fmt.Sprintf("ack: alert ID must be a positive integer, got %q", pos[0])}
	}
	if strings.TrimSpace(*by) == "" {
		return usageError{"ack: --by is required"}
	}
	cfg, _, err := setup(fs, nil, stderr, getenv)
	if err != nil {
		return err
	}
	return withStore(ctx, cfg, func(st *store.DB) error {
		a, err := alertstore.New(st).Ack(ctx, id, alertstore.Actor{Name: *by, Via: alertstore.ViaCLI}, *comment, time.Now())
		if err != nil {
			if errors.Is(err, alertstore.ErrNotFound) || errors.Is(err, alertstore.ErrNotOpen) {
				return err
			}
			return fmt.Errorf("ack: %w", err)
		}
		fmt.Fprintf(stdout, "acknowledged alert %d (%s, merchant %d) by %s\n", a.ID, a.Rule, a.Merchant, a.Ack.By)
		return nil
	})
}

func cmdSilence(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return usageError{"silence: missing subcommand (add, list or expire)"}
	}
	sub, args := args[0], args[1:]
	fs := newFlags("silence "+sub, stderr)
	switch sub {
	case "add":
		merchant := fs.Int64("merchant", 0, "merchant to silence (required)")
		rule := fs.String("rule", "", "only this rule (default: every rule)")
		until := fs.String("until", "", "end: RFC 3339 time or a date in the business time zone")
		dur := fs.Duration("for", 0, "end as a duration from now (instead of --until)")
		reason := fs.String("reason", "", "why (required): a known promotion, a merchant under review")
		by := fs.String("by", "", "who (required)")
		cfg, _, err := setup(fs, args, stderr, getenv)
		if err != nil {
			return err
		}
		now := time.Now()
		var ends time.Time
		switch {
		case *until != "" && *dur != 0:
			return usageError{"silence add: give --until or --for, not both"}
		case *until != "":
			if ends, err = parseTime(*until, cfg.Location); err != nil {
				return usageError{fmt.Sprintf("--until: %v", err)}
			}
		case *dur > 0:
			ends = now.Add(*dur)
		default:
			return usageError{"silence add: --until or --for is required"}
		}
		if *merchant <= 0 || strings.TrimSpace(*reason) == "" || strings.TrimSpace(*by) == "" {
			return usageError{"silence add: --merchant, --reason and --by are required"}
		}
		if *rule != "" && *rule != "cancel_rate_spike" && *rule != "volume_drop" {
			return usageError{fmt.Sprintf("--rule must be cancel_rate_spike or volume_drop, got %q", *rule)}
		}
		if !ends.After(now) {
			return usageError{"silence add: the end is in the past"}
		}
		return withStore(ctx, cfg, func(st *store.DB) error {
			sl, err := alertstore.New(st).AddSilence(ctx, alertstore.Silence{Merchant: *merchant, Rule: *rule, StartsAt: now, EndsAt: ends, Reason: *reason},
				alertstore.Actor{Name: *by, Via: alertstore.ViaCLI})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "silence %d: merchant %d, %s, until %s\n", sl.ID, sl.Merchant, ruleOrAll(sl.Rule), sl.EndsAt.In(cfg.Location).Format(time.RFC3339))
			return nil
		})
	case "list":
		cfg, _, err := setup(fs, args, stderr, getenv)
		if err != nil {
			return err
		}
		return withStore(ctx, cfg, func(st *store.DB) error {
			list, err := alertstore.New(st).Silences(ctx, time.Now())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			defer tw.Flush()
			fmt.Fprintln(tw, "ID\tMERCHANT\tRULE\tUNTIL\tBY\tREASON")
			for _, s := range list {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Merchant, ruleOrAll(s.Rule), s.EndsAt.In(cfg.Location).Format("2006-01-02 15:04"), s.CreatedBy, s.Reason)
			}
			return nil
		})
	case "expire":
		by := fs.String("by", "", "who expires it, for the audit (default: the operating system user)")
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageError{"silence expire: exactly one silence ID expected"}
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("silence expire: bad ID %q", pos[0])}
		}
		cfg, _, err := setup(fs, nil, stderr, getenv)
		if err != nil {
			return err
		}
		return withStore(ctx, cfg, func(st *store.DB) error {
			who := strings.TrimSpace(*by)
			if who == "" {
				who = osUser(getenv)
			}
			if _, err := alertstore.New(st).ExpireSilence(ctx, id, time.Now(), alertstore.Actor{Name: who, Via: alertstore.ViaCLI}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "silence %d expired\n", id)
			return nil
		})
	}
	return usageError{fmt.Sprintf("silence: unknown subcommand %q", sub)}
}

func ruleOrAll(r string) string {
	if r == "" {
		return "all rules"
	}
	return r
}

// osUser names who runs the CLI when no --by says so: the audit needs a
// name, and the login is what the sink's DSN holder has.
func osUser(getenv func(string) string) string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return "unknown"
}
