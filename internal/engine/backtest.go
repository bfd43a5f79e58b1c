package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// Transition is one alert starting, escalating or resolving, as the
// backtest prints it. Priority is the alert's at that transition; Notify
// and NotifyPriority are the notification it sends and the priority it is
// routed at (none while nothing is sent, e.g. a silent priority update).
type Transition struct {
	Rule           string         `json:"rule"`
	MerchantID     int64          `json:"merchant_id"`
	State          string         `json:"state"`
	Minute         string         `json:"minute"`
	Values         map[string]any `json:"values"`
	Priority       string         `json:"priority"`
	Notify         string         `json:"notify,omitempty"`
	NotifyPriority string         `json:"notify_priority,omitempty"`
}

// BacktestOptions say what to replay.
type BacktestOptions struct {
	// From and To: every minute M with From <= M < To is evaluated.
	From, To window.Minute
	// Emit receives each transition in order.
	Emit func(Transition) error
	// ProgressOut and Logger show progress (stderr / slog.Default when nil).
	ProgressOut io.Writer
	Logger      *slog.Logger
}

// backtestChunk is how many minutes are read from the sink at once.
const backtestChunk = 60

// Backtest replays stored aggregates minute by minute through the same rule
// and lifecycle code as the live engine (SPEC §8): it starts with no open
// alerts, evaluates each minute with exactly the data whose transaction time
// is before the minute's end, and reports every transition labelled with the
// minute. It sends nothing and needs only the sink.
func Backtest(ctx context.Context, st *aggregates.Store, cfg *config.Config, o BacktestOptions) error {
	if o.To <= o.From {
		return fmt.Errorf("backtest: empty range %s..%s", o.From, o.To)
	}
	ev, err := NewEvaluator(ctx, st, cfg, o.From-1, false, nil)
	if err != nil {
		return err
	}
	rep := progress.New("backtest", "minutes", int64(o.To-o.From), progress.Options{Out: o.ProgressOut, Logger: o.Logger})
	defer rep.Done()
	for chunk := o.From; chunk < o.To; chunk += backtestChunk {
		end := min(chunk+backtestChunk, o.To)
		rows, err := st.Minutes(ctx, chunk, end)
		if err != nil {
			return err
		}
		for m := chunk; m < end; m++ {
			n := 0
			for n < len(rows) && rows[n].Minute == m {
				ev.State.Add(rows[n])
				n++
			}
			rows = rows[n:]
			changes, err := ev.Close(ctx, m, m, nil)
			if err != nil {
				return err
			}
			for _, ch := range changes {
				name := ch.TransitionName()
				if name == "" {
					continue
				}
				t := Transition{Rule: ch.After.Rule, MerchantID: ch.After.Merchant, State: name, Minute: m.String(), Values: ch.Values,
					Priority: ch.After.Priority.String(), Notify: ch.Notify, NotifyPriority: ch.NotifyPriority.String()}
				if err := o.Emit(t); err != nil {
					return err
				}
			}
			rep.Add(1)
		}
	}
	return nil
}
