package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"
)

// SenderOptions configures a Sender. Zero values take the defaults noted.
type SenderOptions struct {
	Name     string   // the receiver's name, as the Queue and the metrics know it; required
	Notifier Notifier // required
	Queue    Queue    // required
	// Batch is the most notifications per Notify call (default 20). A
	// Notifier that can take fewer says so with a MaxBatch() int method, and
	// the smaller of the two wins.
	Batch      int
	Timeout    time.Duration // per send, and per outbox write (default 10s)
	BackoffMin time.Duration // delay after the first failure (default 1s)
	BackoffMax time.Duration // cap of the doubling (default 5m)
	// Poll is how often the outbox is read without a Wake (default 5s). Wake
	// makes new notifications go out at once; polling covers rows nobody
	// woke the sender for (another process, a restart, an operator's fix).
	Poll    time.Duration
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger     // default: discard
	Metrics *Metrics         // default: unregistered metrics of its own
	// Jitter, when set, turns each computed backoff d into the delay
	// actually used (e.g. RandomJitter(0.1)); the result is kept within
	// (0, BackoffMax]. Nil means none, which keeps tests exact.
	Jitter func(d time.Duration) time.Duration
	// Gate, when set, is asked just before each send: false holds the
	// notifications back (a standby, or an active process whose lease ran
	// out) without counting an attempt.
	Gate func() bool
}

// Sender is the send loop of one receiver. It owns no queue of its own: the
// outbox is the queue, so nothing is lost when the receiver is down or the
// process dies, and memory does not grow with the backlog.
type Sender struct {
	o     SenderOptions
	batch int
	wake  chan struct{}
	log   *slog.Logger
	m     receiverMetrics
}

