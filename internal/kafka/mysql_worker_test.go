package kafka_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/kafka"
)

// myRow is one source row of a MySQL database "shop" whose DATETIME
// columns hold Korea time.
type myRow struct {
	table    string // payments or payment_cancels
	id       int64
	merchant any // int64, or nil for NULL
	amount   int64
	// hundredths: a cancel's DECIMAL(12,2) amount is amount + hundredths/100.
	hundredths int64
	at         *time.Time // nil for NULL
	zeroDate   bool       // the time is MySQL's zero date instead
	commit     time.Time
	file       string
	pos, row   uint64
}

func (r myRow) valid() bool {
	return r.merchant != nil && r.amount >= 0 && r.hundredths == 0 && r.at != nil && !r.zeroDate
}

var seoulLoc = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		panic(err)
	}
	return loc
}()

// asIfUTC is a DATETIME's wall clock in Seoul taken as a UTC time, the way
// Debezium's MySQL connector turns it into an epoch number.
func asIfUTC(t time.Time) time.Time {
	w := t.In(seoulLoc)
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC)
}

// preciseDecimal is a non-negative unscaled value as Kafka Connect's
// Decimal travels in JSON: base64 of its big-endian two's complement.
func preciseDecimal(unscaled int64) string {
	b := big.NewInt(unscaled).Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// debezium renders the row as Debezium's MySQL connector writes it with
// its defaults and JsonConverter: payments.approved_at is DATETIME(6), a
// MicroTimestamp, without schemas; payment_cancels has canceled_at
// DATETIME(3), a Timestamp in milliseconds, and cancel_amount
// DECIMAL(12,2) under decimal.handling.mode=precise, with schemas.
func (r myRow) debezium(op string) []byte {
	var at any
	after := map[string]any{"id": r.id, "merchant_id": r.merchant}
	if r.table == "payments" {
		if r.at != nil {
			at = asIfUTC(*r.at).UnixMicro()
		}
		after["amount"], after["status"], after["approved_at"] = r.amount, "approved", at
	} else {
		if r.at != nil {
			at = asIfUTC(*r.at).UnixMilli()
		}
		after["payment_id"], after["cancel_amount"], after["canceled_at"] = 0, preciseDecimal(r.amount*100+r.hundredths), at
	}
	snapshot := "false"
	if op == "r" {
		snapshot = "true"
	}
	env := map[string]any{
		"before": nil, "after": after, "op": op, "ts_ms": r.commit.UnixMilli() + 40,
		"source": map[string]any{
			"version": "3.0.7.Final", "connector": "mysql", "name": "srv", "ts_ms": r.commit.UnixMilli(), "snapshot": snapshot,
			"db": "shop", "sequence": nil, "table": r.table, "server_id": 223344, "gtid": nil,
			"file": r.file, "pos": r.pos, "row": r.row, "thread": 7, "query": nil,
		},
	}
	var v any = env
	if r.table == "payment_cancels" {
		field := func(name, typ, semantic string, params map[string]string) map[string]any {
			f := map[string]any{"type": typ, "optional": name != "id", "field": name}
			if semantic != "" {
				f["name"], f["version"] = semantic, 1
			}
			if params != nil {
				f["parameters"] = params
			}
			return f
		}
		row := []any{field("id", "int64", "", nil), field("payment_id", "int64", "", nil), field("merchant_id", "int64", "", nil),
			field("cancel_amount", "bytes", "org.apache.kafka.connect.data.Decimal", map[string]string{"scale": "2", "connect.decimal.precision": "12"}),
			field("canceled_at", "int64", "io.debezium.time.Timestamp", nil)}
		v = map[string]any{"schema": map[string]any{"type": "struct", "name": "srv.shop.payment_cancels.Envelope", "fields": []any{
			map[string]any{"type": "struct", "fields": row, "optional": true, "name": "srv.shop.payment_cancels.Value", "field": "before"},
			map[string]any{"type": "struct", "fields": row, "optional": true, "name": "srv.shop.payment_cancels.Value", "field": "after"},
			map[string]any{"type": "string", "optional": false, "field": "op"},
		}}, "payload": env}
	}
	return mustJSON(v)
}

// TestDebeziumMySQLTopics: a worker reading the two per-table topics of
// Debezium's MySQL connector — snapshot reads, streamed creates across a
// binlog rotation and in multi-row events, every create delivered twice
// and the last fifty again as a connector restart resends them, DATETIMEs
// in Korea time, precise DECIMALs with schemas, bad rows, an update, a
// delete, a tombstone and a malformed record — stores exactly the valid
// rows' GROUP BY, and one dead letter per bad row.
func TestDebeziumMySQLTopics(t *testing.T) {
	t.Parallel()
	topics := []string{"srv.shop.payments", "srv.shop.payment_cancels"}
	kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.SeedTopics(12, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()

	now := time.Now()
	var rows []myRow
	for i := range 200 {
		at := now.Add(-6*time.Hour + time.Duration(i)*97*time.Second)
		rows = append(rows, myRow{table: "payments", id: int64(i + 1), merchant: int64(1 + i%23), amount: int64(1000 + i*7), at: &at,
			commit: now.Add(-5 * time.Minute), file: "mysql-bin.000001", pos: 4})
	}
	snapshot := len(rows)
	file, pos := "mysql-bin.000001", uint64(1000)
	for i := range 300 {
		if i == 150 {
			file, pos = "mysql-bin.000002", 4 // rotation
		}
		pos += 300
		commit := now.Add(-5*time.Minute + time.Duration(i)*time.Second)
		at := commit.Add(-150 * time.Millisecond)
		r := myRow{table: "payments", id: int64(10_000 + i), merchant: int64(1 + (i*7)%31), amount: int64(500 + i*13), at: &at, commit: commit, file: file, pos: pos}
		if i%5 == 4 {
			at := at.Truncate(time.Millisecond) // DATETIME(3)
			r.table, r.amount, r.at = "payment_cancels", int64(100+i), &at
		}
		rows = append(rows, r)
		if i%10 == 3 {
			// A second row of the same event (a multi-row INSERT), every
			// other time for the same merchant, so in the same partition.
			r.id, r.row = r.id+50_000, 1
			if i%20 == 13 {
				r.merchant = int64(1 + (i*11)%31)
			}
			rows = append(rows, r)
		}
	}
	// Bad rows, each a create of its own.
	bad := func(r myRow) {
		pos += 300
		r.file, r.pos, r.commit = file, pos, now
		rows = append(rows, r)
	}
	nowAt := now.Add(-time.Second)
	bad(myRow{table: "payments", id: 90_001, merchant: nil, amount: 10, at: &nowAt})
	bad(myRow{table: "payments", id: 90_002, merchant: int64(5), amount: -5, at: &nowAt})
	bad(myRow{table: "payments", id: 90_003, merchant: int64(5), amount: 10, at: nil})
	bad(myRow{table: "payment_cancels", id: 90_004, merchant: int64(5), amount: 12, hundredths: 50, at: &nowAt})

	want := minutes{}
	for _, r := range rows {
		if r.valid() {
			want.add(r.merchant.(int64), *r.at, r.table == "payment_cancels", r.amount)
		}
	}
	key := func(r myRow) []byte {
		if r.merchant == nil {
			return []byte(`{"merchant_id":null}`)
		}
		return []byte(fmt.Sprintf(`{"merchant_id":%d}`, r.merchant))
	}
	var recs []*kgo.Record
	for i, r := range rows {
		op := "c"
		if i < snapshot {
			op = "r"
		}
		rec := &kgo.Record{Topic: "srv.shop." + r.table, Key: key(r), Value: r.debezium(op)}
		recs = append(recs, rec)
		if op == "c" {
			recs = append(recs, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value})
		}
	}
	for _, r := range rows[len(rows)-50:] {
		recs = append(recs, &kgo.Record{Topic: "srv.shop." + r.table, Key: key(r), Value: r.debezium("c")})
	}
	upd := rows[snapshot]
	var before map[string]any
	if err := json.Unmarshal(upd.debezium("c"), &before); err != nil {
		t.Fatal(err)
	}
	before["op"], before["before"] = "u", before["after"]
	updValue, err := json.Marshal(before)
	if err != nil {
		t.Fatal(err)
	}
	before["op"], before["after"] = "d", nil
	delValue, err := json.Marshal(before)
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs,
		&kgo.Record{Topic: "srv.shop.payments", Key: key(upd), Value: updValue},
		&kgo.Record{Topic: "srv.shop.payments", Key: key(upd), Value: delValue},
		&kgo.Record{Topic: "srv.shop.payments", Key: key(upd)}, // tombstone
		&kgo.Record{Topic: "srv.shop.payments", Key: []byte(`{"merchant_id":4}`), Value: []byte(`{"op":"c","after":`)},
	)
	consumeShop(t, kc, config.InputDebezium, topics, recs, want)
	t.Logf("%d records (%d rows) gave %d merchant-minutes equal to the valid rows' GROUP BY", len(recs), len(rows), len(want))
}

