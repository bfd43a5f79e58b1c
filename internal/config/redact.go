package config

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

const redacted = "xxxxx"

// keywordStartRE recognises the start of a "keyword=" pair in a keyword/value
// DSN; it tells where an unquoted password that contains spaces ends.
var keywordStartRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*[ \t\n\r\v\f]*=`)

// RedactDSN returns the DSN with any password replaced by "xxxxx" — works for
// URL form (postgres://u:pw@h/db?password=pw too) and keyword/value form
// ("host=h password='p w' user=u"). Used for every log line that mentions a
// DSN.
//
// Well-formed DSNs are redacted exactly and otherwise left intact. For
// malformed ones, where the parser's view of the string is ambiguous, it
// masks more rather than less: a log line with too little in it is a nuisance,
// one with a password in it is an incident.
func RedactDSN(dsn string) string {
	spans := secretSpans(dsn)
	if len(spans) == 0 {
		return dsn
	}
	var b strings.Builder
	last := 0
	for _, s := range spans {
		b.WriteString(dsn[last:s.start])
		b.WriteString(redacted)
		last = s.end
	}
	b.WriteString(dsn[last:])
	return b.String()
}

// dsnSecrets returns the text of every password RedactDSN would mask.
func dsnSecrets(dsn string) []string {
	var out []string
	for _, s := range secretSpans(dsn) {
		out = append(out, dsn[s.start:s.end])
	}
	return out
}

type span struct{ start, end int }

// secretSpans returns the non-empty byte ranges of dsn holding a password,
// in order and without overlap.
func secretSpans(dsn string) []span {
	lower := strings.ToLower(dsn)
	for _, prefix := range []string{"postgres://", "postgresql://"} {
		if strings.HasPrefix(lower, prefix) {
			return urlSecretSpans(dsn, len(prefix))
		}
	}
	if !strings.Contains(dsn, "=") {
		return brokenURLSpans(dsn)
	}
	return keywordSecretSpans(dsn)
}

// urlSecretSpans handles postgres://[user[:password]@]host[:port][,...][/db][?k=v&...].
// start is the offset just past the scheme.
func urlSecretSpans(dsn string, start int) []span {
	rest := dsn[start:]

	// As libpq and pgconn do: userinfo ends at an '@' that comes before any '/'.
	at := -1
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		at = i
	}
	hostStart := at + 1
	hostEnd := len(rest)
	if i := strings.IndexAny(rest[hostStart:], "/?"); i >= 0 {
		hostEnd = hostStart + i
	}
	pathEnd := len(rest)
	if i := strings.IndexByte(rest[hostEnd:], '?'); i >= 0 {
		pathEnd = hostEnd + i
	}

	if urlAmbiguous(rest[hostStart:hostEnd], rest[hostEnd:pathEnd], rest[pathEnd:]) {
		// An unencoded '@', '/' or '?' in the password has shifted the
		// boundaries; assume the userinfo runs to the last '@'.
		at = strings.LastIndexByte(rest, '@')
		hostStart = at + 1
		pathEnd = len(rest)
		if i := strings.IndexByte(rest[hostStart:], '?'); i >= 0 {
			pathEnd = hostStart + i
		}
	}

	var spans []span
	if at >= 0 {
		if c := strings.IndexByte(rest[:at], ':'); c >= 0 && c+1 < at {
			spans = append(spans, span{start + c + 1, start + at})
		}
	}
	if pathEnd < len(rest) {
		qStart := start + pathEnd + 1
		query := dsn[qStart:]
		off := qStart
		for pair := range strings.SplitSeq(query, "&") {
			key, val, ok := strings.Cut(pair, "=")
			if ok && val != "" && isPasswordKey(unescapeQuery(key)) {
				vStart := off + len(key) + 1
				spans = append(spans, span{vStart, vStart + len(val)})
			}
			off += len(pair) + 1
		}
	}
	return spans
}

// urlAmbiguous reports whether the split of a URL into host, path and query
// looks wrong, i.e. a password character was probably taken as a delimiter.
func urlAmbiguous(hosts, path, query string) bool {
	if strings.Contains(hosts, "@") || strings.Contains(path, "@") {
		return true
	}
	for h := range strings.SplitSeq(hosts, ",") {
		port := ""
		if strings.HasPrefix(h, "[") {
			if _, after, ok := strings.Cut(h, "]"); ok {
				port = strings.TrimPrefix(after, ":")
			}
		} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
			port = h[i+1:]
		}
		if port != "" {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return true
			}
		}
	}
	if q, ok := strings.CutPrefix(query, "?"); ok && q != "" {
		for pair := range strings.SplitSeq(q, "&") {
			if pair != "" && !strings.Contains(pair, "=") {
				return true
			}
		}
	}
	return false
}

func unescapeQuery(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func isPasswordKey(k string) bool {
	k = strings.ToLower(strings.TrimSpace(k))
	return k == "password" || k == "sslpassword"
}

// keywordSecretSpans handles "key=value key='quoted value' ...", following
// libpq's tokenisation: values are quoted with ' or end at whitespace, and a
// backslash escapes the next character in both.
func keywordSecretSpans(s string) []span {
	var spans []span
	i := 0
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			return spans
		}
		keyStart := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[keyStart:i]
		i = skipSpace(s, i)
		if i >= len(s) || s[i] != '=' {
			continue // a stray word; the parser rejects it, nothing to mask
		}
		i = skipSpace(s, i+1)
		valStart := i
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i = quotedEnd(s, i+1)
		} else {
			i = wordEnd(s, i)
			if isPasswordKey(key) {
				// "password=p w user=u" is malformed, but "w" is most likely
				// the rest of the password: absorb words up to the next key.
				for {
					j := skipSpace(s, i)
					if j >= len(s) || keywordStartRE.MatchString(s[j:]) {
						break
					}
					i = wordEnd(s, j)
				}
			}
		}
		if isPasswordKey(key) && i > valStart {
			spans = append(spans, span{valStart, i})
		}
	}
}

// quotedEnd returns the index just past the closing quote of a value whose
// content starts at i, or len(s) when the quote is unterminated.
func quotedEnd(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
		case '\'':
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

func wordEnd(s string, i int) int {
	for i < len(s) && !isSpace(s[i]) {
		if s[i] == '\\' {
			i++
		}
		i++
	}
	return min(i, len(s))
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// brokenURLSpans masks user:password@ in something that is neither a
// postgres:// URL nor keyword/value, such as a mistyped scheme
// ("postgres:/u:pw@h").
func brokenURLSpans(s string) []span {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return nil
	}
	c := strings.IndexByte(s[:at], ':')
	if c < 0 || c+1 >= at {
		return nil
	}
	return []span{{c + 1, at}}
}
