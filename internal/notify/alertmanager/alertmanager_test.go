package alertmanager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/alertmanager"
	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
)

// checkPostableAlerts checks a POST /api/v2/alerts body against
// Alertmanager's API v2 schema, api/v2/openapi.yaml in prometheus/alertmanager
// (line numbers of commit 68fb2d5759b3a92c0bb2a1a13d4ef7ff5b06256d), plus the
// checks its handler makes after decoding, which the schema does not express.
// It returns the decoded alerts and every violation found.
func checkPostableAlerts(body []byte) (alerts []map[string]any, errs []string) {
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	// L205-216: operationId postAlerts takes the body parameter "alerts",
	// required, schema #/definitions/postableAlerts.
	// L493-496: postableAlerts is "type: array" of postableAlert.
	var raw any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		bad("body is not JSON: %v", err)
		return nil, errs
	}
	arr, ok := raw.([]any)
	if !ok {
		bad("L493-494 postableAlerts: type array; got %T", raw)
		return nil, errs
	}
	for i, item := range arr {
		// L497-509: postableAlert is allOf an object (L499) with startsAt,
		// endsAt, annotations and #/definitions/alert (L447-448, type
		// object) with labels and generatorURL.
		a, ok := item.(map[string]any)
		if !ok {
			bad("alert %d: L499/L448 type object; got %T", i, item)
			continue
		}
		// The schema allows other properties (Swagger 2.0 default); this
		// check does not, so a misspelt property name (endsat) fails here
		// instead of being silently ignored by Alertmanager.
		for k := range a {
			switch k {
			case "startsAt", "endsAt", "annotations", "labels", "generatorURL":
			default:
				bad("alert %d: property %q is in neither L500-508 nor L449-454", i, k)
			}
		}
		// L455-456: alert requires labels.
		labels, ok := a["labels"]
		if !ok {
			bad("alert %d: L455-456 required: labels; missing", i)
		}
		// L450-451 labels: $ref labelSet; L571-574 labelSet: type object,
		// additionalProperties type string.
		ls := checkLabelSet(bad, i, "labels", labels)
		// Not in the schema: common/model Alert.Validate ("at least one
		// label pair required"), after api.go's postAlertsHandler drops
		// labels with empty values (removeEmptyLabels), and LabelSet.Validate
		// (label names); classic label names are valid in every version.
		nonEmpty := 0
		for k, v := range ls {
			if !labelNameRE.MatchString(k) {
				bad("alert %d: label name %q is not [a-zA-Z_][a-zA-Z0-9_]*", i, k)
			}
			if v != "" {
				nonEmpty++
			}
		}
		if nonEmpty == 0 {
			bad("alert %d: no label with a value (model.Alert.Validate: at least one label pair required)", i)
		}
		// L507-508 annotations: $ref labelSet (L571-574): a map of strings;
		// names validated like label names (model.Alert.Validate).
		if ann, ok := a["annotations"]; ok {
			for k := range checkLabelSet(bad, i, "annotations", ann) {
				if !labelNameRE.MatchString(k) {
					bad("alert %d: annotation name %q is not [a-zA-Z_][a-zA-Z0-9_]*", i, k)
				}
			}
		}
		// L501-506: startsAt, endsAt: type string, format date-time (RFC 3339).
		var starts, ends time.Time
		for _, k := range []string{"startsAt", "endsAt"} {
			v, ok := a[k]
			if !ok {
				continue
			}
			s, isStr := v.(string)
			if !isStr {
				bad("alert %d: L501-506 %s: type string; got %T", i, k, v)
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				bad("alert %d: L501-506 %s: format date-time; %q: %v", i, k, s, err)
			}
			if k == "startsAt" {
				starts = ts
			} else {
				ends = ts
			}
		}
		// Not in the schema: model.Alert.Validate refuses endsAt before startsAt.
		if !starts.IsZero() && !ends.IsZero() && ends.Before(starts) {
			bad("alert %d: endsAt %s before startsAt %s", i, ends, starts)
		}
		// L452-454 generatorURL: type string, format uri (go-openapi strfmt
		// validates "uri" with url.ParseRequestURI).
		if v, ok := a["generatorURL"]; ok {
			s, isStr := v.(string)
			if !isStr {
				bad("alert %d: L452-453 generatorURL: type string; got %T", i, v)
			} else if _, err := url.ParseRequestURI(s); err != nil {
				bad("alert %d: L454 generatorURL: format uri; %q: %v", i, s, err)
			}
		}
		alerts = append(alerts, a)
	}
	return alerts, errs
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func checkLabelSet(bad func(string, ...any), i int, name string, v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		bad("alert %d: %s: L572 labelSet type object; got %T", i, name, v)
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			bad("alert %d: %s[%q]: L573-574 additionalProperties type string; got %T", i, name, k, x)
			continue
		}
		out[k] = s
	}
	return out
}