// maxwell renders the row as Maxwell's daemon writes it (output_binlog_position
// on, xoffset and commit as its transaction has them): DATETIMEs as
// "YYYY-MM-DD hh:mm:ss.ffffff" Korea wall clocks, the cancel's
// DECIMAL(12,2) as a JSON number. A NULL merchant_id is left out, as with
// output_nulls=false.
func (r myRow) maxwell(typ string, xid int64, xoffset *uint64, commit bool) []byte {
	data := map[string]any{"id": r.id}
	if r.merchant != nil {
		data["merchant_id"] = r.merchant
	}
	var at any
	if r.at != nil {
		at = r.at.In(seoulLoc).Format("2006-01-02 15:04:05.000000")
	}
	if r.zeroDate {
		at = "0000-00-00 00:00:00.000000"
	}
	if r.table == "payments" {
		data["amount"], data["status"], data["approved_at"] = r.amount, "approved", at
	} else {
		data["payment_id"], data["cancel_amount"], data["canceled_at"] = 0, json.Number(fmt.Sprintf("%d.00", r.amount)), at
	}
	m := map[string]any{"database": "shop", "table": r.table, "type": typ, "ts": r.commit.Unix(), "data": data}
	if typ != "bootstrap-insert" {
		m["xid"], m["position"], m["server_id"], m["thread_id"] = xid, fmt.Sprintf("%s:%d", r.file, r.pos), 23042, 108
		if xoffset != nil {
			m["xoffset"] = *xoffset
		}
		if commit {
			m["commit"] = true
		}
	}
	return mustJSON(m)
}

