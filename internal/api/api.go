// Package api serves riskwatch over HTTP: the dashboard's JSON API and its
// Server-Sent Events, the embedded dashboard itself, Prometheus metrics,
// liveness and readiness. docs/api.md is the reference.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/lease"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
)

// Readiness reports whether the engine is serving live data, and why not.
type Readiness func() (ready bool, detail any)

// Engine is what the API reads from the running pipeline.
type Engine interface {
	Status() engine.Status
	Ranking() *rules.Ranking
}

// Lease is the leadership of run processes sharing a sink.
type Lease interface {
	Info() lease.Info
}

// Options configure the server. Store, Engine and Config are needed for
// the dashboard; without them only /metrics, /healthz and /readyz exist.
type Options struct {
	Listen   string
	Gatherer prometheus.Gatherer
	Ready    Readiness
	Logger   *slog.Logger

	Config *config.Config
	DB     *store.DB
	Engine Engine
	// Lease, when set, says whether this process is the active one of
	// several run processes on the sink or a standby.
	Lease   Lease
	Assets  fs.FS // the built dashboard (index.html, assets/); nil: no pages
	Version string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// StatusEvery is how often SSE clients get a status event (2s when 0).
	StatusEvery time.Duration
}

// Server is the HTTP server and the SSE hub.
type Server struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	hub    *hub
	closed chan engine.ClosedMinutes
	params rules.Params
	dash   *dashboard.Store
	alerts *alertstore.Store
	// origins refuses state changes that a browser sends from another site.
	origins *http.CrossOriginProtection
	// streams holds a token per open event stream (http.max_streams).
	streams chan struct{}
	auth    *auth
}

// New builds a server.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StatusEvery <= 0 {
		opts.StatusEvery = 2 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger, now: opts.Now, hub: newHub(), closed: make(chan engine.ClosedMinutes, 64),
		origins: http.NewCrossOriginProtection()}
	if opts.DB != nil {
		s.dash, s.alerts = dashboard.New(opts.DB), alertstore.New(opts.DB)
	}
	if opts.Config != nil {
		p, err := opts.Config.RuleParams()
		if err != nil {
			return nil, err
		}
		s.params = p
		s.streams = make(chan struct{}, opts.Config.HTTP.MaxStreams)
		if s.auth, err = newAuth(opts.Config.HTTP.Auth, opts.Logger); err != nil {
			return nil, err
		}
		// Behind a reverse proxy the Host the server sees need not be the
		// one in the browser's address bar; external_url is.
		if ext := opts.Config.HTTP.ExternalURL; ext != "" {
			u, err := url.Parse(ext)
			if err != nil {
				return nil, fmt.Errorf("http.external_url: %w", err)
			}
			if err := s.origins.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
				return nil, fmt.Errorf("http.external_url as a trusted origin: %w", err)
			}
		}
	}
	return s, nil
}

// Handler returns every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, detail := s.opts.Ready()
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": ready, "status": detail})
	})
	if s.opts.DB != nil && s.opts.Config != nil && s.opts.Engine != nil {
		s.routes(mux)
	}
	return securityHeaders(s.guardChanges(mux))
}

// maxBody bounds the body of a state-changing request; an ack is a few
// hundred bytes.
const maxBody = 64 << 10

// guardChanges is what every state-changing request under /api/ passes
// before its handler, so that no endpoint, present or future, can forget
// it. A browser attaches cached Basic credentials to any request a page of
// any site makes, so the request must come from the dashboard's own origin
// (its Host, or http.external_url), judged by the Origin and Sec-Fetch-Site
// headers every browser sends; API clients send neither and pass. The body
// must be JSON, which a cross-site form cannot send without a preflight,
// and at most maxBody: it is read here, so a handler sees it whole or not
// at all and an oversized one is answered 413 rather than a reset.
func (s *Server) guardChanges(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		if safe || !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		if err := s.origins.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "%s %s from another site refused (Origin %q, Sec-Fetch-Site %q): only the dashboard's own pages may change state",
				r.Method, r.URL.Path, r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site"))
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type: want application/json, got %q", r.Header.Get("Content-Type"))
			return
		}
		if r.ContentLength > maxBody {
			writeError(w, http.StatusRequestEntityTooLarge, "body: at most %d bytes, got %d", maxBody, r.ContentLength)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				writeError(w, http.StatusRequestEntityTooLarge, "body: at most %d bytes", maxBody)
			} else {
				writeError(w, http.StatusBadRequest, "body: %v", err)
			}
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

