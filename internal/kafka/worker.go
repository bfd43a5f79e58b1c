package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// WorkerOptions configure a worker.
type WorkerOptions struct {
	Config   *config.Config
	DB       *store.DB
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Member names this worker in the sink (partition owner, ranking).
	Member string
	// Client adds franz-go options (tests shorten the group's timeouts).
	Client []kgo.Opt
	Now    func() time.Time
	// OnAlerts and OnClose are engine.CoreOptions' hooks.
	OnAlerts func()
	OnClose  func(ctx context.Context, c engine.ClosedMinutes)
}

// Worker is one member of the consumer group: it aggregates and evaluates
// the merchants of the partitions it owns, with the partitions' offsets
// committed in the same sink transactions as what they produced.
type Worker struct {
	opts    WorkerOptions
	cfg     *config.Config
	agg     *aggregates.Store
	alerts  *alertstore.Store
	fence   partitions
	log     *slog.Logger
	now     func() time.Time
	mapping *event.Mapping
	topics  []string
	m       *engine.Metrics
	km      *workerMetrics
	status  *engine.StatusBoard
	stall   *engine.StallWatch
	tables  map[[2]string]*event.JSONTable
	mysql   *mysqlRows
	// keyPrefix/keySuffix wrap a merchant id into its record key: the id
	// alone for capture's topic, {"<merchant column>":<id>} for Debezium's.
	keyPrefix, keySuffix []byte
	// decode reads a record value: Debezium's envelope, or Maxwell's JSON.
	decode    func([]byte) (Change, error)
	misrouted time.Time // when a misrouted merchant was last logged
	unmapped  map[[2]string]bool

	// mu guards the state below: the poll loop and the group's
	// assignment callbacks both touch it.
	mu       sync.Mutex
	nparts   int32
	parts    map[topicPartition]*partState
	owned    map[int32]bool
	closedAt map[int32]window.Minute // per partition number: rules ran through here
	core     *engine.Core
	out      event.Output
	failed   error // from a callback, returned by the poll loop

	rankMu  sync.Mutex
	ranked  *rules.Ranking
	rankAt  time.Time
	lastErr time.Time
}

type topicPartition struct {
	topic     string
	partition int32
}

type partState struct {
	Partition
	pos       Position  // the newest source position applied (SourcePos decoded)
	wmUS      int64     // watermark in Unix µs: the partition's closing progress
	hwm       int64     // high watermark from the newest fetch
	idleSince time.Time // debezium: when it was first seen read to its end
}

