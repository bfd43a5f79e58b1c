package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/riskwatch/riskwatch/internal/config"
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
}

func newAuth(c config.Auth) *auth { return &auth{read: c.Read, operator: c.Operator} }

type principalKey struct{}

// principal is who the request authenticated as: the Basic username, or ""
// for a token or no credentials.
type principal struct {
	user  string
	level level
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

func matches(c config.Credentials, r *http.Request) (user string, ok bool) {
	if !c.Configured() {
		return "", false
	}
	h := r.Header.Get("Authorization")
	if tok, found := strings.CutPrefix(h, "Bearer "); found && c.Token != "" {
		return "", equal(tok, c.Token)
	}
	if u, p, found := r.BasicAuth(); found {
		// A token also works as a Basic password (any username), so a
		// browser's own credentials prompt can carry it.
		ok := (c.Username != "" && equal(u, c.Username) && equal(p, c.Password)) || (c.Token != "" && equal(p, c.Token))
		return u, ok
	}
	return "", false
}

// grant returns the highest level the request's credentials reach. With
// nothing configured everyone operates; with only read configured, readers
// operate too (documented: one shared password is a common small setup).
func (a *auth) grant(r *http.Request) principal {
	readOn, opOn := a.read.Configured(), a.operator.Configured()
	if !readOn && !opOn {
		return principal{level: levelOperator}
	}
	if u, ok := matches(a.operator, r); ok {
		return principal{user: u, level: levelOperator}
	}
	if u, ok := matches(a.read, r); ok {
		if !opOn {
			return principal{user: u, level: levelOperator}
		}
		return principal{user: u, level: levelRead}
	}
	return principal{level: levelNone}
}

func (a *auth) require(need level, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := a.grant(r)
		if p.level >= need {
			h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
			return
		}
		if p.level == levelNone {
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
		writeError(w, http.StatusForbidden, "operator credentials required to %s", strings.ToLower(r.Method)+" "+r.URL.Path)
	})
}
