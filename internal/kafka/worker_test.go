package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/kafka"
	"github.com/riskwatch/riskwatch/internal/pgtest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// dbzRow is one source row of the test's Debezium topics.
type dbzRow struct {
	table    string // payments or payment_cancels
	id       int64
	merchant int64
	amount   int64
	at       time.Time // approved_at / canceled_at
	commit   time.Time
	lsn      uint64
}

// envelope renders a row the way Debezium's PostgreSQL connector writes it
// with its defaults (JsonConverter; ZonedTimestamp strings), written out
// here field by field rather than through EncodeChange.
func (r dbzRow) envelope(op string, prevCommit uint64, wrapped bool) []byte {
	after := map[string]any{"id": r.id, "merchant_id": r.merchant}
	if r.table == "payments" {
		after["amount"], after["status"], after["approved_at"] = r.amount, "approved", r.at.UTC().Format("2006-01-02T15:04:05.999999Z")
	} else {
		after["payment_id"], after["cancel_amount"], after["canceled_at"] = 0, r.amount, r.at.UTC().Format("2006-01-02T15:04:05.999999Z")
	}
	snapshot := "false"
	seq := any(fmt.Sprintf(`["%d","%d"]`, prevCommit, r.lsn))
	if op == "r" {
		snapshot, seq = "true", nil
	}
	env := map[string]any{
		"before": nil, "after": after, "op": op, "ts_ms": r.commit.UnixMilli() + 3,
		"source": map[string]any{
			"version": "2.7.3.Final", "connector": "postgresql", "name": "srv", "ts_ms": r.commit.UnixMilli(), "snapshot": snapshot,
			"db": "shop", "sequence": seq, "schema": "public", "table": r.table, "txId": 700 + r.id, "lsn": r.lsn, "xmin": nil,
		},
	}
	var v any = env
	if wrapped {
		v = map[string]any{"schema": map[string]any{"type": "struct", "name": "srv.public." + r.table + ".Envelope"}, "payload": env}
	}
	return mustJSON(v)
}

// TestDebeziumTopics: a worker reading the two per-table topics of
// Debezium's connector (snapshot reads, streamed creates, every create
// delivered twice as at-least-once delivery may, some in the schema/payload
// wrapper, plus an update, a tombstone and a malformed record) stores the
// same minute aggregates as the rows' own GROUP BY, worked out here.
func TestDebeziumTopics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.GroupMinSessionTimeout(100*time.Millisecond),
		kfake.SeedTopics(12, "srv.public.payments", "srv.public.payment_cancels"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()

	now := time.Now().UTC()
	var rows []dbzRow
	lsn := uint64(1000)
	// 300 snapshot rows over the last six hours, then 400 payments and 90
	// cancels committed over the last five minutes.
	for i := range 300 {
		lsn += 10
		at := now.Add(-6*time.Hour + time.Duration(i)*71*time.Second)
		rows = append(rows, dbzRow{"payments", int64(i + 1), int64(1 + i%23), int64(1000 + i*7), at, now.Add(-5 * time.Minute), 900})
	}
	snapshot := len(rows)
	for i := range 490 {
		lsn += 10
		table, amount := "payments", int64(500+i*13)
		if i%5 == 4 && i/5 < 90 {
			table, amount = "payment_cancels", int64(100+i)
		}
		commit := now.Add(-5*time.Minute + time.Duration(i)*600*time.Millisecond)
		rows = append(rows, dbzRow{table, int64(10_000 + i), int64(1 + (i*7)%31), amount, commit.Add(-150 * time.Millisecond), commit, lsn})
	}
	want := minutes{}
	for _, r := range rows {
		want.add(r.merchant, r.at, r.table == "payment_cancels", r.amount)
	}

	// Keys as message.key.columns=public.payments:merchant_id;… makes them;
	// the client's default partitioner is Kafka's.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	prev := uint64(0)
	for i, r := range rows {
		op := "c"
		if i < snapshot {
			op = "r"
		}
		rec := &kgo.Record{Topic: "srv.public." + r.table, Key: []byte(fmt.Sprintf(`{"merchant_id":%d}`, r.merchant)), Value: r.envelope(op, prev, i%3 == 0)}
		recs = append(recs, rec)
		if op == "c" {
			// Delivered again, as a connector restart would.
			recs = append(recs, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value})
			prev = r.lsn
		}
	}
	upd := rows[snapshot]
	recs = append(recs,
		&kgo.Record{Topic: "srv.public.payments", Key: []byte(`{"merchant_id":3}`), Value: []byte(strings.Replace(string(upd.envelope("c", prev, false)), `"op":"c"`, `"op":"u"`, 1))},
		&kgo.Record{Topic: "srv.public.payments", Key: []byte(`{"merchant_id":3}`)}, // tombstone
		&kgo.Record{Topic: "srv.public.payments", Key: []byte(`{"merchant_id":4}`), Value: []byte(`{"op":"c","after":`)},
	)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		var k struct {
			M int64 `json:"merchant_id"`
		}
		if err := json.Unmarshal(r.Key, &k); err != nil {
			t.Fatal(err)
		}
		if p := kafka.PartitionFor([]byte(fmt.Sprintf(`{"merchant_id":%d}`, k.M)), 12); p != r.Partition {
			t.Fatalf("merchant %d went to partition %d; the worker expects %d", k.M, r.Partition, p)
		}
	}

	cfg := config.Default()
	cfg.Sink.DSN = cluster.NewDB(t)
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Kafka.Input = "debezium"
	cfg.Kafka.Topics = []string{"srv.public.payments", "srv.public.payment_cancels"}
	cfg.Kafka.IdleAfter = config.Duration(200 * time.Millisecond)
	cfg.Kafka.SessionTimeout = config.Duration(time.Second)
	cfg.Kafka.Group = "dbz"
	st := openSink(t, cfg)
	stop := startWorker(t, cfg, st, "dbz-1")
	waitConsumed(t, st, len(recs))
	stop()
	checkSinkMinutes(t, st, want)
	var dead int
	var detail string
	if err := st.Pool().QueryRow(context.Background(), `SELECT count(*), max(detail) FROM riskwatch.dead_letters`).Scan(&dead, &detail); err != nil {
		t.Fatal(err)
	}
	if dead != 1 || !strings.Contains(detail, "undecodable change event") {
		t.Fatalf("dead letters: %d (%q), want the malformed record", dead, detail)
	}
	t.Logf("%d records (%d rows, every create twice) gave %d merchant-minutes equal to the rows' GROUP BY", len(recs), len(rows), len(want))
}
