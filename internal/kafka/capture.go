package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/bootstrap"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
)

// CaptureOptions configure a capture process.
type CaptureOptions struct {
	Config      *config.Config
	DB          *store.DB
	Logger      *slog.Logger
	Registry    prometheus.Registerer
	ProgressOut io.Writer
	// Client adds franz-go options (tests shorten timeouts).
	Client []kgo.Opt
	Now    func() time.Time
}

// Capture reads the source's change stream once (a PostgreSQL replication
// slot, or a MySQL/MariaDB binlog) and publishes every inserted row of a
// mapped table to the topic, keyed by merchant, in Debezium's envelope;
// the source is confirmed (and the sink's checkpoint moved) only up to
// what Kafka acknowledged, so a crash republishes (at least once) and
// never skips. Watermarks on every partition tell workers how far the
// source is published.
type Capture struct {
	opts  CaptureOptions
	cfg   *config.Config
	log   *slog.Logger
	src   captureSource
	agg   *aggregates.Store
	fence partitions
	now   func() time.Time
	m     *captureMetrics
}

// captureSource is a source database as capture reads it: the engine's
// source (preparation, first snapshot, heartbeats), streamed with each
// transaction's rows, and the rows placed in Debezium's source block.
type captureSource interface {
	engine.Source
	// streamRows delivers the transactions committed after start, with
	// their Rows, confirming to the server only durable().
	streamRows(ctx context.Context, start string, durable func() string, out chan<- *source.Txn) error
	// locate fills the source block of the i-th row of txn: the connector,
	// database and position that order it.
	locate(txn *source.Txn, i int, s *Source)
	// mark is the number a watermark carries for a position (a
	// transaction's end, in the source's text).
	mark(pos string) (uint64, error)
}

// NewCapture checks the configuration and builds a capture.
func NewCapture(opts CaptureOptions) (*Capture, error) {
	if err := opts.Config.ValidateKafka(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	src, err := newCaptureSource(opts.Config, opts.Logger, opts.Registry)
	if err != nil {
		return nil, err
	}
	return &Capture{opts: opts, cfg: opts.Config, log: opts.Logger, src: src, agg: aggregates.New(opts.DB), fence: partitions{opts.DB},
		now: opts.Now, m: newCaptureMetrics(opts.Registry)}, nil
}

// Run publishes until ctx is done, restarting from the last acknowledged
// position after failures of the source or Kafka.
func (c *Capture) Run(ctx context.Context) error {
	return engine.Supervise(ctx, c.cfg, c.now, c.session, func(err error, backoff time.Duration) {
		c.log.Warn("capture stopped; restarting from the last published position", "err", err, "backoff", backoff)
	})
}

// ensureTopic creates the topic when missing and returns its partitions'
// end offsets.
func (c *Capture) ensureTopic(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	k := c.cfg.Kafka
	resp, err := adm.CreateTopic(ctx, int32(k.Partitions), int16(k.ReplicationFactor), nil, k.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return nil, fmt.Errorf("creating topic %s: %w", k.Topic, err)
	}
	if err == nil {
		c.log.Info("created topic", "topic", k.Topic, "partitions", k.Partitions)
	}
	ends, err := adm.ListEndOffsets(ctx, k.Topic)
	if err != nil {
		return nil, fmt.Errorf("reading end offsets of %s: %w", k.Topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			out[o.Partition] = o.Offset
		}
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s has no readable partitions", k.Topic)
	}
	return out, nil
}

func (c *Capture) session(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Kafka.Brokers...),
		// Partitions are chosen here (merchant hash, or every partition
		// for a watermark), with Kafka's own hash for keys.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic(c.cfg.Kafka.Topic),
		kgo.ProducerLinger(0),
		kgo.ClientID("riskwatch-capture"),
	}, c.opts.Client...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := c.ensureTopic(ctx, adm)
	if err != nil {
		return err
	}
	if err := c.src.Prepare(ctx); err != nil {
		return fmt.Errorf("preparing source: %w", err)
	}
	if _, err := bootstrap.Start(ctx, c.src, c.agg, bootstrap.Options{Slot: c.cfg.Source.Slot, Location: c.cfg.Location, Grace: c.cfg.Grace.D(),
		Logger: c.log, ProgressOut: c.opts.ProgressOut, Now: c.now}); err != nil {
		return err
	}
	// From here on this session is the checkpoint's only writer.
	cp, err := c.agg.Claim(ctx, c.cfg.Source.Slot)
	if err != nil {
		return err
	}
	// Partitions started from another snapshot (or never) begin at the
	// topic's end now: everything before the snapshot is in the sink.
	started, err := c.fence.Snapshots(ctx, c.cfg.Kafka.Topic)
	if err != nil {
		return err
	}
	fresh := len(started) != len(ends)
	for p := range ends {
		if pos, ok := started[p]; !ok || pos != cp.SnapshotPosition {
			fresh = true
		}
	}
	if fresh {
		if err := c.fence.Init(ctx, c.cfg.Kafka.Topic, ends, cp.Progress, cp.LastClosed, cp.SnapshotPosition); err != nil {
			return err
		}
		c.log.Info("partitions start after the first snapshot", "topic", c.cfg.Kafka.Topic, "partitions", len(ends), "snapshot", cp.SnapshotPosition)
	}
	mark, err := c.src.mark(cp.Position)
	if err != nil {
		return err
	}
	pub := &publisher{c: c, cl: cl, partitions: int32(len(ends)), acked: cp.Position, ackedMark: mark, lastEnd: cp.Position, lastMark: mark,
		progressUS: cp.Progress.UnixMicro(), cp: cp}
	pub.durable.Store(&cp.Position)
	txns := make(chan *source.Txn, c.cfg.Pipeline.QueueSize)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.src.streamRows(gctx, cp.Position, pub.flushed, txns) })
	g.Go(func() error {
		return c.src.Heartbeat(gctx, func(d time.Duration) bool { return c.src.Quiet(c.now(), d) })
	})
	g.Go(func() error { return pub.run(gctx, txns) })
	return g.Wait()
}

