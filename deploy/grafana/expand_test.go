package grafana

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// What Grafana does to a query before the data source runs it, as its
// documentation for the PostgreSQL and Prometheus data sources and for
// dashboard variables says: template variables first (the dashboard),
// then the SQL data source's macros (the server). Grafana itself cannot be
// installed here, so the tests run the dashboards' queries through this.

// query is the time range and the variables of one panel query.
type query struct {
	from, to      time.Time
	maxDataPoints int
	// minInterval is the panel's "Min interval", else the data source's
	// timeInterval (1m for the sink, the scrape interval for Prometheus).
	minInterval time.Duration
	vars        map[string]string // single-valued variables, by name
}

// interval is $__interval: the range over the points the panel draws,
// never below the minimum interval, rounded to one of Grafana's steps.
func (q query) interval() time.Duration {
	raw := q.to.Sub(q.from) / time.Duration(q.maxDataPoints)
	if raw < q.minInterval {
		raw = q.minInterval
	}
	return roundInterval(raw)
}

// roundInterval is Grafana's table of "nice" intervals (a calculated
// interval snaps to the step below the midpoint to the next one).
func roundInterval(d time.Duration) time.Duration {
	steps := []struct{ upTo, step time.Duration }{
		{10 * time.Millisecond, time.Millisecond},
		{15 * time.Millisecond, 10 * time.Millisecond},
		{35 * time.Millisecond, 20 * time.Millisecond},
		{75 * time.Millisecond, 50 * time.Millisecond},
		{150 * time.Millisecond, 100 * time.Millisecond},
		{350 * time.Millisecond, 200 * time.Millisecond},
		{750 * time.Millisecond, 500 * time.Millisecond},
		{1500 * time.Millisecond, time.Second},
		{3500 * time.Millisecond, 2 * time.Second},
		{7500 * time.Millisecond, 5 * time.Second},
		{12500 * time.Millisecond, 10 * time.Second},
		{17500 * time.Millisecond, 15 * time.Second},
		{25 * time.Second, 20 * time.Second},
		{45 * time.Second, 30 * time.Second},
		{90 * time.Second, time.Minute},
		{210 * time.Second, 2 * time.Minute},
		{450 * time.Second, 5 * time.Minute},
		{750 * time.Second, 10 * time.Minute},
		{1050 * time.Second, 15 * time.Minute},
		{1500 * time.Second, 20 * time.Minute},
		{2700 * time.Second, 30 * time.Minute},
		{5400 * time.Second, time.Hour},
		{9000 * time.Second, 2 * time.Hour},
		{16200 * time.Second, 3 * time.Hour},
		{32400 * time.Second, 6 * time.Hour},
		{86400 * time.Second, 12 * time.Hour},
		{604800 * time.Second, 24 * time.Hour},
		{1814400 * time.Second, 7 * 24 * time.Hour},
		{3628800 * time.Second, 30 * 24 * time.Hour},
	}
	for _, s := range steps {
		if d <= s.upTo {
			return s.step
		}
	}
	return 365 * 24 * time.Hour
}

