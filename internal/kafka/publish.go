package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/source"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// publisher turns committed transactions into records, in commit order.
type publisher struct {
	c          *Capture
	cl         *kgo.Client
	partitions int32

	acked      string // every transaction ending here or before is acknowledged
	ackedMark  uint64 // acked as a watermark carries it
	progressUS int64  // commit time of the newest acknowledged transaction
	durable    atomic.Pointer[string]
	// lastEnd is the end of the newest transaction taken, lastMark its mark.
	lastEnd  string
	lastMark uint64

	watermarkUS   int64 // the last watermark written
	lastWatermark time.Time
	// cp is the sink's checkpoint for the slot, claimed by this session;
	// only its position moves (capture closes no minutes), recorded about
	// once a second.
	cp          aggregates.Checkpoint
	lastCheckpt time.Time
	recs        []*kgo.Record
}

func (p *publisher) flushed() string { return *p.durable.Load() }

// maxBatch bounds the transactions published per round trip: enough to
// amortise it at peak, few enough that acknowledgements keep flowing.
const maxBatch = 2048

func (p *publisher) run(ctx context.Context, txns <-chan *source.Txn) error {
	tick := time.NewTicker(p.c.cfg.Kafka.WatermarkInterval.D())
	defer tick.Stop()
	var batch []*source.Txn
	for {
		select {
		case <-ctx.Done():
			return nil
		case txn := <-txns:
			batch = append(batch[:0], txn)
		more:
			for len(batch) < maxBatch {
				select {
				case t := <-txns:
					batch = append(batch, t)
				default:
					break more
				}
			}
			if err := p.publish(ctx, batch); err != nil {
				return err
			}
		case <-tick.C:
		}
		if err := p.watermark(ctx); err != nil {
			return err
		}
	}
}

// publish sends the transactions' rows and waits for Kafka to acknowledge
// all of them; only then does the position move.
func (p *publisher) publish(ctx context.Context, batch []*source.Txn) error {
	started := p.c.now()
	p.recs = p.recs[:0]
	for _, txn := range batch {
		if err := p.forward(txn); err != nil {
			return err
		}
		for i, row := range txn.Rows {
			ch := Change{
				Op:     "c",
				After:  row.Values,
				Source: Source{Version: "riskwatch", Name: p.c.cfg.Kafka.Topic, Table: row.Table, TsUS: txn.CommitUS, Snapshot: "false"},
				TsMS:   started.UnixMilli(),
			}
			p.c.src.locate(txn, i, &ch.Source)
			v, err := EncodeChange(ch)
			if err != nil {
				return fmt.Errorf("encoding a row of %s.%s: %w", row.Schema, row.Table, err)
			}
			key := MerchantKey(row.Merchant)
			p.recs = append(p.recs, &kgo.Record{Key: key, Value: v, Partition: PartitionFor(key, p.partitions)})
		}
	}
	if len(p.recs) > 0 {
		if err := p.cl.ProduceSync(ctx, p.recs...).FirstErr(); err != nil {
			return fmt.Errorf("publishing %d records: %w", len(p.recs), err)
		}
		p.c.m.records.Add(float64(len(p.recs)))
		p.c.m.publish.Observe(p.c.now().Sub(started).Seconds())
	}
	acked := p.lastEnd
	p.acked, p.ackedMark = acked, p.lastMark
	for _, txn := range batch {
		p.progressUS = max(p.progressUS, txn.CommitUS)
	}
	p.durable.Store(&acked)
	return nil
}

// forward checks that txn ends after everything published before it.
// Workers skip a row at or before the newest position they applied as a
// redelivery, so a source whose positions went backwards — a MySQL source
// resumed on another server after a failover, whose binlog has its own
// files and offsets — would have its rows skipped: capture stops instead.
func (p *publisher) forward(txn *source.Txn) error {
	end := txn.End.String()
	mark, err := p.c.src.mark(end)
	if err != nil {
		return err
	}
	if mark <= p.lastMark {
		return &source.PermanentError{Err: fmt.Errorf("the source's position went backwards from %s to %s (a failover to another server?): "+
			"workers would skip the rows as redeliveries; run riskwatch slot drop so that capture starts from a new snapshot", p.lastEnd, end)}
	}
	p.lastEnd, p.lastMark = end, mark
	return nil
}

// watermark writes "every commit up to T is published" to every partition
// when a minute's end (plus grace) has been passed since the last one, so
// that workers close it at once, and at least every watermark_interval
// otherwise. It also records the position in the sink about once a second,
// for slot status and for a restart to resume near it.
func (p *publisher) watermark(ctx context.Context) error {
	now := p.c.now()
	if p.progressUS <= p.watermarkUS {
		return nil
	}
	grace := p.c.cfg.Grace.D().Microseconds()
	crossed := window.MinuteOfMicros(p.progressUS-grace) != window.MinuteOfMicros(p.watermarkUS-grace)
	if !crossed && now.Sub(p.lastWatermark) < p.c.cfg.Kafka.WatermarkInterval.D() {
		return nil
	}
	v, h := EncodeWatermark(Watermark{CommitUS: p.progressUS, LSN: p.ackedMark})
	recs := make([]*kgo.Record, p.partitions)
	for i := range recs {
		recs[i] = &kgo.Record{Value: v, Headers: h, Partition: int32(i)}
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("writing watermarks: %w", err)
	}
	p.c.m.watermarks.Inc()
	p.watermarkUS, p.lastWatermark = p.progressUS, now
	if now.Sub(p.lastCheckpt) >= time.Second {
		at := time.UnixMicro(p.progressUS).UTC()
		if err := p.c.agg.Apply(ctx, &aggregates.Batch{Position: p.cp.At(p.acked, p.cp.LastClosed, at), At: at}); err != nil {
			return fmt.Errorf("recording the published position: %w", err)
		}
		p.lastCheckpt = now
	}
	return nil
}

type captureMetrics struct {
	records    prometheus.Counter
	watermarks prometheus.Counter
	publish    prometheus.Histogram
}

func newCaptureMetrics(reg prometheus.Registerer) *captureMetrics {
	f := promauto.With(reg)
	return &captureMetrics{
		records: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_capture_records_total", Help: "Rows published to Kafka (at least once).",
		}),
		watermarks: f.NewCounter(prometheus.CounterOpts{
			Name: "riskwatch_capture_watermarks_total", Help: "Rounds of watermark records written to every partition.",
		}),
		publish: f.NewHistogram(prometheus.HistogramOpts{
			Name: "riskwatch_capture_publish_seconds", Help: "Time for Kafka to acknowledge a batch of records.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
}