// TestMaxwellTopic: a worker reading Maxwell's topic, partitioned by the
// merchant column — a bootstrap of payments, then transactions of one to
// three rows (some in one multi-row event), every insert delivered twice
// and the last sixty again as a Maxwell restart resends them, bad rows, an
// update, a delete, a DDL record and a malformed record — stores exactly
// the valid rows' GROUP BY and one dead letter per bad row.
func TestMaxwellTopic(t *testing.T) {
	t.Parallel()
	const topic, nparts = "maxwell", 12
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.SeedTopics(nparts, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()

	now := time.Now()
	want := minutes{}
	var recs []*kgo.Record
	part := func(r myRow) int32 {
		if r.merchant == nil {
			return 0 // producer_partition_by_fallback's partition
		}
		return kafka.MaxwellPartition(r.merchant.(int64), nparts)
	}
	emit := func(r myRow, v []byte) {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: part(r), Value: v})
	}
	boot := myRow{table: "payments", commit: now.Add(-5 * time.Minute)}
	emit(boot, []byte(`{"database":"shop","table":"payments","type":"bootstrap-start","ts":`+fmt.Sprint(boot.commit.Unix())+`,"data":{}}`))
	for i := range 150 {
		at := now.Add(-6*time.Hour + time.Duration(i)*131*time.Second)
		r := myRow{table: "payments", id: int64(i + 1), merchant: int64(1 + i%19), amount: int64(2000 + i*11), at: &at, commit: boot.commit}
		want.add(r.merchant.(int64), at, false, r.amount)
		emit(r, r.maxwell("bootstrap-insert", 0, nil, false))
	}
	emit(boot, []byte(`{"database":"shop","table":"payments","type":"bootstrap-complete","ts":`+fmt.Sprint(boot.commit.Unix())+`,"data":{}}`))

	// Transactions of one to three rows; the second and third rows of a
	// three-row transaction share one event (a multi-row INSERT).
	type sent struct {
		r myRow
		v []byte
	}
	var stream []sent
	pos, id := uint64(4), int64(10_000)
	for tx := range 200 {
		commit := now.Add(-5*time.Minute + time.Duration(tx)*1500*time.Millisecond)
		file := "mysql-bin.000003"
		if tx >= 120 {
			file = "mysql-bin.000004" // rotation
		}
		if tx == 120 {
			pos = 4
		}
		n := 1 + tx%3
		for k := range n {
			if k < 2 {
				pos += 250
			}
			id++
			at := commit.Add(-time.Duration(k+1) * 100 * time.Millisecond)
			// The rows of the multi-row event are one merchant's, so they
			// share a partition.
			merchant := int64(1 + (tx*7+min(k, 1))%29)
			r := myRow{table: "payments", id: id, merchant: merchant, amount: int64(300 + tx*5 + k), at: &at, commit: commit, file: file, pos: pos}
			if (tx+k)%4 == 3 {
				r.table, r.amount = "payment_cancels", int64(100+tx)
			}
			want.add(r.merchant.(int64), at, r.table == "payment_cancels", r.amount)
			var xo *uint64
			if k < n-1 {
				off := uint64(k)
				xo = &off
			}
			stream = append(stream, sent{r, r.maxwell("insert", int64(7000+tx), xo, k == n-1)})
		}
	}
	// Bad rows, each its own transaction.
	bad := func(r myRow) {
		pos += 250
		r.file, r.pos, r.commit = "mysql-bin.000004", pos, now
		stream = append(stream, sent{r, r.maxwell("insert", 9000, nil, true)})
	}
	nowAt := now.Add(-time.Second)
	bad(myRow{table: "payments", id: 90_001, merchant: nil, amount: 10, at: &nowAt})
	bad(myRow{table: "payments", id: 90_002, merchant: int64(5), amount: -5, at: &nowAt})
	bad(myRow{table: "payments", id: 90_003, merchant: int64(5), amount: 10, at: &nowAt, zeroDate: true})
	bad(myRow{table: "payments", id: 90_004, merchant: int64(5), amount: 10, at: nil})
	for _, s := range stream {
		emit(s.r, s.v)
		emit(s.r, s.v)
	}
	for _, s := range stream[len(stream)-60:] {
		emit(s.r, s.v)
	}
	u := stream[0].r
	emit(u, []byte(fmt.Sprintf(`{"database":"shop","table":"payments","type":"update","ts":%d,"xid":9100,"commit":true,"position":"mysql-bin.000004:%d","data":{"id":%d,"merchant_id":%d,"amount":%d,"status":"canceled","approved_at":"2020-01-01 00:00:00"},"old":{"status":"approved"}}`,
		now.Unix(), pos+250, u.id, u.merchant, u.amount)))
	emit(u, []byte(fmt.Sprintf(`{"database":"shop","table":"payments","type":"delete","ts":%d,"xid":9101,"commit":true,"position":"mysql-bin.000004:%d","data":{"id":%d,"merchant_id":%d,"amount":%d,"status":"canceled","approved_at":"2020-01-01 00:00:00"}}`,
		now.Unix(), pos+500, u.id, u.merchant, u.amount)))
	emit(u, []byte(`{"type":"table-alter","database":"shop","table":"payments","ts":1772424100000,"sql":"alter table payments add column note varchar(20)","position":"mysql-bin.000004:1"}`))
	emit(u, []byte(`{"database":"shop","table":"payments","type":"insert","ts":`))

	consumeShop(t, kc, config.InputMaxwell, []string{topic}, recs, want, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	t.Logf("%d records (%d streamed rows) gave %d merchant-minutes equal to the valid rows' GROUP BY", len(recs), len(stream), len(want))
}

