package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/pipeline"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// WorkerOptions configure a worker.
type WorkerOptions struct {
	Config   *config.Config
	Store    *store.Store
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Member names this worker in the sink (partition owner, ranking).
	Member string
	// Client adds franz-go options (tests shorten the group's timeouts).
	Client []kgo.Opt
	Now    func() time.Time
	// OnAlerts and OnClose are pipeline.Options' hooks.
	OnAlerts func()
	OnClose  func(ctx context.Context, c pipeline.Closed)
}

// Worker is one member of the consumer group: it aggregates and evaluates
// the merchants of the partitions it owns, with the partitions' offsets
// committed in the same sink transactions as what they produced.
type Worker struct {
	opts    WorkerOptions
	cfg     *config.Config
	st      *store.Store
	log     *slog.Logger
	now     func() time.Time
	mapping *event.Mapping
	topics  []string
	routes  []store.Route
	m       *workerMetrics
	stall   *pipeline.StallWatch
	tables  map[[2]string]*event.JSONTable
	// keyPrefix/keySuffix wrap a merchant id into its record key: the id
	// alone for capture's topic, {"<merchant column>":<id>} for Debezium's.
	keyPrefix, keySuffix []byte

	// mu guards the state below: the poll loop and the group's
	// assignment callbacks both touch it.
	mu        sync.Mutex
	nparts    int32
	parts     map[topicPartition]*partState
	owned     map[int32]bool
	closedAt  map[int32]window.Minute // per partition number: rules ran through here
	w         *window.Window
	ev        *pipeline.Evaluator
	evaluated window.Minute
	closing   bool
	dirty     bool // records applied since the last flush
	dead      []event.DeadLetter
	out       event.Output
	lastFlush time.Time
	failed    error // from a callback, returned by the poll loop

	ready   atomic.Bool
	statMu  sync.Mutex
	status  pipeline.Status
	pos     string // guarded by statMu
	rate    rateMeter
	rankMu  sync.Mutex
	ranked  *pipeline.Ranking
	rankAt  time.Time
	lastErr time.Time
}

type topicPartition struct {
	topic     string
	partition int32
}

type partState struct {
	store.Partition
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
	mapping, err := pipeline.NewMapping(opts.Config)
	if err != nil {
		return nil, err
	}
	if _, err := pipeline.NewRuleParams(opts.Config); err != nil {
		return nil, err
	}
	w := &Worker{opts: opts, cfg: opts.Config, st: opts.Store, log: opts.Logger.With("member", opts.Member), now: opts.Now,
		mapping: mapping, topics: opts.Config.KafkaTopics(), m: newWorkerMetrics(opts.Registry), tables: map[[2]string]*event.JSONTable{}}
	w.routes = pipeline.Routes(opts.Config)
	w.stall = pipeline.NewStallWatch(opts.Config, "worker:"+opts.Member, opts.Store, w.routes, opts.OnAlerts, w.log, opts.Registry)
	if opts.Config.Kafka.Input == "debezium" {
		// The connector's message.key.columns makes the key the merchant
		// column as a JSON object (see docs/kafka.md).
		w.keyPrefix, w.keySuffix = []byte(`{"`+opts.Config.Mapping[0].Merchant+`":`), []byte(`}`)
	}
	return w, nil
}