// validatePostableAlerts fails t for every schema violation in body.
func validatePostableAlerts(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	alerts, errs := checkPostableAlerts(body)
	for _, e := range errs {
		t.Error(e)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return alerts
}

// TestSchemaCheckCatches makes sure the schema check is not vacuous: each
// body breaks one rule and must be caught.
func TestSchemaCheckCatches(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not an array", `{"labels":{"a":"b"}}`, "L493-494"},
		{"not an object", `["x"]`, "L499/L448"},
		{"unknown property", `[{"labels":{"a":"b"},"endsat":"2025-01-01T00:00:00Z"}]`, "neither"},
		{"labels missing", `[{"annotations":{"a":"b"}}]`, "L455-456"},
		{"labels not an object", `[{"labels":["a"]}]`, "L572"},
		{"label value not a string", `[{"labels":{"a":1}}]`, "L573-574"},
		{"labels empty", `[{"labels":{}}]`, "at least one label pair"},
		{"labels all empty values", `[{"labels":{"a":""}}]`, "at least one label pair"},
		{"bad label name", `[{"labels":{"merchant-id":"1"}}]`, "label name"},
		{"annotation not a string", `[{"labels":{"a":"b"},"annotations":{"x":null}}]`, "L573-574"},
		{"startsAt not date-time", `[{"labels":{"a":"b"},"startsAt":"2025-01-01 00:00"}]`, "L501-506"},
		{"endsAt not a string", `[{"labels":{"a":"b"},"endsAt":0}]`, "L501-506"},
		{"endsAt before startsAt", `[{"labels":{"a":"b"},"startsAt":"2025-01-02T00:00:00Z","endsAt":"2025-01-01T00:00:00Z"}]`, "before startsAt"},
		{"generatorURL not uri", `[{"labels":{"a":"b"},"generatorURL":"merchants/1"}]`, "L454"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := checkPostableAlerts([]byte(tt.body))
			if !strings.Contains(strings.Join(errs, "\n"), tt.want) {
				t.Errorf("violations %q, want one mentioning %q", errs, tt.want)
			}
		})
	}
	if _, errs := checkPostableAlerts([]byte(`[{"labels":{"alertname":"x"},"annotations":{"s":"t"},"startsAt":"2025-01-01T00:00:00Z","endsAt":"2025-01-01T00:05:00.5Z","generatorURL":"http://h/p?q=1"}]`)); len(errs) > 0 {
		t.Errorf("a valid body got violations %q", errs)
	}
}

