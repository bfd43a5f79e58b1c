package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/config"
)

// TestWorkersShareAndHandOver: one worker takes every partition; a second
// joins and the group splits them by partition number (a merchant's
// payments and cancels stay together) with every claim fencing the
// previous one; the second leaves and the first takes them all back. Rows
// produced before, between and after the moves are in the sink exactly
// once, as their own GROUP BY says, although every create is delivered
// twice.
func TestWorkersShareAndHandOver(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const nparts = 6
	topics := []string{"srv.public.payments", "srv.public.payment_cancels"}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.SeedTopics(nparts, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	now := time.Now().UTC()
	want := minutes{}
	records, lsn, id := 0, uint64(5000), int64(0)
	// produce commits n rows of 40 merchants, a fifth of them cancels,
	// each create delivered twice.
	produce := func(n int) {
		t.Helper()
		var recs []*kgo.Record
		for i := range n {
			id++
			prev := lsn
			lsn += 10
			table, merchant, amount := "payments", 1+id%40, 1000+id*3
			if i%5 == 4 {
				table, amount = "payment_cancels", 100+id
			}
			commit := now.Add(-20*time.Minute + time.Duration(id)*time.Second)
			r := dbzRow{table, id, merchant, amount, commit.Add(-time.Second), commit, lsn}
			want.add(merchant, r.at, table == "payment_cancels", amount)
			rec := &kgo.Record{Topic: "srv.public." + table, Key: []byte(fmt.Sprintf(`{"merchant_id":%d}`, merchant)), Value: r.envelope("c", prev, false)}
			recs = append(recs, rec, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		records += len(recs)
	}

	cfg := config.Default()
	cfg.Sink.DSN = cluster.NewDB(t)
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Kafka.Input = "debezium"
	cfg.Kafka.Topics = topics
	cfg.Kafka.IdleAfter = config.Duration(200 * time.Millisecond)
	cfg.Kafka.SessionTimeout = config.Duration(time.Second)
	cfg.Kafka.Group = "share"
	st := openSink(t, cfg)
	start := func(member string) (stop func()) { return startWorker(t, cfg, st, member) }
	type part struct {
		partition int32
		owner     string
		epoch     int64
	}
	// state reads the sink's partitions: owner and epoch by topic and
	// partition, and the records consumed.
	state := func() (map[string]part, int64) {
		rows, err := st.Pool().Query(ctx, `SELECT topic, partition, owner, epoch, next_offset FROM riskwatch.kafka_partitions`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		parts, consumed := map[string]part{}, int64(0)
		for rows.Next() {
			var topic, owner string
			var p int32
			var epoch, next int64
			if err := rows.Scan(&topic, &p, &owner, &epoch, &next); err != nil {
				t.Fatal(err)
			}
			parts[fmt.Sprintf("%s/%d", topic, p)] = part{p, owner, epoch}
			consumed += next
		}
		return parts, consumed
	}
	// settle waits (on the sink, not on a clock) until every record is
	// consumed and the partitions are owned as owners says.
	settle := func(what string, owners func(p int32) []string) map[string]part {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			parts, consumed := state()
			ok := consumed == int64(records) && len(parts) == nparts*len(topics)
			for _, p := range parts {
				if !slices.Contains(owners(p.partition), p.owner) {
					ok = false
				}
			}
			if ok {
				return parts
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: consumed %d of %d records; partitions %v", what, consumed, records, parts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	produce(300)
	stopA := start("a")
	alone := settle("a alone", func(int32) []string { return []string{"a"} })

	stopB := start("b")
	var split map[string]part
	for {
		split = settle("a and b", func(int32) []string { return []string{"a", "b"} })
		owners := map[string]int{}
		for _, p := range split {
			owners[p.owner]++
		}
		if owners["a"] > 0 && owners["b"] > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for n := range int32(nparts) {
		pay, can := split[fmt.Sprintf("%s/%d", topics[0], n)], split[fmt.Sprintf("%s/%d", topics[1], n)]
		if pay.owner != can.owner {
			t.Fatalf("partition %d: payments owned by %s, cancels by %s", n, pay.owner, can.owner)
		}
	}
	for k, p := range split {
		if p.owner == "b" && p.epoch <= alone[k].epoch {
			t.Fatalf("%s moved to b without fencing a: epoch %d, was %d", k, p.epoch, alone[k].epoch)
		}
	}
	produce(300)
	settle("after the split", func(int32) []string { return []string{"a", "b"} })

	stopB()
	back := settle("b gone", func(int32) []string { return []string{"a"} })
	for k, p := range back {
		if split[k].owner == "b" && p.epoch <= split[k].epoch {
			t.Fatalf("%s went back to a without fencing b: epoch %d, was %d", k, p.epoch, split[k].epoch)
		}
	}
	produce(200)
	settle("a alone again", func(int32) []string { return []string{"a"} })
	stopA()

	checkSinkMinutes(t, st, want)
}