// Run consumes until ctx is done. A failure (Kafka, the sink, being fenced
// by a newer owner) leaves the group and rejoins after a backoff: the new
// assignment restores everything from the sink.
func (w *Worker) Run(ctx context.Context) error {
	return pipeline.Restarting(ctx, w.cfg, w.now, func(ctx context.Context) error {
		err := w.session(ctx)
		w.ready.Store(false)
		return err
	}, func(err error, backoff time.Duration) {
		w.log.Warn("worker stopped; rejoining the group", "err", err, "backoff", backoff)
		w.stall.Failed(ctx, w.now(), w.position(), err)
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
		if w.cfg.Kafka.Input == "debezium" && w.now().Sub(lastEnds) >= time.Second {
			w.endOffsets(ctx, adm)
			lastEnds = w.now()
		}
		w.mu.Lock()
		err := w.failed
		var commit map[string]map[int32]kgo.EpochOffset
		if err == nil && w.parts != nil {
			w.process(fetches)
			flushed := w.lastFlush
			err = w.step(ctx)
			if err == nil && w.lastFlush != flushed && w.parts != nil {
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
	var missing func(string, int32) store.Partition
	if w.cfg.Kafka.Input == "debezium" {
		// A topic nobody initialised: read it from its start; rules run
		// from the minute that closes now on (older rows are history).
		missing = func(string, int32) store.Partition {
			return store.Partition{NextOffset: 0, Watermark: time.Unix(0, 0), LastClosed: window.New(w.cfg.Grace.D(), 0).ClosableThrough(w.now().UnixMicro())}
		}
	}
	parts, err := w.st.ClaimPartitions(ctx, w.opts.Member, assigned, missing)
	if err != nil {
		return err
	}
	w.parts = map[topicPartition]*partState{}
	w.owned = map[int32]bool{}
	w.closedAt = map[int32]window.Minute{}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	count := map[int32]int{}
	last := window.Minute(0)
	for i, p := range parts {
		w.parts[topicPartition{p.Topic, p.Partition}] = &partState{Partition: p, wmUS: p.Watermark.UnixMicro(), hwm: -1}
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: p.NextOffset}
		count[p.Partition]++
		if c, ok := w.closedAt[p.Partition]; !ok || p.LastClosed < c {
			w.closedAt[p.Partition] = p.LastClosed
		}
		if i == 0 || p.LastClosed < last {
			last = p.LastClosed
		}
	}
	for p, n := range count {
		if n == len(w.topics) {
			w.owned[p] = true
		}
	}
	cl.SetOffsets(offsets)
	open, err := w.st.OpenAlerts(ctx)
	if err != nil {
		return err
	}
	scope := &pipeline.Scope{
		Owns: w.owns,
		Evaluated: func(m window.Minute, merchant int64) bool {
			return m <= w.closedAt[w.partitionOf(merchant)]
		},
		Platform: w.st.PlatformSums,
	}
	ev, err := pipeline.NewScopedEvaluator(ctx, w.st, w.cfg, last, open, scope)
	if err != nil {
		return fmt.Errorf("restoring rules state: %w", err)
	}
	ev.Ranked = func(r *pipeline.Ranking) {
		if err := w.st.SaveRanking(ctx, w.opts.Member, r.AsOf, r); err != nil {
			w.log.Warn("storing the ranking failed", "err", err)
		}
	}
	w.ev, w.w, w.evaluated, w.closing = ev, window.New(w.cfg.Grace.D(), last), last, false
	w.dead, w.lastFlush = nil, w.now()
	w.setPosition(parts)
	w.log.Info("partitions assigned", "partitions", len(parts), "merchants_restored", ev.State.Merchants(), "last_closed", last.String())
	w.setStatus(0)
	w.ready.Store(true)
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
	w.parts, w.ev, w.w, w.dead = nil, nil, nil, nil
	w.ready.Store(false)
}

// process applies a poll's records to the window.
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
			w.dirty = true
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
	ch, err := DecodeChange(r.Value)
	if errors.Is(err, ErrTombstone) {
		return
	}
	if err != nil {
		w.deadLetter(r, fmt.Sprintf("undecodable change event: %v", err))
		return
	}
	if ch.Op != "c" && ch.Op != "r" {
		w.m.ignored.WithLabelValues(ch.Op).Inc()
		return
	}
	// Snapshot reads all share the snapshot's position; only streamed
	// changes are ordered by it.
	if pos := ch.Position(); ch.Op == "c" && !pos.IsZero() {
		if !(Position{ps.PosCommit, ps.PosLSN}).Less(pos) {
			w.m.duplicates.Inc()
			return
		}
		ps.PosCommit, ps.PosLSN = pos.Commit, pos.LSN
	}
	ps.wmUS = max(ps.wmUS, ch.Source.TsUS)
	key := [2]string{ch.Source.Schema, ch.Source.Table}
	jt, ok := w.tables[key]
	if !ok {
		jt = w.mapping.BindJSON(key[0], key[1])
		w.tables[key] = jt
	}
	if jt == nil {
		return // a table the mapping does not name
	}
	w.out.Reset()
	jt.Map(ch.After, ch.Source.TsUS, ch.Source.LSN, &w.out)
	for _, e := range w.out.Events {
		var late, ok bool
		if e.Kind == event.Approval {
			late, ok = w.w.AddApproval(e.Merchant, e.TimeUS, e.Amount)
		} else {
			late, ok = w.w.AddCancel(e.Merchant, e.TimeUS, e.Amount)
		}
		if !ok {
			w.out.DeadLetters = append(w.out.DeadLetters, event.SumOverflow(e, "minute", ch.Source.LSN, time.UnixMicro(ch.Source.TsUS).UTC()))
			continue
		}
		if late {
			w.m.late.Inc()
		}
		w.m.events.WithLabelValues(e.Kind.String()).Inc()
	}
	for _, dl := range w.out.DeadLetters {
		w.m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
	}
	w.dead = append(w.dead, w.out.DeadLetters...)
}

func (w *Worker) deadLetter(r *kgo.Record, detail string) {
	w.m.deadLetters.WithLabelValues(string(event.ReasonInvalidValue)).Inc()
	w.dead = append(w.dead, event.DeadLetter{
		Table: r.Topic, Reason: event.ReasonInvalidValue,
		Detail: fmt.Sprintf("%s (topic %s, partition %d, offset %d)", detail, r.Topic, r.Partition, r.Offset),
		Row:    map[string]any{"key": string(r.Key), "value": string(r.Value)},
	})
}

// progressUS is how far every owned partition is applied: the oldest
// watermark. Without watermarks (Debezium), a partition read to its end
// for idle_after stops holding the others back.
func (w *Worker) progressUS() int64 {
	var lo, hi int64
	first := true
	idleAll := true
	now := w.now()
	for _, ps := range w.parts {
		hi = max(hi, ps.wmUS)
		if w.cfg.Kafka.Input == "debezium" {
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
		idleAll = false
		if first || ps.wmUS < lo {
			lo, first = ps.wmUS, false
		}
	}
	if idleAll {
		return hi
	}
	return lo
}

// step flushes when due and closes the minutes every partition has passed.
func (w *Worker) step(ctx context.Context) error {
	if _, _, ok := w.w.Advance(w.progressUS()); ok {
		w.closing = true
	}
	// Positions move with every record, watermarks included, so a flush
	// is due whenever anything was read; an idle worker writes nothing.
	due := w.dirty && w.now().Sub(w.lastFlush) >= w.cfg.Pipeline.FlushInterval.D()
	if w.closing || w.w.PendingEvents() >= w.cfg.Pipeline.MaxBatchEvents || due {
		return w.flush(ctx)
	}
	return nil
}

// flush writes the window's deltas, the dead letters and every partition's
// position in one sink transaction, then evaluates closed minutes.
func (w *Worker) flush(ctx context.Context) error {
	started := w.now()
	parts := make([]store.Partition, 0, len(w.parts))
	for _, ps := range w.parts {
		ps.Watermark = time.UnixMicro(ps.wmUS).UTC()
		parts = append(parts, ps.Partition)
	}
	b := &store.WorkerBatch{Deltas: w.w.Drain(), DeadLetters: w.dead, Partitions: parts}
	if err := w.st.ApplyWorker(ctx, b); err != nil {
		return fmt.Errorf("flushing to sink: %w", err)
	}
	deltas := b.Deltas
	for _, dl := range b.Refused {
		w.m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
		w.log.Error("a delta would take a stored sum past int64; recorded as a dead letter", "detail", dl.Detail)
	}
	w.m.flush.Observe(w.now().Sub(started).Seconds())
	events := 0
	for _, d := range deltas {
		w.ev.State.Add(d)
		events += int(d.Approvals + d.Cancels)
	}
	w.dead, w.lastFlush, w.dirty = nil, w.now(), false
	w.setPosition(parts)
	w.stall.Progressed(ctx, w.lastFlush, w.position())
	if w.closing {
		if err := w.evaluate(ctx, parts); err != nil {
			return err
		}
	}
	w.setStatus(events)
	return nil
}

// evaluate runs the rules for the closed minutes once every partition of
// the platform has passed the end of their baseline (the platform-wide
// rate reads every worker's totals); until then it waits.
func (w *Worker) evaluate(ctx context.Context, parts []store.Partition) error {
	first, last := w.evaluated+1, w.w.LastClosed()
	if last < first {
		w.closing = false
		return nil
	}
	through, err := w.st.AppliedThrough(ctx, w.topics)
	if err != nil {
		return err
	}
	if through.Before((last - 60).End().Add(w.cfg.Grace.D())) {
		w.m.platformWaits.Inc()
		return nil
	}
	started := w.now()
	batch := &store.AlertBatch{LastClosed: last, Routes: w.routes, Partitions: parts}
	c, enqueued, err := pipeline.CloseAndStore(ctx, w.ev, w.st, w.cfg, first, last, batch)
	if err != nil {
		return err
	}
	w.evaluated, w.closing = last, false
	for p, at := range w.closedAt {
		w.closedAt[p] = max(at, last)
	}
	for _, ps := range w.parts {
		ps.LastClosed = max(ps.LastClosed, last)
	}
	w.m.eval.Observe(w.now().Sub(started).Seconds())
	for _, ch := range c.Transitions {
		w.m.transitions.WithLabelValues(ch.After.Rule, ch.Transition.String()).Inc()
		w.log.Info("alert "+ch.Transition.String(), "rule", ch.After.Rule, "merchant", ch.After.Merchant, "minute", ch.Minute.String(), "notify", ch.Notify)
	}
	if enqueued > 0 && w.opts.OnAlerts != nil {
		w.opts.OnAlerts()
	}
	if w.opts.OnClose != nil {
		w.opts.OnClose(ctx, c)
	}
	return nil
}

func (w *Worker) setStatus(events int) {
	now := w.now()
	progress := time.UnixMicro(w.progressUS()).UTC()
	w.statMu.Lock()
	defer w.statMu.Unlock()
	w.status.LastClosed, w.status.Progress = w.evaluated, progress
	w.status.EventsPerSecond = w.rate.add(now, events)
}

// position is where the worker stands: its partitions' offsets as the sink
// holds them, for telling a stuck worker.
func (w *Worker) position() string {
	w.statMu.Lock()
	defer w.statMu.Unlock()
	return w.pos
}

// setPosition records the partitions' next offsets as the sink holds them,
// in a stable order.
func (w *Worker) setPosition(parts []store.Partition) {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = fmt.Sprintf("%s/%d@%d", p.Topic, p.Partition, p.NextOffset)
	}
	slices.Sort(s)
	w.statMu.Lock()
	w.pos = strings.Join(s, " ")
	w.statMu.Unlock()
}

// Status is the worker's state for the API: its own partitions' progress.
func (w *Worker) Status() pipeline.Status {
	w.statMu.Lock()
	st := w.status
	w.statMu.Unlock()
	st.Stuck = w.stall.Current()
	st.Ready = w.ready.Load() && st.Stuck == nil
	if !st.Progress.IsZero() {
		st.LagSeconds = max(0, w.now().Sub(st.Progress).Seconds())
	}
	return st
}

// Ranking merges the rankings every worker stored at its newest closed
// minute, read from the sink at most every few seconds.
func (w *Worker) Ranking() *pipeline.Ranking {
	w.rankMu.Lock()
	defer w.rankMu.Unlock()
	if w.now().Sub(w.rankAt) < 5*time.Second {
		return w.ranked
	}
	w.rankAt = w.now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	raw, err := w.st.Rankings(ctx, w.now().Add(-3*time.Minute))
	if err != nil {
		w.log.Warn("reading rankings failed", "err", err)
		return w.ranked
	}
	var rs []*pipeline.Ranking
	for member, b := range raw {
		var r pipeline.Ranking
		if err := json.Unmarshal(b, &r); err != nil {
			w.log.Warn("undecodable ranking", "of", member, "err", err)
			continue
		}
		rs = append(rs, &r)
	}
	w.ranked = pipeline.MergeRankings(rs)
	return w.ranked
}

// rateMeter is events per second over about the last ten seconds.
type rateMeter struct {
	total   int64
	samples []rateSample
}

type rateSample struct {
	at    time.Time
	total int64
}

func (r *rateMeter) add(now time.Time, n int) float64 {
	r.total += int64(n)
	r.samples = append(r.samples, rateSample{now, r.total})
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) >= 10*time.Second {
		r.samples = r.samples[1:]
	}
	if first := r.samples[0]; len(r.samples) > 1 && now.Sub(first.at) > 0 {
		return float64(r.total-first.total) / now.Sub(first.at).Seconds()
	}
	return 0
}

type workerMetrics struct {
	events        *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	ignored       *prometheus.CounterVec
	transitions   *prometheus.CounterVec
	late          prometheus.Counter
	duplicates    prometheus.Counter
	platformWaits prometheus.Counter
	flush, eval   prometheus.Histogram
}

func newWorkerMetrics(reg prometheus.Registerer) *workerMetrics {
	m := &workerMetrics{
		events:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "riskwatch_events_total", Help: "Events aggregated, by kind (approval, cancel)."}, []string{"kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "riskwatch_dead_letters_total", Help: "Records written to the dead-letter table instead of being aggregated, by reason."}, []string{"reason"}),
		ignored:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "riskwatch_worker_ignored_changes_total", Help: "Change events that are not inserts (updates, deletes, truncates, messages), by op."}, []string{"op"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "riskwatch_alert_transitions_total", Help: "Alert transitions, by rule and transition."}, []string{"rule", "transition"}),
		late:        prometheus.NewCounter(prometheus.CounterOpts{Name: "riskwatch_late_events_total", Help: "Events whose minute was already closed; applied to the stored minute, never dropped."}),
		duplicates:  prometheus.NewCounter(prometheus.CounterOpts{Name: "riskwatch_worker_duplicates_total", Help: "Records at or before the partition's applied source position (redelivered by capture) and skipped."}),
		platformWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "riskwatch_worker_platform_waits_total",
			Help: "Times closing waited for another partition to pass the end of the platform baseline."}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "riskwatch_flush_seconds", Help: "Sink transaction time of a flush.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		eval:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "riskwatch_evaluation_seconds", Help: "Time to evaluate and store closed minutes.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	for _, r := range event.Reasons {
		m.deadLetters.WithLabelValues(string(r))
	}
	if reg != nil {
		reg.MustRegister(m.events, m.deadLetters, m.ignored, m.transitions, m.late, m.duplicates, m.platformWaits, m.flush, m.eval)
	}
	return m
}