// NewWorker checks the configuration and builds a worker.
func NewWorker(opts WorkerOptions) (*Worker, error) {
	if err := opts.Config.ValidateKafka(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Member == "" {
		return nil, errors.New("worker: a member name is required")
	}
	mapping, err := opts.Config.EventMapping()
	if err != nil {
		return nil, err
	}
	if _, err := opts.Config.RuleParams(); err != nil {
		return nil, err
	}
	w := &Worker{opts: opts, cfg: opts.Config, agg: aggregates.New(opts.DB), alerts: alertstore.New(opts.DB), fence: partitions{opts.DB},
		log: opts.Logger.With("member", opts.Member), now: opts.Now, mapping: mapping, topics: opts.Config.KafkaTopics(),
		km: newWorkerMetrics(opts.Registry), status: &engine.StatusBoard{}, tables: map[[2]string]*event.JSONTable{},
		mysql: newMySQLRows(mapping, opts.Config.Source.TimeLocation), decode: DecodeChange, unmapped: map[[2]string]bool{}}
	w.m = engine.NewMetrics(opts.Registry, w.status)
	w.stall = engine.NewStallWatch(opts.Config, "worker:"+opts.Member, w.alerts, opts.OnAlerts, w.log, w.m, w.status)
	w.status.SetLag(func(st *engine.Status) {
		if !st.Progress.IsZero() {
			st.LagSeconds = max(0, w.now().Sub(st.Progress).Seconds())
		}
	})
	switch opts.Config.Kafka.Input {
	case config.InputDebezium:
		// The connector's message.key.columns makes the key the merchant
		// column as a JSON object (see docs/kafka.md).
		w.keyPrefix, w.keySuffix = []byte(`{"`+opts.Config.Mapping[0].Merchant+`":`), []byte(`}`)
	case config.InputMaxwell:
		w.decode = DecodeMaxwell
	}
	return w, nil
}

// watermarked reports whether the input carries capture's watermarks;
// Debezium's and Maxwell's topics close minutes by their records' commit
// times and idle partitions instead.
func (w *Worker) watermarked() bool { return w.cfg.Kafka.Input == config.InputCapture }

// Run consumes until ctx is done. A failure (Kafka, the sink, being fenced
// by a newer owner) leaves the group and rejoins after a backoff: the new
// assignment restores everything from the sink.
func (w *Worker) Run(ctx context.Context) error {
	return engine.Supervise(ctx, w.cfg, w.now, func(ctx context.Context) error {
		err := w.session(ctx)
		w.status.SetReady(false)
		return err
	}, func(err error, backoff time.Duration) {
		w.m.Restarted()
		w.log.Warn("worker stopped; rejoining the group", "err", err, "backoff", backoff)
		w.stall.Failed(ctx, w.now(), w.status.Status().Position, err)
	})
}

func (w *Worker) session(ctx context.Context) error {
	w.mu.Lock()
	w.parts, w.failed = nil, nil
	w.mu.Unlock()
	// Which merchants a partition holds depends on the partition count:
	// known before joining, since an assignment can arrive at once.
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(w.cfg.Kafka.Brokers...)}, w.opts.Client...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	err = w.partitionCount(ctx, kadm.NewClient(admCl))
	admCl.Close()
	if err != nil {
		return err
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(w.cfg.Kafka.Brokers...),
		kgo.ConsumerGroup(w.cfg.Kafka.Group),
		kgo.ConsumeTopics(w.topics...),
		// Range assignment gives a member the same partition numbers of
		// every topic, so a merchant's payments and cancels (Debezium's
		// two topics) are in one worker.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.SessionTimeout(w.cfg.Kafka.SessionTimeout.D()),
		kgo.HeartbeatInterval(w.cfg.Kafka.SessionTimeout.D() / 5),
		kgo.RebalanceTimeout(max(w.cfg.Kafka.SessionTimeout.D()*2, 5*time.Second)),
		kgo.ClientID("riskwatch-worker"),
		kgo.OnPartitionsAssigned(w.assigned),
		kgo.OnPartitionsRevoked(w.revoked),
		kgo.OnPartitionsLost(w.lost),
	}, w.opts.Client...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	interval := w.cfg.Pipeline.FlushInterval.D()
	lastEnds := time.Time{}
	for {
		pctx, cancel := context.WithTimeout(ctx, interval)
		fetches := cl.PollRecords(pctx, 20000)
		cancel()
		if ctx.Err() != nil {
			w.mu.Lock()
			if w.parts != nil {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				if err := w.flush(fctx); err != nil {
					w.log.Warn("final flush failed; the new owner resumes from the sink", "err", err)
				}
				cancel()
			}
			w.drop("released")
			w.mu.Unlock()
			// Closing leaves the group, which waits for a rebalance that
			// a poll still blocks.
			cl.AllowRebalance()
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			if w.now().Sub(w.lastErr) > 10*time.Second {
				w.log.Warn("fetch failed; retrying", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
				w.lastErr = w.now()
			}
		}
		if !w.watermarked() && w.now().Sub(lastEnds) >= time.Second {
			w.endOffsets(ctx, adm)
			lastEnds = w.now()
		}
		w.mu.Lock()
		err := w.failed
		var commit map[string]map[int32]kgo.EpochOffset
		if err == nil && w.parts != nil {
			w.process(fetches)
			var flushed bool
			flushed, err = w.step(ctx)
			if err == nil && flushed && w.parts != nil {
				commit = w.offsets()
			}
		}
		w.mu.Unlock()
		if commit != nil {
			// The sink is the truth; Kafka's copy of the offsets is for
			// the usual lag tooling, so its result does not matter.
			cl.CommitOffsets(ctx, commit, func(*kgo.Client, *kmsg.OffsetCommitRequest, *kmsg.OffsetCommitResponse, error) {})
		}
		cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// offsets are the partitions' next offsets as the sink holds them.
func (w *Worker) offsets() map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for tp, ps := range w.parts {
		if out[tp.topic] == nil {
			out[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		out[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: ps.NextOffset}
	}
	return out
}

// partitionCount reads how many partitions the topics have: it decides
// which merchants a partition holds. Co-partitioned topics must agree.
func (w *Worker) partitionCount(ctx context.Context, adm *kadm.Client) error {
	details, err := adm.ListTopics(ctx, w.topics...)
	if err != nil {
		return fmt.Errorf("reading topics %v: %w", w.topics, err)
	}
	n := int32(-1)
	for _, t := range w.topics {
		d, ok := details[t]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return fmt.Errorf("topic %s is missing (start riskwatch capture first, or create it)", t)
		}
		if n >= 0 && int32(len(d.Partitions)) != n {
			return fmt.Errorf("topics %v have different partition counts; a merchant's changes must share a partition number", w.topics)
		}
		n = int32(len(d.Partitions))
	}
	w.mu.Lock()
	w.nparts = n
	w.mu.Unlock()
	return nil
}

func (w *Worker) endOffsets(ctx context.Context, adm *kadm.Client) {
	ends, err := adm.ListEndOffsets(ctx, w.topics...)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ends.Each(func(o kadm.ListedOffset) {
		if ps := w.parts[topicPartition{o.Topic, o.Partition}]; ps != nil && o.Err == nil {
			ps.hwm = o.Offset
		}
	})
}

// partitionOf is the partition number holding the merchant's changes.
func (w *Worker) partitionOf(merchant int64) int32 {
	if w.cfg.Kafka.Input == config.InputMaxwell {
		return MaxwellPartition(merchant, w.nparts)
	}
	var buf [64]byte
	key := append(strconv.AppendInt(append(buf[:0], w.keyPrefix...), merchant, 10), w.keySuffix...)
	return PartitionFor(key, w.nparts)
}

func (w *Worker) owns(merchant int64) bool { return w.owned[w.partitionOf(merchant)] }

// assigned claims the partitions in the sink (fencing their previous
// owner), starts consuming them where the sink says, and restores the
// rules state of their merchants from the sink.
func (w *Worker) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.claim(ctx, cl, assigned); err != nil {
		w.failed = fmt.Errorf("taking over partitions %v: %w", assigned, err)
		w.parts = nil
	}
}

func (w *Worker) claim(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) error {
	var missing func(string, int32) Partition
	if !w.watermarked() {
		// A topic nobody initialised: read it from its start; rules run
		// from the minute that closes now on (older rows are history).
		missing = func(string, int32) Partition {
			return Partition{NextOffset: 0, Watermark: time.Unix(0, 0), LastClosed: window.New(w.cfg.Grace.D(), 0).ClosableThrough(w.now().UnixMicro())}
		}
	}
	parts, err := w.fence.Claim(ctx, w.opts.Member, assigned, missing)
	if err != nil {
		return err
	}
	w.parts = map[topicPartition]*partState{}
	w.owned = map[int32]bool{}
	w.closedAt = map[int32]window.Minute{}
	count := map[int32]int{}
	last := window.Minute(0)
	for i, p := range parts {
		ps := &partState{Partition: p, wmUS: p.Watermark.UnixMicro(), hwm: -1}
		if ps.pos, err = PositionOfKey(p.SourcePos); err != nil {
			return fmt.Errorf("partition %s/%d: %w", p.Topic, p.Partition, err)
		}
		w.parts[topicPartition{p.Topic, p.Partition}] = ps
		// A partition number is owned once this worker has it in every topic.
		count[p.Partition]++
		w.owned[p.Partition] = count[p.Partition] == len(w.topics)
		if c, ok := w.closedAt[p.Partition]; !ok || p.LastClosed < c {
			w.closedAt[p.Partition] = p.LastClosed
		}
		if i == 0 || p.LastClosed < last {
			last = p.LastClosed
		}
	}
	cl.SetOffsets(w.offsets())
	open, err := w.alerts.OpenAlerts(ctx)
	if err != nil {
		return err
	}
	scope := &engine.Scope{
		Owns: w.owns,
		Evaluated: func(m window.Minute, merchant int64) bool {
			return m <= w.closedAt[w.partitionOf(merchant)]
		},
		Platform: w.agg.PlatformSums,
	}
	ev, err := engine.NewScopedEvaluator(ctx, w.agg, w.cfg, last, open, scope)
	if err != nil {
		return fmt.Errorf("restoring rules state: %w", err)
	}
	if err := ev.RestoreRecent(ctx, w.alerts, last, w.cfg.Alerts.RepeatInterval.D()); err != nil {
		return err
	}
	ev.Ranked = func(r *rules.Ranking) {
		if err := w.fence.SaveRanking(ctx, w.opts.Member, r.AsOf, r); err != nil {
			w.log.Warn("storing the ranking failed", "err", err)
		}
	}
	progress := time.UnixMicro(w.progressUS()).UTC()
	w.core = engine.NewCore(engine.CoreOptions{Config: w.cfg, Aggregates: w.agg, Alerts: w.alerts, Logger: w.log, Metrics: w.m,
		Status: w.status, Stall: w.stall, Now: w.now, CanClose: w.canClose, OnAlerts: w.opts.OnAlerts, OnClose: w.opts.OnClose}, ev, last, progress)
	w.status.Restored(w.position().String(), last, progress)
	w.log.Info("partitions assigned", "partitions", len(parts), "merchants_restored", ev.State.Merchants(), "last_closed", last.String())
	w.status.SetReady(true)
	return nil
}

// revoked makes what the worker holds durable before the partitions go.
func (w *Worker) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.parts != nil && w.failed == nil {
		if err := w.flush(ctx); err != nil {
			w.log.Warn("flush before giving partitions up failed; the new owner resumes from the sink", "err", err)
		}
	}
	w.drop("revoked")
}

// lost: another member owns them already; nothing may be written.
func (w *Worker) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drop("lost")
}