func strMap(v any) map[string]string {
	out := map[string]string{}
	for k, x := range v.(map[string]any) {
		out[k] = x.(string)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  alertmanager.Config
		want string
	}{
		{"valid", alertmanager.Config{URL: "http://alertmanager:9093"}, ""},
		{"valid with prefix", alertmanager.Config{URL: "https://ops.example.com/alertmanager/"}, ""},
		{"missing url", alertmanager.Config{}, "alertmanager: url: is required"},
		{"not absolute", alertmanager.Config{URL: "alertmanager:9093"}, "alertmanager: url:"},
		{"query", alertmanager.Config{URL: "http://am:9093/?x=1"}, "alertmanager: url: must be a base URL"},
		{"negative timeout", alertmanager.Config{URL: "http://am:9093", Timeout: -1}, "alertmanager: timeout:"},
		{"reserved header", alertmanager.Config{URL: "http://am:9093", Headers: map[string]string{"Content-Type": "text/plain"}}, `alertmanager: headers["Content-Type"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := alertmanager.New(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRetryCodes(t *testing.T) {
	notifytest.RetryCodes(t, func(t *testing.T, url string, timeout time.Duration) notify.Notifier {
		n, err := alertmanager.New(alertmanager.Config{URL: url, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return n
	})
}

func post(t *testing.T, base string, ns ...notify.Notification) notifytest.Request {
	t.Helper()
	srv := notifytest.NewServer(t)
	n, err := alertmanager.New(alertmanager.Config{URL: srv.URL + base, Headers: map[string]string{"Authorization": "Basic eDp5"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), ns...); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	return reqs[0]
}

func TestPayloadFiring(t *testing.T) {
	in := notifytest.Sample(notify.KindFiring)
	r := post(t, "", in)
	if r.Method != "POST" || r.Path != "/api/v2/alerts" {
		t.Errorf("request %s %s, want POST /api/v2/alerts", r.Method, r.Path)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "User-Agent": "riskwatch", "Authorization": "Basic eDp5"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	alerts := validatePostableAlerts(t, r.Body)
	if len(alerts) != 1 {
		t.Fatalf("%d alerts, want 1", len(alerts))
	}
	a := alerts[0]
	wantLabels := map[string]string{
		"alertname":   "cancel_rate_spike",
		"rule":        "cancel_rate_spike",
		"merchant_id": "1001",
		"severity":    "critical",
		"priority":    "P1",
	}
	if got := strMap(a["labels"]); !maps.Equal(got, wantLabels) {
		t.Errorf("labels = %v, want %v", got, wantLabels)
	}
	wantAnn := map[string]string{
		"summary":         in.Summary,
		"description":     "cancel_rate_spike for merchant Hanbit Books & <Co> (id 1001) at minute 2025-03-14T01:01:00Z: a_H=120 baseline=0.02 baseline_source=merchant c_H=15 rate_H=0.125 ratio=6.25",
		"dashboard":       "https://riskwatch.example.com/merchants/1001",
		"merchant_name":   "Hanbit Books & <Co>",
		"a_H":             "120",
		"c_H":             "15",
		"rate_H":          "0.125",
		"baseline":        "0.02",
		"baseline_source": "merchant",
		"ratio":           "6.25",
	}
	if got := strMap(a["annotations"]); !maps.Equal(got, wantAnn) {
		t.Errorf("annotations =\n%v\nwant\n%v", got, wantAnn)
	}
	if got := a["startsAt"]; got != "2025-03-14T01:02:00Z" {
		t.Errorf("startsAt = %v, want 2025-03-14T01:02:00Z", got)
	}
	// Firing: no endsAt, so Alertmanager applies resolve_timeout (see the
	// package comment for why riskwatch invents no validity).
	if v, ok := a["endsAt"]; ok {
		t.Errorf("endsAt = %v on a firing alert, want it absent", v)
	}
	if got := a["generatorURL"]; got != in.DashboardURL {
		t.Errorf("generatorURL = %v, want %s", got, in.DashboardURL)
	}
}

// TestEscalationReplacesTheLabelSet: labels are an alert's identity in
// Alertmanager, so an escalation resolves the old priority's alert and
// fires the new one in the same post.
func TestEscalationReplacesTheLabelSet(t *testing.T) {
	in := notifytest.Sample(notify.KindEscalated) // P2 → P1
	alerts := validatePostableAlerts(t, post(t, "", in).Body)
	if len(alerts) != 2 {
		t.Fatalf("%d alerts, want the old one resolved and the new one firing", len(alerts))
	}
	old, cur := strMap(alerts[0]["labels"]), strMap(alerts[1]["labels"])
	if old["priority"] != "P2" || old["severity"] != "warning" || cur["priority"] != "P1" || cur["severity"] != "critical" {
		t.Errorf("labels old %v new %v, want P2/warning then P1/critical", old, cur)
	}
	if alerts[0]["endsAt"] != "2025-03-14T01:02:00Z" || alerts[1]["endsAt"] != nil {
		t.Errorf("endsAt old %v new %v, want the old one ended at the escalation's minute and the new one open", alerts[0]["endsAt"], alerts[1]["endsAt"])
	}
	if old["merchant_id"] != cur["merchant_id"] || old["rule"] != cur["rule"] {
		t.Errorf("the two are not the same alert: %v / %v", old, cur)
	}
	// A continuation is labelled with the priority it was routed at.
	cont := notifytest.Sample(notify.KindContinued)
	if got := strMap(validatePostableAlerts(t, post(t, "", cont).Body)[0]["labels"])["priority"]; got != "P2" {
		t.Errorf("continued alert labelled %s, want the routed P2", got)
	}
}

func TestPayloadRepeatKeepsIdentity(t *testing.T) {
	fire := validatePostableAlerts(t, post(t, "", notifytest.Sample(notify.KindFiring)).Body)[0]
	rep := notifytest.Sample(notify.KindRepeat)
	rep.Minute = rep.Minute.Add(4 * time.Hour)
	repeat := validatePostableAlerts(t, post(t, "", rep).Body)[0]
	res := validatePostableAlerts(t, post(t, "", notifytest.Sample(notify.KindResolved)).Body)[0]
	// Alertmanager matches posts to one alert by label set; it must not
	// change across the alert's life.
	if !reflect.DeepEqual(fire["labels"], repeat["labels"]) || !reflect.DeepEqual(fire["labels"], res["labels"]) {
		t.Errorf("labels differ across firing/repeat/resolved: %v / %v / %v", fire["labels"], repeat["labels"], res["labels"])
	}
	if _, ok := repeat["endsAt"]; ok {
		t.Errorf("repeat carries endsAt %v, want it absent", repeat["endsAt"])
	}
	if repeat["startsAt"] != fire["startsAt"] {
		t.Errorf("repeat startsAt %v, want the original %v", repeat["startsAt"], fire["startsAt"])
	}
	if d := strMap(repeat["annotations"])["description"]; !strings.Contains(d, "still firing") {
		t.Errorf("repeat description %q does not say still firing", d)
	}
}

func TestPayloadResolved(t *testing.T) {
	in := notifytest.Sample(notify.KindResolved)
	a := validatePostableAlerts(t, post(t, "", in).Body)[0]
	if a["startsAt"] != "2025-03-14T01:02:00Z" || a["endsAt"] != "2025-03-14T01:39:00Z" {
		t.Errorf("startsAt %v endsAt %v, want 2025-03-14T01:02:00Z and 2025-03-14T01:39:00Z", a["startsAt"], a["endsAt"])
	}
	ann := strMap(a["annotations"])
	if ann["rate_H"] != "null" {
		t.Errorf("annotations.rate_H = %q, want \"null\" for a nil value", ann["rate_H"])
	}
	if !strings.Contains(ann["description"], ", resolved") {
		t.Errorf("description %q does not say resolved", ann["description"])
	}
}

func TestResolvedTimesRepaired(t *testing.T) {
	t.Run("endsAt before startsAt", func(t *testing.T) {
		in := notifytest.Sample(notify.KindResolved)
		in.EndsAt = in.StartsAt.Add(-time.Hour)
		a := validatePostableAlerts(t, post(t, "", in).Body)[0]
		if a["endsAt"] != a["startsAt"] {
			t.Errorf("endsAt %v, want clamped to startsAt %v", a["endsAt"], a["startsAt"])
		}
	})
	t.Run("endsAt missing", func(t *testing.T) {
		in := notifytest.Sample(notify.KindResolved)
		in.EndsAt = time.Time{}
		a := validatePostableAlerts(t, post(t, "", in).Body)[0]
		if a["endsAt"] != notify.FormatTime(in.CreatedAt) {
			t.Errorf("endsAt %v, want the notification's creation %v (a resolved post without endsAt would re-fire)", a["endsAt"], notify.FormatTime(in.CreatedAt))
		}
	})
}

func TestOddValuesStayValid(t *testing.T) {
	in := notifytest.Sample(notify.KindFiring)
	in.MerchantName = ""
	in.DashboardURL = "/merchants/1001" // relative: not a valid generatorURL
	in.Values = map[string]any{
		"summary":   "collides",
		"drop-pct":  0.5,
		"9lives":    int64(9),
		"today":     1500000000.0,
		"nan":       math.NaN(),
		"inf":       math.Inf(1),
		"tiny":      1e-9,
		"json_null": nil,
		"a-b":       "first",
		"a_b":       "second",
	}
	a := validatePostableAlerts(t, post(t, "", in).Body)[0]
	ann := strMap(a["annotations"])
	for k, want := range map[string]string{
		"summary":       in.Summary,
		"value_summary": "collides",
		"drop_pct":      "0.5",
		"_lives":        "9",
		"today":         "1500000000",
		"nan":           "NaN",
		"inf":           "+Inf",
		"tiny":          "1e-09",
		"json_null":     "null",
		"dashboard":     "/merchants/1001",
		"a_b":           "first", // "a-b" sorts first and takes the name
		"a_b_2":         "second",
	} {
		if ann[k] != want {
			t.Errorf("annotations[%q] = %q, want %q", k, ann[k], want)
		}
	}
	if _, ok := ann["merchant_name"]; ok {
		t.Errorf("merchant_name annotation present for an unnamed merchant")
	}
	if v, ok := a["generatorURL"]; ok {
		t.Errorf("generatorURL = %v for a relative link, want it absent", v)
	}
}

func TestBatchAndPathPrefix(t *testing.T) {
	a, b, c := notifytest.Sample(notify.KindFiring), notifytest.Sample(notify.KindFiring), notifytest.Sample(notify.KindResolved)
	b.ID, b.MerchantID, b.Rule, b.Severity = 43, 2002, "volume_drop", "warning"
	c.ID = 44
	r := post(t, "/am/", a, b, c)
	if r.Path != "/am/api/v2/alerts" {
		t.Errorf("path %s, want /am/api/v2/alerts (the base URL's prefix kept)", r.Path)
	}
	alerts := validatePostableAlerts(t, r.Body)
	if len(alerts) != 3 {
		t.Fatalf("%d alerts, want 3 in one request", len(alerts))
	}
	if got := strMap(alerts[1]["labels"]); got["alertname"] != "volume_drop" || got["merchant_id"] != "2002" || got["severity"] != "warning" {
		t.Errorf("second alert labels %v, want volume_drop/2002/warning (order kept)", got)
	}
	if _, ok := alerts[2]["endsAt"]; !ok {
		t.Errorf("third alert (resolved) has no endsAt")
	}
}

func TestMaxBatch(t *testing.T) {
	n, err := alertmanager.New(alertmanager.Config{URL: "http://am:9093"})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.MaxBatch(); got < 2 {
		t.Errorf("MaxBatch = %d, want batches", got)
	}
}