func (s *Server) routes(mux *http.ServeMux) {
	auth := s.auth
	read := func(h http.HandlerFunc) http.Handler { return auth.require(levelRead, h) }
	readJSON := func(h jsonHandler) http.Handler { return read(s.serveJSON(h)) }
	operate := func(h jsonHandler) http.Handler { return auth.require(levelOperator, s.serveJSON(h)) }
	mux.Handle("GET /api/status", readJSON(s.handleStatus))
	mux.Handle("GET /api/platform/minutes", readJSON(s.handlePlatform))
	mux.Handle("GET /api/merchants", readJSON(s.handleSearch))
	mux.Handle("GET /api/rankings/risk", readJSON(s.handleRiskRanking()))
	mux.Handle("GET /api/rankings/volume-drop", readJSON(s.handleVolumeRanking()))
	mux.Handle("GET /api/merchants/{id}", readJSON(s.handleMerchant))
	mux.Handle("GET /api/merchants/{id}/series", readJSON(s.handleSeries))
	mux.Handle("GET /api/merchants/{id}/volume", readJSON(s.handleVolume))
	mux.Handle("GET /api/alerts", readJSON(s.handleAlerts))
	mux.Handle("GET /api/alerts/{id}", readJSON(s.handleAlert))
	mux.Handle("POST /api/alerts/{id}/ack", operate(s.handleAck))
	mux.Handle("POST /api/alerts/{id}/comments", operate(s.handleComment))
	mux.Handle("GET /api/alerts/{id}/audit", readJSON(s.handleAlertAudit))
	mux.Handle("GET /api/audit", readJSON(s.handleAudit))
	mux.Handle("GET /api/silences", readJSON(s.handleSilences))
	mux.Handle("POST /api/silences", operate(s.handleAddSilence))
	mux.Handle("POST /api/silences/{id}/expire", operate(s.handleExpireSilence))
	mux.Handle("GET /api/events", read(s.handleEvents))
	mux.Handle("/api/", read(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))
	if s.opts.Assets != nil {
		page := read(s.handlePage)
		for _, p := range []string{"GET /{$}", "GET /merchants", "GET /merchants/{id}", "GET /alerts", "GET /alerts/{id}"} {
			mux.Handle(p, page)
		}
		assets, err := fs.Sub(s.opts.Assets, "assets")
		if err == nil {
			mux.Handle("GET /assets/", read(http.StripPrefix("/assets/", assetsHandler(assets)).ServeHTTP))
		}
	}
}

// fontCacheControl: web/build.mjs names each font file after a hash of its
// content, so a browser may keep it for good (a new font is a new name).
// The other assets keep their names across releases and are revalidated.
// Private: the responses answer authenticated requests.
const fontCacheControl = "private, max-age=31536000, immutable"

// assetsHandler serves the dashboard's assets (paths relative to assets/).
// Font files get their media type from here, not from the host's
// mime.types, which may not know .woff2 or may name it differently.
func assetsHandler(assets fs.FS) http.Handler {
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if strings.HasPrefix(name, "fonts/") && path.Ext(name) == ".woff2" {
			if st, err := fs.Stat(assets, name); err == nil && st.Mode().IsRegular() {
				w.Header().Set("Content-Type", "font/woff2")
				w.Header().Set("Cache-Control", fontCacheControl)
			}
		}
		files.ServeHTTP(w, r)
	})
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, s.opts.Assets, "index.html")
}

// securityHeaders: scripts only from this origin (an injected merchant name
// could not run even if a page forgot to escape it), no framing, no
// sniffing, no referrer leaking merchant ids.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// badRequest is an error the client can fix; its message names the parameter.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return badRequest{fmt.Sprintf(format, args...)} }

// jsonHandler answers a request with a value to send as JSON with status
// 200, or an error for fail.
type jsonHandler func(r *http.Request) (any, error)

func (s *Server) serveJSON(h jsonHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// fail maps an error to its status: the one place that does.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var br badRequest
	switch {
	case errors.As(err, &br):
		writeError(w, http.StatusBadRequest, "%s", br.msg)
	case errors.Is(err, alertstore.ErrNotFound):
		writeError(w, http.StatusNotFound, "%s", err.Error())
	case errors.Is(err, alertstore.ErrNotOpen):
		writeError(w, http.StatusConflict, "%s", err.Error())
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	default:
		s.log.Error("api request failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error (logged)")
	}
}

// Closed hands a close of minutes to the SSE publisher without blocking the
// pipeline; if the publisher is behind, the oldest news is what is lost
// (clients refetch on the next one).
func (s *Server) Closed(ctx context.Context, c engine.ClosedMinutes) {
	select {
	case s.closed <- c:
	default:
		s.log.Warn("dashboard events behind; dropping a minute's push", "minute", c.Last.String())
	}
}

// Run serves until ctx is done, then shuts down gracefully. ready, when not
// nil, receives the bound address (useful with port 0).
func (s *Server) Run(ctx context.Context, ready chan<- string) error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("http listen on %s: %w", s.opts.Listen, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	s.log.Info("http listening", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.hub.closeAll()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	if s.opts.DB != nil && s.opts.Engine != nil {
		g.Go(func() error { return s.publish(gctx) })
	}
	return g.Wait()
}
