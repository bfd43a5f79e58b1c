// Command riskwatch-bench runs riskwatch at full load on this machine and
// writes what it measured: a private PostgreSQL for the source and one for
// the sink, the simulator and the engine as child processes (the riskwatch
// binary), PostgreSQL's own clients as floors beside them. It is kept out
// of the product binary, as Prometheus keeps promtool apart. `make bench`
// runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/riskwatch/riskwatch/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "riskwatch-bench: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("riskwatch-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	riskwatch := fs.String("riskwatch", "", "the riskwatch binary to measure (default: riskwatch beside this program, else on PATH)")
	quick := fs.Bool("quick", false, "reduced run for CI (10,000 merchants, 300,000 payments/day, short phases); not the targets' scale")
	out := fs.String("out", "artifacts/bench", "directory for results.json, the plots and the processes' logs (default artifacts/bench-mariadb with --source mariadb)")
	src := fs.String("source", bench.SourcePostgres, "the transaction database riskwatch reads: postgres or mariadb (a private server either way; the sink is a private PostgreSQL)")
	markdown := fs.String("markdown", "", "rewrite the generated section of this file (BENCHMARKS.md) with the results")
	goBench := fs.String("go-bench", "", "benchstat output to include in the markdown (scripts/bench-go.sh writes it)")
	only := fs.String("scenarios", "", "comma-separated subset to run: bootstrap, peak, restart, catch-up, baseline (default all)")
	detection := fs.Bool("detection", false, "measure detection quality instead: the realistic history with the scored day's incidents, scored per priority setting for each of --seeds (writes detection.json and --markdown's detection section)")
	seeds := fs.String("seeds", "1,2,3", "with --detection: comma-separated simulator seeds")
	settings := fs.String("settings", "", "with --detection: a JSON array of rules.priority settings to score (default: the built-in trade-off points)")
	replot := fs.Bool("replot", false, "measure nothing: redraw the plots and the markdown from --out's results.json (with --detection: the detection section from --out's detection.json)")
	publish := fs.String("publish", "", "copy results.json and the plots here (a committed folder) and link them from the markdown")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bench: unexpected argument %q", fs.Arg(0))}
	}
	switch *src {
	case bench.SourcePostgres:
	case bench.SourceMariaDB:
		if *detection {
			return usageError{"bench: --detection measures the PostgreSQL path only; leave out --source mariadb"}
		}
		outSet := false
		fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
		if !outSet {
			*out = "artifacts/bench-mariadb"
		}
	default:
		return usageError{fmt.Sprintf("bench: --source %q: want %s or %s", *src, bench.SourcePostgres, bench.SourceMariaDB)}
	}
	if *replot && !*detection {
		res, err := bench.Replot(*out)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return writeBenchMarkdown(stdout, res, *markdown, *out, *publish, *goBench)
	}
	if *detection && *replot {
		b, err := os.ReadFile(filepath.Join(*out, "detection.json"))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		var res bench.DetectionResults
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("bench: %s: %w", filepath.Join(*out, "detection.json"), err)
		}
		return writeDetectionMarkdown(stdout, &res, *out, *markdown, *publish)
	}
	if *detection {
		return runDetection(ctx, stdout, stderr, *riskwatch, *out, *seeds, *settings, *markdown, *publish, *quick, args)
	}
	var scenarios []string
	if *only != "" {
		scenarios = strings.Split(*only, ",")
	}
	bin, err := riskwatchBinary(*riskwatch)
	if err != nil {
		return err
	}
	res, err := bench.Run(ctx, bench.Options{Riskwatch: bin, Out: *out, Quick: *quick, Only: scenarios, Source: *src,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)), Command: strings.TrimSpace("riskwatch-bench " + strings.Join(args, " "))})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stdout, "results: %s\n", filepath.Join(*out, "results.json"))
	return writeBenchMarkdown(stdout, res, *markdown, *out, *publish, *goBench)
}

// riskwatchBinary finds the binary to measure.
func riskwatchBinary(flagged string) (string, error) {
	if flagged != "" {
		return filepath.Abs(flagged)
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "riskwatch")
		if st, err := os.Stat(beside); err == nil && !st.IsDir() {
			return beside, nil
		}
	}
	p, err := exec.LookPath("riskwatch")
	if err != nil {
		return "", usageError{"no riskwatch binary beside this program or on PATH: build it (make build) or pass --riskwatch"}
	}
	return p, nil
}

func writeBenchMarkdown(stdout io.Writer, res *bench.Results, markdown, out, publish, goBenchFile string) error {
	if markdown != "" {
		var gb string
		if goBenchFile != "" {
			b, err := os.ReadFile(goBenchFile)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			gb = string(b)
		}
		linked := out
		if publish != "" {
			if err := copyResults(out, publish); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			linked = publish
		}
		rel, err := filepath.Rel(filepath.Dir(markdown), linked)
		if err != nil {
			rel = linked
		}
		if err := bench.WriteMarkdown(markdown, res, filepath.ToSlash(rel), gb); err != nil {
			return fmt.Errorf("bench: writing %s: %w", markdown, err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", markdown)
	}
	return nil
}

// copyResults copies results.json and the plots from dir to dst.
func copyResults(dir, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.svg"))
	if err != nil {
		return err
	}
	for _, f := range append(files, filepath.Join(dir, "results.json")) {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runDetection runs the detection-quality measurement.
func runDetection(ctx context.Context, stdout, stderr io.Writer, riskwatch, out, seedList, settingsFile, markdown, publish string, quick bool, args []string) error {
	var seeds []uint64
	for _, f := range strings.Split(seedList, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("--seeds: %q is not a seed", f)}
		}
		seeds = append(seeds, n)
	}
	bin, err := riskwatchBinary(riskwatch)
	if err != nil {
		return err
	}
	o := bench.DetectionOptions{Riskwatch: bin, Out: out, Seeds: seeds, Logger: slog.New(slog.NewTextHandler(stderr, nil)),
		Command: strings.TrimSpace("riskwatch-bench " + strings.Join(args, " "))}
	if quick {
		o.Merchants, o.PaymentsPerDay = 10_000, 300_000
	}
	if settingsFile != "" {
		if o.Settings, err = bench.ReadSettings(settingsFile); err != nil {
			return usageError{fmt.Sprintf("--settings: %v", err)}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	res, err := bench.Detection(ctx, o)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stdout, "results: %s\n", filepath.Join(out, "detection.json"))
	return writeDetectionMarkdown(stdout, res, out, markdown, publish)
}

// writeDetectionMarkdown publishes detection.json and rewrites the
// markdown's detection section.
func writeDetectionMarkdown(stdout io.Writer, res *bench.DetectionResults, out, markdown, publish string) error {
	if markdown == "" {
		return nil
	}
	linked := out
	if publish != "" {
		if err := os.MkdirAll(publish, 0o755); err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(out, "detection.json"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(publish, "detection.json"), b, 0o644); err != nil {
			return err
		}
		linked = publish
	}
	rel, err := filepath.Rel(filepath.Dir(markdown), linked)
	if err != nil {
		rel = linked
	}
	if err := bench.WriteDetectionMarkdown(markdown, res, filepath.ToSlash(rel)); err != nil {
		return fmt.Errorf("bench: writing %s: %w", markdown, err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", markdown)
	return nil
}
