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

// Capture reads the source's replication slot once and publishes every
// inserted row of a mapped table to the topic, keyed by merchant, in
// Debezium's envelope; the slot is confirmed only up to what Kafka
// acknowledged, so a crash republishes (at least once) and never skips.
// Watermarks on every partition tell workers how far the source is
// published.
type Capture struct {
	opts  CaptureOptions
	cfg   *config.Config
	log   *slog.Logger
	src   *source.Source
	agg   *aggregates.Store
	fence partitions
	now   func() time.Time
	db    string
	m     *captureMetrics
}

// NewCapture checks the configuration and builds a capture.
func NewCapture(opts CaptureOptions) (*Capture, error) {
	if err := opts.Config.ValidateKafka(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	src, err := source.FromConfig(opts.Config, opts.Logger, opts.Registry)
	if err != nil {
		return nil, err
	}
	pc, err := pgx.ParseConfig(opts.Config.Source.DSN)
	if err != nil {
		return nil, fmt.Errorf("parsing source dsn: %w", err)
	}
	return &Capture{opts: opts, cfg: opts.Config, log: opts.Logger, src: src, agg: aggregates.New(opts.DB), fence: partitions{opts.DB},
		now: opts.Now, db: pc.Database, m: newCaptureMetrics(opts.Registry)}, nil
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
	start, err := source.ParseLSN(cp.Position)
	if err != nil {
		return err
	}
	pub := &publisher{c: c, cl: cl, partitions: int32(len(ends)), acked: start, progressUS: cp.Progress.UnixMicro(), cp: cp}
	pub.durable.Store(uint64(start))
	txns := make(chan *source.Txn, c.cfg.Pipeline.QueueSize)
	tracker := &source.Tracker{}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return c.src.Stream(gctx, source.StreamOptions{
			Start: start, Flushed: pub.flushed, Tracker: tracker, Out: txns, Rows: true,
		})
	})
	g.Go(func() error {
		return c.src.Heartbeat(gctx, func(d time.Duration) bool { return tracker.Quiet(c.now(), d) })
	})
	g.Go(func() error { return pub.run(gctx, txns) })
	return g.Wait()
}
