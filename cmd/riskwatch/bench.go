package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/riskwatch/riskwatch/internal/bench"
)

// cmdBench runs the full-load benchmarks (issue 6) on this machine: a
// private PostgreSQL, the simulator and the engine as child processes.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "reduced run for CI (10,000 merchants, 300,000 payments/day, short phases); not the targets' scale")
	out := fs.String("out", "artifacts/bench", "directory for results.json, the plots and the processes' logs")
	markdown := fs.String("markdown", "", "rewrite the generated section of this file (BENCHMARKS.md) with the results")
	goBench := fs.String("go-bench", "", "benchstat output to include in the markdown (scripts/bench-go.sh writes it)")
	only := fs.String("scenarios", "", "comma-separated subset to run: bootstrap, peak, restart, catch-up, baseline (default all)")
	replot := fs.Bool("replot", false, "measure nothing: redraw the plots and the markdown from --out's results.json")
	publish := fs.String("publish", "", "copy results.json and the plots here (a committed folder) and link them from the markdown")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bench: unexpected argument %q", fs.Arg(0))}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: finding the riskwatch binary: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	command := "riskwatch bench " + strings.Join(args, " ")
	if *replot {
		res, err := bench.Replot(*out)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return writeBenchMarkdown(stdout, res, *markdown, *out, *publish, *goBench)
	}
	var scenarios []string
	if *only != "" {
		scenarios = strings.Split(*only, ",")
	}
	res, err := bench.Run(ctx, bench.Options{Self: self, Out: *out, Quick: *quick, Only: scenarios, Logger: log, Command: strings.TrimSpace(command)})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stdout, "results: %s\n", filepath.Join(*out, "results.json"))
	return writeBenchMarkdown(stdout, res, *markdown, *out, *publish, *goBench)
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