func (w *Worker) drop(why string) {
	if w.parts != nil {
		w.log.Info("partitions "+why, "partitions", len(w.parts))
	}
	w.parts, w.core = nil, nil
	w.status.SetReady(false)
}

// process applies a poll's records to the core.
func (w *Worker) process(fetches kgo.Fetches) {
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		ps := w.parts[topicPartition{fp.Topic, fp.Partition}]
		if ps == nil {
			return
		}
		ps.hwm = max(ps.hwm, fp.HighWatermark)
		for _, r := range fp.Records {
			if r.Offset < ps.NextOffset {
				continue // before the sink's position: already applied
			}
			w.record(ps, r)
			ps.NextOffset = r.Offset + 1
			w.core.Touch()
		}
	})
}

func (w *Worker) record(ps *partState, r *kgo.Record) {
	if IsWatermark(r.Headers) {
		wm, err := DecodeWatermark(r.Value)
		if err != nil {
			w.deadLetter(r, fmt.Sprintf("undecodable watermark: %v", err))
			return
		}
		ps.wmUS = max(ps.wmUS, wm.CommitUS)
		return
	}
	ch, err := w.decode(r.Value)
	var notRow *NotRowError
	switch {
	case errors.Is(err, ErrTombstone):
		return
	case errors.As(err, &notRow):
		w.km.ignored.WithLabelValues(notRow.Table, notRow.Type).Inc()
		return
	case err != nil:
		w.deadLetter(r, fmt.Sprintf("undecodable change event: %v", err))
		return
	}
	schema, table := ch.Table()
	if ch.Op != "c" && ch.Op != "r" {
		w.km.ignored.WithLabelValues(schema+"."+table, opName(ch.Op)).Inc()
		return
	}
	// Snapshot reads all share the snapshot's position; only streamed
	// changes are ordered by it.
	if pos := ch.Position(); ch.Op == "c" && !pos.IsZero() {
		if !ps.pos.Less(pos) {
			w.km.duplicates.Inc()
			return
		}
		ps.pos = pos
	}
	ps.wmUS = max(ps.wmUS, ch.Source.TsUS)
	w.out.Reset()
	if ch.MySQL() {
		mapped, err := w.mysql.Map(&ch, &w.out)
		if err != nil {
			w.deadLetter(r, fmt.Sprintf("unreadable row of %s.%s: %v", schema, table, err))
			return
		}
		if !mapped {
			w.skipTable(schema, table)
			return
		}
	} else {
		key := [2]string{schema, table}
		jt, ok := w.tables[key]
		if !ok {
			jt = w.mapping.BindJSON(key[0], key[1])
			w.tables[key] = jt
		}
		if jt == nil {
			w.skipTable(schema, table)
			return
		}
		jt.Map(ch.After, ch.Source.TsUS, &w.out)
	}
	at := func() string {
		return fmt.Sprintf("%s/%d@%d (%s)", r.Topic, r.Partition, r.Offset, ch.Where())
	}
	for i := range w.out.DeadLetters {
		w.out.DeadLetters[i].Position = at()
	}
	w.checkRouting(r, &w.out)
	w.core.Add(&w.out, ch.Source.TsUS, at)
}

