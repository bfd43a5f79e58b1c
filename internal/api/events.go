package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/window"
)

// subscriberBuffer is how many events a client may fall behind before it is
// disconnected (EventSource reconnects, and the page refetches).
const subscriberBuffer = 256

type sseEvent struct {
	name string
	data []byte
}

type subscriber struct {
	ch   chan sseEvent
	done chan struct{} // closed when the hub drops the subscriber
}

// hub fans events out to the connected SSE clients. Publishing never blocks:
// a client whose buffer is full is dropped rather than holding up the rest.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

func (h *hub) subscribe() *subscriber {
	sub := &subscriber{ch: make(chan sseEvent, subscriberBuffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(sub.done)
		return sub
	}
	h.subs[sub] = struct{}{}
	return sub
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[sub]; ok {
		delete(h.subs, sub)
		close(sub.done)
	}
}

func (h *hub) publish(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return // our own types always marshal
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		select {
		case sub.ch <- sseEvent{name, data}:
		default:
			delete(h.subs, sub)
			close(sub.done)
		}
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for sub := range h.subs {
		delete(h.subs, sub)
		close(sub.done)
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// handleEvents streams Server-Sent Events until the client leaves, is too
// slow, or the server stops.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		// The page's EventSource gives up on an error status and its own
		// retry comes back after 5 s, which is what Retry-After says too.
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many event streams open (http.max_streams is %d); retry later", cap(s.streams))
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	caller := principalOf(r.Context())
	// The first status at once, so a page shows health without waiting.
	first, _ := json.Marshal(s.status(caller))
	if _, err := fmt.Fprintf(w, "retry: 2000\nevent: status\ndata: %s\n\n", first); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	status := time.NewTicker(s.opts.StatusEvery)
	defer status.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-sub.done:
			return
		case ev := <-sub.ch:
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		case <-status.C:
			b, _ := json.Marshal(s.status(caller))
			_, err = fmt.Fprintf(w, "event: status\ndata: %s\n\n", b)
		case <-keepalive.C:
			_, err = fmt.Fprint(w, ": keepalive\n\n")
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

type minuteEvent struct {
	Minute time.Time `json:"minute"`
	T      int64     `json:"t"`
	window.Agg
}

func (m minuteEvent) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"minute": m.Minute, "t": m.T, "approvals": m.Approvals,
		"approved_amount": m.ApprovedAmount, "cancels": m.Cancels, "canceled_amount": m.CanceledAmount})
}

// publish turns the pipeline's closes into SSE events. It reads the sink
// (platform totals, names) here rather than on the apply loop.
func (s *Server) publish(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-s.closed:
			if s.hub.count() == 0 {
				continue
			}
			if err := s.publishClosed(ctx, c.Last, c.Transitions); err != nil && ctx.Err() == nil {
				s.log.Warn("dashboard push failed", "minute", c.Last.String(), "err", err)
			}
		}
	}
}

func (s *Server) publishClosed(ctx context.Context, last window.Minute, transitions []*alert.Change) error {
	if len(transitions) > 0 {
		ids := make([]int64, len(transitions))
		for i, ch := range transitions {
			ids[i] = ch.After.Merchant
		}
		names, err := s.dash.MerchantNames(ctx, ids)
		if err != nil {
			return err
		}
		for _, ch := range transitions {
			a := ch.After
			a.ID = ch.Alert.ID
			out := toAlertJSON(&a, names[a.Merchant])
			out.Transition = ch.TransitionName()
			s.hub.publish("alert", out)
		}
	}
	pts, err := s.dash.PlatformMinutes(ctx, last, last+1)
	if err != nil {
		return err
	}
	ev := minuteEvent{Minute: last.Start(), T: last.Start().Unix()}
	if len(pts) == 1 {
		ev.Agg = pts[0].Agg
	}
	s.hub.publish("minute", ev)
	return nil
}
