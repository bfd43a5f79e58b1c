// Command riskwatch is the real-time merchant risk engine: it reads the
// transaction database's change stream, keeps per-merchant minute aggregates
// and serves them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
)

// version is set at link time (make build).
var version = "dev"

const usage = `riskwatch — real-time merchant risk engine

Usage:
  riskwatch run            --config FILE   run the engine (CDC, aggregates, HTTP)
  riskwatch capture        --config FILE [--http ADDR]
                                           scale-out: publish the source's changes to Kafka
  riskwatch worker         --config FILE [--http ADDR] [--member NAME]
                                           scale-out: aggregate and evaluate in a consumer group
  riskwatch migrate        --config FILE [--reader-role NAME]
                                           create or upgrade the sink schema; with
                                           --reader-role, a read-only role for Grafana
  riskwatch slot status    --config FILE   show the replication slot
  riskwatch slot drop      --config FILE   drop the replication slot (the next run re-snapshots)
  riskwatch export minutes --config FILE --from T --to T
                                           stored minute aggregates as CSV
  riskwatch backtest       --config FILE --from T --to T [--format json|table]
                                           replay stored minutes through the rules; print transitions
  riskwatch alerts         --config FILE [--state firing|resolved|all] [--rule R] [--merchant M]
  riskwatch ack ID         --config FILE --by NAME [--comment TEXT]
  riskwatch silence add    --config FILE --merchant M [--rule R] (--until T | --for D) --reason TEXT --by NAME
  riskwatch silence list   --config FILE
  riskwatch silence expire ID --config FILE [--by NAME]
  riskwatch notify test    --config FILE --receiver NAME
                                           send one marked test notification through a receiver
  riskwatch sim history    [--config FILE | --dsn DSN] [--days 8] [--payments-per-day N] [--merchants N]
                           [--seed S] [--incidents=true] [--truth FILE] [--reload]
                           [--profile realistic] [--scored-day] [--now T]
                                           generate merchants and history into the source (COPY)
  riskwatch sim live       [--config FILE | --dsn DSN] [--tps N] [--burst-tps N] [--batch N] [--for D]
                                           commit live payments and cancels, incidents included
  riskwatch sim score      --config FILE --truth FILE --from T --to T [--backtest FILE] [--format table|json]
                                           score the alerts of [from, to) against the ground truth, per priority
  riskwatch version                        print the version

FILE is riskwatch.yaml; without --config, defaults apply and the DSNs come
from RISKWATCH_SOURCE_DSN / RISKWATCH_SINK_DSN.
`

// engineGCPercent is the garbage collector's GOGC for the long-running
// commands, unless GOGC is set. Their heap is mostly the rules state,
// long-lived and pointer-free, which a collection marks cheaply; at Go's
// default of 100 the heap grows to twice that state between collections,
// and the process's memory with it (BENCHMARKS.md, "Engine memory").
const engineGCPercent = 50

func main() {
	if len(os.Args) > 1 && slices.Contains([]string{"run", "worker", "capture"}, os.Args[1]) && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(engineGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "riskwatch: %v\n\n%s", err, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "riskwatch: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run dispatches a command line; main only adds the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return usageError{"missing command"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stderr, getenv)
	case "capture":
		return cmdCapture(ctx, rest, stderr, getenv)
	case "worker":
		return cmdWorker(ctx, rest, stderr, getenv)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr, getenv)
	case "slot":
		if len(rest) == 0 {
			return usageError{"slot: missing subcommand (status or drop)"}
		}
		switch rest[0] {
		case "status":
			return cmdSlotStatus(ctx, rest[1:], stdout, stderr, getenv)
		case "drop":
			return cmdSlotDrop(ctx, rest[1:], stdout, stderr, getenv)
		}
		return usageError{fmt.Sprintf("slot: unknown subcommand %q", rest[0])}
	case "export":
		if len(rest) == 0 || rest[0] != "minutes" {
			return usageError{"export: only \"export minutes\" exists"}
		}
		return cmdExportMinutes(ctx, rest[1:], stdout, stderr, getenv)
	case "backtest":
		return cmdBacktest(ctx, rest, stdout, stderr, getenv)
	case "alerts":
		return cmdAlerts(ctx, rest, stdout, stderr, getenv)
	case "ack":
		return cmdAck(ctx, rest, stdout, stderr, getenv)
	case "silence":
		return cmdSilence(ctx, rest, stdout, stderr, getenv)
	case "sim":
		return cmdSim(ctx, rest, stdout, stderr, getenv)
	case "notify":
		if len(rest) == 0 || rest[0] != "test" {
			return usageError{"notify: only \"notify test\" exists"}
		}
		return cmdNotifyTest(ctx, rest[1:], stdout, stderr, getenv)
	case "version":
		fs := newFlags("version", stderr)
		if err := fs.Parse(rest); err != nil {
			return usageError{err.Error()}
		}
		fmt.Fprintf(stdout, "riskwatch %s\n", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

type flags struct {
	*flag.FlagSet
	config *string
}

// newFlags returns a flag set with the --config flag every command takes.
func newFlags(name string, stderr io.Writer) flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return flags{FlagSet: fs, config: fs.String("config", "", "path to riskwatch.yaml")}
}