// skipTable logs, once per table, that a table the mapping does not name
// is skipped: a topic of another table, or a mapping whose schema is not
// the source's (MySQL's is the database), which would otherwise count
// nothing without a word.
func (w *Worker) skipTable(schema, table string) {
	if k := [2]string{schema, table}; !w.unmapped[k] {
		w.unmapped[k] = true
		w.log.Info("skipping the rows of a table the mapping does not name", "table", schema+"."+table)
	}
}

// checkRouting logs, at most every 10 s, an event whose merchant is not
// among the merchants of the partition it arrived in: the producer
// partitions differently from what kafka.input says, so another worker
// evaluates the merchant's rules without this change. The change itself is
// still counted where it arrived.
func (w *Worker) checkRouting(r *kgo.Record, out *event.Output) {
	for _, ev := range out.Events {
		if p := w.partitionOf(ev.Merchant); p != r.Partition {
			if w.now().Sub(w.misrouted) >= 10*time.Second {
				w.misrouted = w.now()
				w.log.Error("a merchant's change arrived in another partition than its key's: the producer's partitioning does not match kafka.input (see docs/kafka.md)",
					"merchant", ev.Merchant, "topic", r.Topic, "partition", r.Partition, "expected_partition", p)
			}
			return
		}
	}
}

// opNames are the operations' names as riskwatch_ignored_changes_total
// has them for a single node.
var opNames = map[string]string{"u": "update", "d": "delete", "t": "truncate", "m": "message"}

