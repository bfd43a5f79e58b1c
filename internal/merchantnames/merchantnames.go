// Package merchantnames copies merchant names from the source database to the
// sink, so that the dashboard can search and label merchants.
//
// Names are display data: no rule reads them, and a name that is a minute
// old is fine. The merchants table is small and cold (100,000 rows that
// change rarely), but reading all of it costs the source about 20 ms of a
// backend's CPU — a tenth of what its walsender spends on riskwatch in a
// minute at the average payment rate (BENCHMARKS.md). So each refresh only
// asks for ids above the highest one known, which new merchants get from
// the gateway's sequence (a primary-key range scan that usually returns
// nothing), and a full read every FullRefresh catches renames and ids
// issued out of order. Streaming the table through the replication slot
// would make the engine's exactly-once path carry data it does not need.
//
// The source may be PostgreSQL or MySQL/MariaDB (the DSN's scheme decides);
// only Reader differs.
package merchantnames

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/riskwatch/riskwatch/internal/store/dashboard"
)

// ApplicationName marks the sync's connections on the source, so that an
// operator (and the benchmark) can tell them apart in pg_stat_activity.
const ApplicationName = "riskwatch-names"

// Options configure a Sync.
type Options struct {
	SourceDSN string
	// Schema, Table, ID and Name name the source table and its columns.
	// On MySQL, Schema is a database; "public" (what an unqualified table
	// gets) means the DSN's.
	Schema, Table, ID, Name string
	// Refresh is how often new merchants are looked up; FullRefresh how
	// often every name is read again.
	Refresh, FullRefresh time.Duration
	Names                *dashboard.Store
	Logger               *slog.Logger
}

// Sync keeps the sink's merchant names up to date.
type Sync struct {
	opts  Options
	known map[int64]string // as last written to the sink
	maxID int64            // the highest id in known
}

// New returns a Sync; Run does the work.
func New(opts Options) *Sync { return &Sync{opts: opts} }

// Run copies every name now, then new merchants every Refresh and every
// name again every FullRefresh, until ctx is done. A failure (the table
// missing, the source down) is logged and retried at the next refresh, with
// a full read: names are never worth stopping the engine for.
func (s *Sync) Run(ctx context.Context) error {
	src, err := Open(ctx, s.opts.SourceDSN)
	if err != nil {
		return fmt.Errorf("merchant names: %w", err)
	}
	defer src.Close()
	t := time.NewTicker(s.opts.Refresh)
	defer t.Stop()
	failing := false
	var lastFull time.Time
	for {
		var n int
		var err error
		if s.known == nil || failing || time.Since(lastFull) >= s.opts.FullRefresh {
			n, err = s.Once(ctx, src)
			if err == nil {
				lastFull = time.Now()
			}
		} else {
			n, err = s.Newer(ctx, src)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			s.opts.Logger.Warn("merchant names not copied; the dashboard shows ids until it works", "err", err)
			failing = true
		case err == nil:
			if failing || n > 0 {
				s.opts.Logger.Info("merchant names copied", "changed", n, "known", len(s.known))
			}
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once reads the whole source table and writes the new and renamed
// merchants to the sink, returning how many it wrote.
func (s *Sync) Once(ctx context.Context, src Reader) (int, error) {
	return s.sync(ctx, src, false)
}

// Newer reads only the merchants with an id above the highest known (after
// Once has run) and writes them to the sink, returning how many it wrote.
func (s *Sync) Newer(ctx context.Context, src Reader) (int, error) {
	if s.known == nil {
		return s.Once(ctx, src)
	}
	return s.sync(ctx, src, true)
}

// sync reads every row, or with newer those with an id above the highest
// known, writes those that differ from what is known to the sink, and
// returns how many it wrote.
func (s *Sync) sync(ctx context.Context, src Reader, newer bool) (int, error) {
	o := s.opts
	if s.known == nil {
		// What the sink holds already (an engine restarted): only names
		// that differ are written, not the whole table again beside the
		// restore a restart waits for.
		known, err := o.Names.AllMerchantNames(ctx)
		if err != nil {
			return 0, err
		}
		s.known = known
	}
	seen := make(map[int64]string)
	if !newer {
		seen = make(map[int64]string, len(s.known))
	}
	var changed []dashboard.Merchant
	var maxID int64
	err := src.read(ctx, o, newer, s.maxID, func(m dashboard.Merchant) {
		if old, ok := s.known[m.ID]; !ok || old != m.Name {
			changed = append(changed, m)
		}
		seen[m.ID] = m.Name
		maxID = max(maxID, m.ID)
	})
	if err != nil {
		return 0, fmt.Errorf("reading %s.%s: %w", o.Schema, o.Table, err)
	}
	if err := s.write(ctx, changed); err != nil {
		return 0, err
	}
	if !newer {
		// Merchants deleted at the source keep their last name in the sink:
		// their history and alerts still need a label.
		s.known, s.maxID = seen, maxID
	} else {
		maps.Copy(s.known, seen)
		s.maxID = max(s.maxID, maxID)
	}
	return len(changed), nil
}

func (s *Sync) write(ctx context.Context, changed []dashboard.Merchant) error {
	for start := 0; start < len(changed); start += 10000 {
		if _, err := s.opts.Names.UpsertMerchants(ctx, changed[start:min(start+10000, len(changed))]); err != nil {
			return err
		}
	}
	return nil
}