// NewSender returns a Sender. A missing Name, Notifier or Queue is a wiring
// bug, not a configuration error, so it panics.
func NewSender(o SenderOptions) *Sender {
	if o.Name == "" || o.Notifier == nil || o.Queue == nil {
		panic("notify: NewSender needs Name, Notifier and Queue")
	}
	if o.Batch <= 0 {
		o.Batch = 20
	}
	batch := o.Batch
	if mb, ok := o.Notifier.(interface{ MaxBatch() int }); ok && mb.MaxBatch() > 0 {
		batch = min(batch, mb.MaxBatch())
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	return &Sender{
		o:     o,
		batch: batch,
		wake:  make(chan struct{}, 1),
		log:   o.Logger.With("receiver", o.Name),
		m:     o.Metrics.forReceiver(o.Name),
	}
}

// Wake tells the loop that new notifications may be due. It never blocks: the
// pipeline calls it after committing outbox rows, and a wake-up already
// pending covers any number of commits.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers due notifications until ctx is done, then returns nil. It has
// no other way out: receiver failures are retried with backoff, rejections
// are recorded and skipped, and outbox errors are logged and retried, so one
// bad receiver or a database blip never stops delivery for good.
func (s *Sender) Run(ctx context.Context) error {
	s.log.Debug("notification sender started", "batch", s.batch)
	timer := time.NewTimer(0)
	defer timer.Stop()
	queueFailures := 0
	for {
		wait, err := s.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			queueFailures++
			// Backs off like a receiver failure, but never beyond the poll
			// interval: once the database is back, the backlog should move.
			wait = min(s.backoff(queueFailures), s.o.Poll)
			s.m.queueErrors.Inc()
			s.log.Warn("notification outbox failed; retrying", "err", err, "retry_in", wait)
		} else {
			queueFailures = 0
			if wait <= 0 || wait > s.o.Poll {
				wait = s.o.Poll
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// drain sends batches while the outbox has due notifications. It returns how
// long until the next one is due, or the first outbox error.
func (s *Sender) drain(ctx context.Context) (time.Duration, error) {
	for ctx.Err() == nil {
		ns, wait, err := s.o.Queue.Due(ctx, s.o.Name, s.o.Now(), s.batch)
		if err != nil {
			return 0, fmt.Errorf("reading due notifications: %w", err)
		}
		if len(ns) == 0 {
			return wait, nil
		}
		if err := s.deliver(ctx, ns); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// deliver sends one batch and records the outcome. Its error is an outbox
// error; receiver failures are outcomes, not errors.
func (s *Sender) deliver(ctx context.Context, ns []Notification) error {
	retry, err := s.send(ctx, ns)
	switch {
	case err == nil:
		return s.delivered(ctx, ns)
	case errors.Is(err, ErrGateClosed):
		// Nothing was attempted: the notifications stay due as they are.
		return err
	case ctx.Err() != nil:
		// Shutting down: the attempt says nothing about the receiver, and
		// the notifications are still due for the next run.
		return nil
	case retry:
		return s.retry(ctx, ns, err)
	case len(ns) == 1:
		return s.rejected(ctx, ns, err)
	}
	// A batch was rejected. Alertmanager, for one, answers 400 to a whole
	// batch when a single alert in it is invalid (after storing the valid
	// ones), so rejecting the batch would lose good notifications. Sending
	// them one by one rejects only the bad one; resending the good ones is
	// what at-least-once allows anyway.
	s.log.Warn("receiver rejected a batch; sending its notifications one by one", "notifications", len(ns), "err", err)
	for i := range ns {
		one := ns[i : i+1]
		retry, err := s.send(ctx, one)
		switch {
		case err == nil:
			if err := s.delivered(ctx, one); err != nil {
				return err
			}
		case errors.Is(err, ErrGateClosed):
			return err
		case ctx.Err() != nil:
			return nil
		case retry:
			// Keep order: this one and everything after it wait together.
			return s.retry(ctx, ns[i:], err)
		default:
			if err := s.rejected(ctx, one, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrGateClosed holds notifications back while SenderOptions.Gate says no.
var ErrGateClosed = errors.New("not sending: this process may not send now")

// send makes one attempt, bounded by Timeout.
func (s *Sender) send(ctx context.Context, ns []Notification) (bool, error) {
	if s.o.Gate != nil && !s.o.Gate() {
		return false, ErrGateClosed
	}
	sctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	start := time.Now()
	retry, err := s.o.Notifier.Notify(sctx, ns...)
	s.m.sendSeconds.Observe(time.Since(start).Seconds())
	if err != nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		// A receiver that did not answer in time gave no verdict, whatever
		// error the integration made of it.
		retry = true
	}
	return retry, err
}

// queueCtx bounds an outbox write without inheriting ctx's cancellation: an
// outcome learnt just before shutdown is still worth recording (a delivery
// not recorded is a duplicate on restart).
func (s *Sender) queueCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
}

func (s *Sender) delivered(ctx context.Context, ns []Notification) error {
	now := s.o.Now()
	s.m.sent.Add(float64(len(ns)))
	for _, n := range ns {
		if !n.CreatedAt.IsZero() {
			s.m.delay.Observe(max(0, now.Sub(n.CreatedAt).Seconds()))
		}
	}
	qctx, cancel := s.queueCtx(ctx)
	defer cancel()
	if err := s.o.Queue.Delivered(qctx, s.o.Name, ids(ns), now); err != nil {
		return fmt.Errorf("recording %d delivered notifications (first id %d): %w", len(ns), ns[0].ID, err)
	}
	s.log.Debug("notifications delivered", "notifications", len(ns), "first_id", ns[0].ID)
	return nil
}

func (s *Sender) retry(ctx context.Context, ns []Notification, cause error) error {
	attempts := 0
	for _, n := range ns {
		attempts = max(attempts, n.Attempts)
	}
	attempts++
	delay := s.backoff(attempts)
	if s.o.Jitter != nil {
		if j := s.o.Jitter(delay); j > 0 {
			delay = min(j, s.o.BackoffMax)
		}
	}
	if ra := RetryAfter(cause); ra > delay {
		// The receiver knows its rate limit better than our doubling, but
		// the cap still holds so a silly header cannot park delivery.
		delay = min(ra, s.o.BackoffMax)
	}
	next := s.o.Now().Add(delay)
	s.m.failed.Add(float64(len(ns)))
	s.log.Warn("sending notifications failed; will retry", "notifications", len(ns), "first_id", ns[0].ID,
		"attempts", attempts, "retry_in", delay, "err", cause)
	qctx, cancel := s.queueCtx(ctx)
	defer cancel()
	if err := s.o.Queue.Retry(qctx, s.o.Name, ids(ns), attempts, next, reason(cause)); err != nil {
		return fmt.Errorf("recording failed attempt %d for %d notifications (first id %d): %w", attempts, len(ns), ns[0].ID, err)
	}
	return nil
}

func (s *Sender) rejected(ctx context.Context, ns []Notification, cause error) error {
	s.m.rejected.Add(float64(len(ns)))
	s.log.Error("receiver rejected notifications; not retrying", "notifications", len(ns), "first_id", ns[0].ID,
		"idempotency_key", ns[0].IdempotencyKey, "err", cause)
	qctx, cancel := s.queueCtx(ctx)
	defer cancel()
	if err := s.o.Queue.Rejected(qctx, s.o.Name, ids(ns), reason(cause)); err != nil {
		return fmt.Errorf("recording %d rejected notifications (first id %d): %w", len(ns), ns[0].ID, err)
	}
	return nil
}

// backoff is BackoffMin doubled per failed attempt after the first, capped
// at BackoffMax.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.o.BackoffMin
	for i := 1; i < attempts && d < s.o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.o.BackoffMax)
}

// RandomJitter returns a Jitter that lengthens each delay by up to fraction
// of it, so that senders failing together do not retry in lockstep. It only
// ever adds, so the doubling is never undone.
func RandomJitter(fraction float64) func(time.Duration) time.Duration {
	return func(d time.Duration) time.Duration {
		return d + time.Duration(float64(d)*fraction*rand.Float64())
	}
}

func ids(ns []Notification) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

// maxReason bounds the failure text stored in the outbox.
const maxReason = 1000

func reason(err error) string {
	s := err.Error()
	if len(s) > maxReason {
		// Cut on a rune boundary so the column stays valid UTF-8.
		cut := maxReason
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
