package kafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/kafka"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

const (
	benchEvents     = 300_000
	benchMerchants  = 10_000
	benchPartitions = 12
)

// BenchmarkWorkers is a worker group's throughput: 300,000 change events
// of 10,000 merchants (every tenth a cancel, one merchant with a fifth of
// the traffic) in capture's format over the last 30 minutes, already in 12
// partitions of an in-process Kafka, consumed by 1, 2 or 3 workers (one
// process: they share its two cores with kfake and PostgreSQL) into a fresh
// sink, 30 minutes closed and evaluated on the way, until every partition's
// offset is stored. Reports events/s.
func BenchmarkWorkers(b *testing.B) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.SeedTopics(benchPartitions, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	now := time.Now().UTC()
	if err := produceBenchTopic(kc, now); err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += runWorkers(b, kc, now, workers, fmt.Sprintf("bench-%d-%d-%d", workers, i, time.Now().UnixNano()))
			}
			b.ReportMetric(float64(benchEvents*b.N)/total.Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func produceBenchTopic(kc *kfake.Cluster, now time.Time) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic("bench"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	start := now.Add(-30 * time.Minute)
	var recs []*kgo.Record
	for i := range benchEvents {
		m := int64(1 + (i*7919)%benchMerchants)
		if i%5 == 0 {
			m = 42
		}
		commit := start.Add(time.Duration(i) * 30 * time.Minute / benchEvents)
		table, amountCol, timeCol := "payments", "amount", "approved_at"
		if i%10 == 9 {
			table, amountCol, timeCol = "payment_cancels", "cancel_amount", "canceled_at"
		}
		v, err := kafka.EncodeChange(kafka.Change{Op: "c",
			After:  map[string]any{"id": int64(i + 1), "merchant_id": m, amountCol: int64(1000 + i%9000), timeCol: commit.Add(-200 * time.Millisecond).Format(time.RFC3339Nano)},
			Source: kafka.Source{Schema: "public", Table: table, TsUS: commit.UnixMicro(), LSN: uint64(1000 + i), Sequence: [2]uint64{uint64(1000 + i), 1}},
		})
		if err != nil {
			return err
		}
		key := kafka.MerchantKey(m)
		recs = append(recs, &kgo.Record{Key: key, Value: v, Partition: kafka.PartitionFor(key, benchPartitions)})
	}
	v, h := kafka.EncodeWatermark(kafka.Watermark{CommitUS: now.UnixMicro(), LSN: uint64(1000 + benchEvents)})
	for p := range int32(benchPartitions) {
		recs = append(recs, &kgo.Record{Value: v, Headers: h, Partition: p})
	}
	return cl.ProduceSync(context.Background(), recs...).FirstErr()
}

func runWorkers(b *testing.B, kc *kfake.Cluster, now time.Time, workers int, group string) time.Duration {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Default()
	cfg.Sink.DSN = cluster.NewDB(b)
	cfg.Kafka.Brokers, cfg.Kafka.Topic, cfg.Kafka.Group = kc.ListenAddrs(), "bench", group
	cfg.Kafka.SessionTimeout = config.Duration(2 * time.Second)
	cfg.MerchantNames.Table = ""
	st, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	starts := map[int32]int64{}
	for p := range int32(benchPartitions) {
		starts[p] = 0
	}
	from := now.Add(-31 * time.Minute)
	if err := kafka.InitPartitions(ctx, st, "bench", starts, from, window.MinuteOf(from), "0/1"); err != nil {
		b.Fatal(err)
	}
	total := int64(benchEvents + benchPartitions)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.StartTimer()
	started := time.Now()
	done := make(chan error, workers)
	for i := range workers {
		w, err := kafka.NewWorker(kafka.WorkerOptions{Config: cfg, DB: st, Logger: log, Member: fmt.Sprintf("%s-w%d", group, i)})
		if err != nil {
			b.Fatal(err)
		}
		go func() { done <- w.Run(ctx) }()
	}
	for {
		var consumed int64
		if err := st.Pool().QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM riskwatch.kafka_partitions WHERE topic = 'bench'`).Scan(&consumed); err != nil {
			b.Fatal(err)
		}
		if consumed >= total {
			break
		}
		if time.Since(started) > 5*time.Minute {
			b.Fatalf("%d workers consumed %d of %d records in 5 minutes", workers, consumed, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(started)
	b.StopTimer()
	cancel()
	for range workers {
		<-done
	}
	var events int64
	if err := st.Pool().QueryRow(context.Background(), `SELECT coalesce(sum(approvals + cancels), 0) FROM riskwatch.minute_agg`).Scan(&events); err != nil || events != benchEvents {
		b.Fatalf("sink holds %d events, want %d (%v)", events, benchEvents, err)
	}
	return elapsed
}