// newCaptureSource is the source the DSN's scheme names.
func newCaptureSource(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (captureSource, error) {
	if cfg.Source.IsMySQL() {
		src, err := binlog.FromConfig(cfg, log, reg)
		if err != nil {
			return nil, err
		}
		src.KeepRows()
		return mysqlCapture{src}, nil
	}
	src, err := source.FromConfig(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	pc, err := pgx.ParseConfig(cfg.Source.DSN)
	if err != nil {
		return nil, fmt.Errorf("parsing source dsn: %w", err)
	}
	return pgCapture{src, pc.Database}, nil
}

// pgCapture is a PostgreSQL source: rows come from the slot's pgoutput
// stream; a row's position is its commit's end LSN and its place in the
// transaction (source.sequence).
type pgCapture struct {
	*source.Source
	db string
}

func (s pgCapture) streamRows(ctx context.Context, start string, durable func() string, out chan<- *source.Txn) error {
	from, err := source.ParseLSN(start)
	if err != nil {
		return err
	}
	return s.Stream(ctx, source.StreamOptions{Start: from, Out: out, Rows: true, Flushed: func() source.LSN {
		// durable() only ever holds positions this source wrote.
		lsn, _ := source.ParseLSN(durable())
		return lsn
	}})
}

func (s pgCapture) locate(txn *source.Txn, i int, src *Source) {
	end := uint64(txn.End.(source.LSN))
	src.Connector, src.DB, src.Schema, src.LSN = "postgresql", s.db, txn.Rows[i].Schema, end
	// The commit's end and the row's place in it: a position that only
	// grows in commit order, which is what workers deduplicate
	// redeliveries by.
	src.Sequence = [2]uint64{end, uint64(i + 1)}
}

func (s pgCapture) mark(pos string) (uint64, error) {
	lsn, err := source.ParseLSN(pos)
	return uint64(lsn), err
}

// mysqlCapture is a MySQL or MariaDB source: rows come from the binlog
// stream, rendered as Debezium's MySQL connector renders them; a row's
// position is its transaction's end (file and offset) and its place in
// the transaction (source.row), see docs/kafka.md.
type mysqlCapture struct{ *binlog.Source }

func (s mysqlCapture) streamRows(ctx context.Context, start string, durable func() string, out chan<- *source.Txn) error {
	return s.Deliver(ctx, start, durable, out, func() {})
}

func (s mysqlCapture) locate(txn *source.Txn, i int, src *Source) {
	end := txn.End.(binlog.Position)
	src.Connector, src.DB, src.File, src.Pos, src.Row = connectorMySQL, txn.Rows[i].Schema, end.File, uint64(end.Pos), uint64(i)
}

func (s mysqlCapture) mark(pos string) (uint64, error) {
	p, err := binlog.ParsePosition(pos)
	if err != nil {
		return 0, err
	}
	bp, err := BinlogPosition(p.File, uint64(p.Pos), 0)
	return bp.Commit, err
}