func opName(op string) string {
	if name, ok := opNames[op]; ok {
		return name
	}
	return op
}

func (w *Worker) deadLetter(r *kgo.Record, detail string) {
	w.core.DeadLetter(event.DeadLetter{
		Table: r.Topic, Reason: event.ReasonInvalidValue,
		Detail:   detail,
		Row:      map[string]any{"key": string(r.Key), "value": string(r.Value)},
		Position: fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset),
	})
}

// progressUS is how far every owned partition is applied: the oldest
// watermark. Without watermarks (Debezium, Maxwell), a partition read to
// its end for idle_after stops holding the others back.
func (w *Worker) progressUS() int64 {
	var lo, hi int64
	idleAll := true
	now := w.now()
	for _, ps := range w.parts {
		hi = max(hi, ps.wmUS)
		if !w.watermarked() {
			if ps.hwm >= 0 && ps.NextOffset >= ps.hwm {
				if ps.idleSince.IsZero() {
					ps.idleSince = now
				}
				if now.Sub(ps.idleSince) >= w.cfg.Kafka.IdleAfter.D() {
					continue
				}
			} else {
				ps.idleSince = time.Time{}
			}
		}
		if idleAll || ps.wmUS < lo {
			lo = ps.wmUS
		}
		idleAll = false
	}
	if idleAll {
		return hi
	}
	return lo
}