// consumeShop produces recs, runs a worker of the given input on topics
// with the database "shop" mapped and DATETIMEs read in Korea time, and
// checks that the sink holds exactly want and one dead letter per bad row:
// a NULL merchant, a negative amount, a NULL time, and two invalid values
// (a fractional amount or a zero date, and a malformed record).
func consumeShop(t *testing.T, kc *kfake.Cluster, input string, topics []string, recs []*kgo.Record, want minutes, produce ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.ListenAddrs()...)}, produce...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Sink.DSN = cluster.NewDB(t)
	cfg.Source.TimeZone, cfg.Source.TimeLocation = "Asia/Seoul", seoulLoc
	cfg.Mapping = []config.TableMapping{
		{Table: "shop.payments", Kind: config.KindApproval, Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Table: "shop.payment_cancels", Kind: config.KindCancel, Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Kafka.Input = input
	cfg.Kafka.Topics = topics
	cfg.Kafka.IdleAfter = config.Duration(200 * time.Millisecond)
	cfg.Kafka.SessionTimeout = config.Duration(time.Second)
	cfg.Kafka.Group = input + "-shop"
	st := openSink(t, cfg)
	stop := startWorker(t, cfg, st, input+"-1")
	waitConsumed(t, st, len(recs))
	stop()
	checkSinkMinutes(t, st, want)
	wantDead := map[string]int{"null_merchant": 1, "negative_amount": 1, "null_time": 1, "invalid_value": 2}
	if got := deadLetters(t, st); !reflect.DeepEqual(got, wantDead) {
		t.Fatalf("dead letters by reason = %v, want %v (one per bad row, and the malformed record)", got, wantDead)
	}
}
