package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"unicode"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

type level int

const (
	levelNone level = iota
	levelRead
	levelOperator
)

// auth decides what a request's credentials grant.
type auth struct {
	read, operator config.Credentials
	// proxy is nil unless http.auth.proxy is enabled.
	proxy *proxyAuth
	log   *slog.Logger
}

// proxyAuth is http.auth.proxy, parsed.
type proxyAuth struct {
	header, emailHeader string
	trusted             []netip.Prefix
	// operators holds lower-cased names and emails; empty: everyone.
	operators []string
}

func newAuth(c config.Auth, log *slog.Logger) (*auth, error) {
	a := &auth{read: c.Read, operator: c.Operator, log: log}
	if px := c.Proxy; px.Enabled {
		trusted, err := config.ParseTrusted(px.Trusted)
		if err != nil {
			return nil, err
		}
		a.proxy = &proxyAuth{header: px.Header, emailHeader: px.EmailHeader, trusted: trusted}
		for _, o := range px.Operators {
			a.proxy.operators = append(a.proxy.operators, strings.ToLower(strings.TrimSpace(o)))
		}
	}
	return a, nil
}

type principalKey struct{}

// principal is who the request authenticated as, and how.
type principal struct {
	// user is a verified identity: the proxy's user, or a Basic username
	// whose password matched. via says which (alertstore.ViaProxy or
	// ViaBasic); email comes from the proxy.
	user, via, email string
	// claimed is a Basic username sent with a token as the password: any
	// name goes, so it is only a default for a typed name.
	claimed string
	level   level
	// proxied: the TCP peer is a trusted proxy, whose X-Forwarded-For
	// says where the request came from.
	proxied bool
}

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// equal compares in constant time (hashing first hides the length too).
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// matches reports whether the request carries the credentials c, and the
// Basic username it sent: verified when its password matched, merely
// claimed when the token served as the password.
func matches(c config.Credentials, r *http.Request) (user string, verified, ok bool) {
	if !c.Configured() {
		return "", false, false
	}
	h := r.Header.Get("Authorization")
	if tok, found := strings.CutPrefix(h, "Bearer "); found && c.Token != "" {
		return "", false, equal(tok, c.Token)
	}
	if u, p, found := r.BasicAuth(); found {
		// A token also works as a Basic password (any username), so a
		// browser's own credentials prompt can carry it.
		if c.Username != "" && equal(u, c.Username) && equal(p, c.Password) {
			return u, true, true
		}
		return u, false, c.Token != "" && equal(p, c.Token)
	}
	return "", false, false
}

// peerAddr is the request's TCP peer, IPv4-mapped addresses unmapped.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func (px *proxyAuth) trusts(r *http.Request) bool {
	a, ok := peerAddr(r)
	return ok && slices.ContainsFunc(px.trusted, func(p netip.Prefix) bool { return p.Contains(a) })
}

// operates reports whether a proxied user may act (names and emails
// compare case-insensitively, as identity providers treat them).
func (px *proxyAuth) operates(user, email string) bool {
	return len(px.operators) == 0 || slices.Contains(px.operators, strings.ToLower(user)) ||
		(email != "" && slices.Contains(px.operators, strings.ToLower(email)))
}

// headerValue is the header's single value, or "" when it is absent,
// repeated (a proxy replaces it; a second copy came from the client) or
// not a printable name of at most 200 bytes.
func headerValue(r *http.Request, name string) string {
	vs := r.Header.Values(name)
	if len(vs) != 1 {
		return ""
	}
	v := strings.TrimSpace(vs[0])
	if len(v) > 200 || strings.ContainsFunc(v, func(c rune) bool { return !unicode.IsPrint(c) }) {
		return ""
	}
	return v
}

// fromProxy returns the identity a trusted proxy passed, if any. The
// header from any other peer is ignored, and said so in the log: it is
// either a misconfigured trusted list or someone posing as a colleague.
func (a *auth) fromProxy(r *http.Request) (principal, bool) {
	if a.proxy == nil || len(r.Header.Values(a.proxy.header)) == 0 {
		return principal{}, false
	}
	if !a.proxy.trusts(r) {
		a.log.Warn("identity header from an untrusted peer ignored", "header", a.proxy.header, "peer", r.RemoteAddr,
			"value", r.Header.Get(a.proxy.header), "path", r.URL.Path)
		return principal{}, false
	}
	user := headerValue(r, a.proxy.header)
	if user == "" {
		a.log.Warn("identity header from the proxy unusable (empty, repeated, too long or not printable)", "header", a.proxy.header, "peer", r.RemoteAddr)
		return principal{}, false
	}
	p := principal{user: user, via: alertstore.ViaProxy, level: levelRead, proxied: true}
	if a.proxy.emailHeader != "" {
		p.email = headerValue(r, a.proxy.emailHeader)
	}
	if a.proxy.operates(p.user, p.email) {
		p.level = levelOperator
	}
	return p, true
}