// step advances the closing to where every partition has passed and
// flushes when due; flushed says whether it did.
func (w *Worker) step(ctx context.Context) (flushed bool, err error) {
	w.core.Advance(w.progressUS())
	// Positions move with every record, watermarks included, so a flush
	// is due whenever anything was read; an idle worker writes nothing.
	if !w.core.Due(w.now(), w.cfg.Pipeline.FlushInterval.D()) {
		return false, nil
	}
	return true, w.flush(ctx)
}

// position is the partitions' positions as they stand.
func (w *Worker) position() partitionsAt {
	parts := make(partitionsAt, 0, len(w.parts))
	for _, ps := range w.parts {
		ps.Watermark = time.UnixMicro(ps.wmUS).UTC()
		ps.SourcePos = ps.pos.Key()
		parts = append(parts, ps.Partition)
	}
	return parts
}

// flush writes the core's batch with every partition's position, and
// evaluates closed minutes once the platform allows.
func (w *Worker) flush(ctx context.Context) error {
	if err := w.core.Flush(ctx, w.position()); err != nil {
		return err
	}
	last := w.core.Evaluated()
	for p, at := range w.closedAt {
		w.closedAt[p] = max(at, last)
	}
	for _, ps := range w.parts {
		ps.LastClosed = max(ps.LastClosed, last)
	}
	return nil
}

// canClose says whether minutes through last may be evaluated: once every
// partition of the platform has passed the end of their baseline (the
// platform-wide rate reads every worker's totals); until then it waits.
func (w *Worker) canClose(ctx context.Context, last window.Minute) (bool, error) {
	through, err := AppliedThrough(ctx, w.fence.db, w.topics)
	if err != nil {
		return false, err
	}
	if through.Before((last - 60).End().Add(w.cfg.Grace.D())) {
		w.km.platformWaits.Inc()
		return false, nil
	}
	return true, nil
}

// Status is the worker's state for the API: its own partitions' progress.
func (w *Worker) Status() engine.Status { return w.status.Status() }

// Ranking merges the rankings every worker stored at its newest closed
// minute, read from the sink at most every few seconds.
func (w *Worker) Ranking() *rules.Ranking {
	w.rankMu.Lock()
	defer w.rankMu.Unlock()
	if w.now().Sub(w.rankAt) < 5*time.Second {
		return w.ranked
	}
	w.rankAt = w.now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	raw, err := w.fence.Rankings(ctx, w.now().Add(-3*time.Minute))
	if err != nil {
		w.log.Warn("reading rankings failed", "err", err)
		return w.ranked
	}
	var rs []*rules.Ranking
	for member, b := range raw {
		var r rules.Ranking
		if err := json.Unmarshal(b, &r); err != nil {
			w.log.Warn("undecodable ranking", "of", member, "err", err)
			continue
		}
		rs = append(rs, &r)
	}
	w.ranked = rules.MergeRankings(rs)
	return w.ranked
}

// workerMetrics are a worker's own, beside the engine's.
type workerMetrics struct {
	ignored       *prometheus.CounterVec
	duplicates    prometheus.Counter
	platformWaits prometheus.Counter
}

func newWorkerMetrics(reg prometheus.Registerer) *workerMetrics {
	f := promauto.With(reg)
	return &workerMetrics{
		ignored: f.NewCounterVec(prometheus.CounterOpts{Name: "riskwatch_ignored_changes_total",
			Help: "Source changes that are not events (SPEC §2: updates, deletes, truncates), by table and operation."}, []string{"table", "op"}),
		duplicates: f.NewCounter(prometheus.CounterOpts{Name: "riskwatch_worker_duplicates_total", Help: "Records at or before the partition's applied source position (redelivered by capture) and skipped."}),
		platformWaits: f.NewCounter(prometheus.CounterOpts{Name: "riskwatch_worker_platform_waits_total",
			Help: "Times closing waited for another partition to pass the end of the platform baseline."}),
	}
}