// durationText writes d the way Grafana writes $__interval (and Prometheus
// reads durations): a whole number of the largest unit that divides it.
func durationText(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{365 * 24 * time.Hour, "y"}, {7 * 24 * time.Hour, "w"}, {24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.d && d%u.d == 0 {
			return fmt.Sprintf("%d%s", d/u.d, u.name)
		}
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// parseInterval reads a macro's interval argument ('5m', 10m, 1d).
func parseInterval(s string) (time.Duration, error) {
	s = strings.Trim(s, `'" `)
	if n := len(s); n > 1 {
		if mult, ok := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}[s[n-1]]; ok {
			v, err := strconv.Atoi(s[:n-1])
			if err != nil {
				return 0, fmt.Errorf("interval %q: %w", s, err)
			}
			return time.Duration(v) * mult, nil
		}
	}
	return time.ParseDuration(s)
}

// Grafana's variable syntax: $name, [[name:format]], ${name:format}.
var variableRE = regexp.MustCompile(`\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}`)

// interpolate replaces the variables Grafana's dashboard knows. A
// single-valued, non-multi variable goes into SQL as it is; :sqlstring
// quotes it with ' doubled. Names it does not know ($__timeFilter and the
// other macros) stay for the data source.
func interpolate(text string, vars map[string]string) (string, error) {
	var err error
	out := variableRE.ReplaceAllStringFunc(text, func(m string) string {
		g := variableRE.FindStringSubmatch(m)
		name, format := g[1], ""
		switch {
		case g[2] != "":
			name, format = g[2], g[3]
		case g[4] != "":
			name, format = g[4], g[6]
			if g[5] != "" {
				err = fmt.Errorf("%s: variable properties are not used by these dashboards", m)
			}
		}
		v, ok := vars[name]
		if !ok {
			return m
		}
		switch format {
		case "":
			return v
		case "sqlstring":
			return "'" + strings.ReplaceAll(v, "'", "''") + "'"
		default:
			err = fmt.Errorf("%s: format %q not emulated", m, format)
			return m
		}
	})
	return out, err
}

// sqlMacroRE is the PostgreSQL data source's macro pattern.
var sqlMacroRE = regexp.MustCompile(`\$([_a-zA-Z0-9]+)\(([^\)]*)\)`)

// expandSQL is what the sink's data source receives and then runs: the
// dashboard's variables, $__interval and the PostgreSQL macros, expanded
// as Grafana documents them (times in UTC, RFC 3339 with nanoseconds;
// $__timeGroup as epoch seconds floored to the interval).
func expandSQL(sql string, q query) (string, error) {
	iv := q.interval()
	vars := map[string]string{"__interval": durationText(iv), "__interval_ms": strconv.FormatInt(iv.Milliseconds(), 10)}
	for k, v := range q.vars {
		vars[k] = v
	}
	sql, err := interpolate(sql, vars)
	if err != nil {
		return "", err
	}
	from, to := q.from.UTC().Format(time.RFC3339Nano), q.to.UTC().Format(time.RFC3339Nano)
	var macroErr error
	out := sqlMacroRE.ReplaceAllStringFunc(sql, func(m string) string {
		g := sqlMacroRE.FindStringSubmatch(m)
		args := strings.Split(g[2], ",")
		for i := range args {
			args[i] = strings.TrimSpace(args[i])
		}
		switch g[1] {
		case "__time":
			return args[0] + ` AS "time"`
		case "__timeEpoch":
			return "extract(epoch from " + args[0] + `) as "time"`
		case "__timeFilter":
			return fmt.Sprintf("%s BETWEEN '%s' AND '%s'", args[0], from, to)
		case "__timeFrom":
			return "'" + from + "'"
		case "__timeTo":
			return "'" + to + "'"
		case "__timeGroup", "__timeGroupAlias":
			if len(args) != 2 {
				macroErr = fmt.Errorf("%s: want a column and an interval (fill modes are not emulated)", m)
				return m
			}
			d, err := parseInterval(args[1])
			if err != nil {
				macroErr = fmt.Errorf("%s: %w", m, err)
				return m
			}
			s := fmt.Sprintf("floor(extract(epoch from %s)/%v)*%v", args[0], d.Seconds(), d.Seconds())
			if g[1] == "__timeGroupAlias" {
				s += ` AS "time"`
			}
			return s
		}
		macroErr = fmt.Errorf("unknown macro %s", m)
		return m
	})
	if macroErr != nil {
		return "", macroErr
	}
	if strings.Contains(out, "$") && regexp.MustCompile(`\$\w`).MatchString(stripLiterals(out)) {
		return "", fmt.Errorf("unexpanded variable left in:\n%s", out)
	}
	return out, nil
}

// stripLiterals drops '…' literals, where a $ is text.
func stripLiterals(sql string) string {
	return regexp.MustCompile(`'(?:[^']|'')*'`).ReplaceAllString(sql, "''")
}

// expandPromQL is what the Prometheus data source sends: $__interval,
// $__rate_interval (the larger of $__interval plus one scrape interval and
// four scrape intervals) and $__range, all as Prometheus durations.
func expandPromQL(expr string, q query) (string, error) {
	iv := q.interval()
	rate := max(iv+q.minInterval, 4*q.minInterval)
	out, err := interpolate(expr, map[string]string{
		"__interval": durationText(iv), "__rate_interval": durationText(rate), "__range": durationText(q.to.Sub(q.from).Truncate(time.Second)),
	})
	if err != nil {
		return "", err
	}
	if regexp.MustCompile(`\$\w`).MatchString(out) {
		return "", fmt.Errorf("unexpanded variable left in %s", out)
	}
	return out, nil
}