// grant returns who the request is and the highest level it reaches. A
// trusted proxy's identity decides alone (the proxy may pass an
// Authorization header of its own). Otherwise the credentials do: with
// nothing configured everyone operates (unless a proxy is configured: then
// only through it), and with only read configured readers operate too
// (documented: one shared password is a common small setup).
func (a *auth) grant(r *http.Request) principal {
	if p, ok := a.fromProxy(r); ok {
		return p
	}
	proxied := a.proxy != nil && a.proxy.trusts(r)
	readOn, opOn := a.read.Configured(), a.operator.Configured()
	if !readOn && !opOn {
		if a.proxy != nil {
			return principal{level: levelNone, proxied: proxied}
		}
		return principal{level: levelOperator}
	}
	withUser := func(u string, verified bool, l level) principal {
		if verified {
			return principal{user: u, via: alertstore.ViaBasic, level: l, proxied: proxied}
		}
		return principal{claimed: u, level: l, proxied: proxied}
	}
	if u, verified, ok := matches(a.operator, r); ok {
		return withUser(u, verified, levelOperator)
	}
	if u, verified, ok := matches(a.read, r); ok {
		if !opOn {
			return withUser(u, verified, levelOperator)
		}
		return withUser(u, verified, levelRead)
	}
	return principal{level: levelNone, proxied: proxied}
}

func (a *auth) require(need level, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := a.grant(r)
		if p.level >= need {
			h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
			return
		}
		if p.level == levelNone {
			if a.proxy != nil && !a.read.Configured() && !a.operator.Configured() {
				writeError(w, http.StatusUnauthorized, "sign in through the SSO proxy")
				return
			}
			// A Basic challenge makes a browser show its own login box:
			// right for pages and reads, wrong for the ack the page sends
			// with the operator credentials its dialog asked for (a typo
			// would pop up the browser's box over it).
			if need == levelRead {
				w.Header().Set("WWW-Authenticate", `Basic realm="riskwatch", charset="UTF-8"`)
			}
			w.Header().Add("WWW-Authenticate", `Bearer realm="riskwatch"`)
			writeError(w, http.StatusUnauthorized, "credentials required")
			return
		}
		if p.via == alertstore.ViaProxy {
			writeError(w, http.StatusForbidden, "%s may read but not operate (http.auth.proxy.operators) to %s", p.user, strings.ToLower(r.Method)+" "+r.URL.Path)
			return
		}
		writeError(w, http.StatusForbidden, "operator credentials required to %s", strings.ToLower(r.Method)+" "+r.URL.Path)
	})
}

// actor is the person an operator action records: the request's verified
// identity when it has one (a typed name is then ignored), else the name
// it typed, else a Basic username that came with a token. what completes
// "who … is required".
func actor(r *http.Request, typed, what string) (alertstore.Actor, error) {
	p := principalOf(r.Context())
	var a alertstore.Actor
	if peer, ok := peerAddr(r); ok {
		a.Peer = peer.String()
	}
	if p.proxied {
		a.ForwardedFor = strings.Join(r.Header.Values("X-Forwarded-For"), ", ")
	}
	if p.user != "" {
		a.Name, a.Via, a.Email = p.user, p.via, p.email
		return a, nil
	}
	a.Name, a.Via = strings.TrimSpace(typed), alertstore.ViaTyped
	if a.Name == "" {
		a.Name = p.claimed
	}
	switch {
	case a.Name == "":
		return a, badf("by: who %s is required (the request carries no user name)", what)
	case len(a.Name) > 200:
		return a, badf("by: at most 200 characters")
	}
	return a, nil
}

// identityJSON is who /api/status's caller is, when known.
type identityJSON struct {
	Name  string  `json:"name"`
	Via   string  `json:"via"`
	Email *string `json:"email"`
}

func identityOf(p principal) *identityJSON {
	if p.user == "" {
		return nil
	}
	id := &identityJSON{Name: p.user, Via: p.via}
	if p.email != "" {
		id.Email = &p.email
	}
	return id
}
