package slack_test

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
	"github.com/riskwatch/riskwatch/internal/notify/slack"
)

// checkMessage checks a decoded incoming-webhook body against the shape
// Slack documents (api.slack.com/messaging/webhooks, and the Block Kit
// reference for blocks, block elements and composition objects), restricted
// to what riskwatch uses, and returns the violations.
func checkMessage(m map[string]any) (errs []string) {
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	for k := range m {
		if k != "text" && k != "blocks" {
			bad("top-level %q: riskwatch sends only text and blocks", k)
		}
	}
	// text: string; with blocks it is the fallback for notifications.
	if s, ok := m["text"].(string); !ok || s == "" {
		bad("text: want a non-empty string, got %#v", m["text"])
	} else {
		checkMrkdwn(bad, "text", s)
	}
	blocks, ok := m["blocks"].([]any)
	if !ok || len(blocks) == 0 || len(blocks) > 50 {
		bad("blocks: want an array of 1..50 blocks, got %#v", m["blocks"])
		return errs
	}
	for i, b := range blocks {
		blk, ok := b.(map[string]any)
		if !ok {
			bad("blocks[%d]: not an object", i)
			continue
		}
		where := fmt.Sprintf("blocks[%d] (%v)", i, blk["type"])
		switch blk["type"] {
		case "header":
			// header: text is a plain_text object, at most 150 characters.
			checkText(bad, where+".text", blk["text"], "plain_text", 150)
		case "section":
			// section: text (max 3000) and/or fields (max 10 items of max 2000).
			_, hasText := blk["text"]
			fields, hasFields := blk["fields"]
			if !hasText && !hasFields {
				bad("%s: needs text or fields", where)
			}
			if hasText {
				checkText(bad, where+".text", blk["text"], "", 3000)
			}
			if hasFields {
				fs, ok := fields.([]any)
				if !ok || len(fs) == 0 || len(fs) > 10 {
					bad("%s.fields: want 1..10 text objects, got %#v", where, fields)
				}
				for j, f := range fs {
					checkText(bad, fmt.Sprintf("%s.fields[%d]", where, j), f, "", 2000)
				}
			}
		case "context":
			// context: elements, at most 10 text (or image) objects.
			els, ok := blk["elements"].([]any)
			if !ok || len(els) == 0 || len(els) > 10 {
				bad("%s.elements: want 1..10, got %#v", where, blk["elements"])
			}
			for j, e := range els {
				checkText(bad, fmt.Sprintf("%s.elements[%d]", where, j), e, "", 3000)
			}
		case "actions":
			// actions: elements, at most 25 interactive elements.
			els, ok := blk["elements"].([]any)
			if !ok || len(els) == 0 || len(els) > 25 {
				bad("%s.elements: want 1..25, got %#v", where, blk["elements"])
			}
			for j, e := range els {
				checkButton(bad, fmt.Sprintf("%s.elements[%d]", where, j), e)
			}
		default:
			bad("%s: type not one of header, section, context, actions", where)
		}
	}
	return errs
}

// checkText checks a text composition object: type plain_text or mrkdwn,
// text a non-empty string within max characters, emoji only on plain_text.
func checkText(bad func(string, ...any), where string, v any, wantType string, max int) {
	o, ok := v.(map[string]any)
	if !ok {
		bad("%s: not a text object: %#v", where, v)
		return
	}
	typ, _ := o["type"].(string)
	if typ != "plain_text" && typ != "mrkdwn" || wantType != "" && typ != wantType {
		bad("%s.type = %q, want %s", where, typ, orStr(wantType, "plain_text or mrkdwn"))
	}
	s, ok := o["text"].(string)
	if !ok || s == "" || utf8.RuneCountInString(s) > max {
		bad("%s.text: want a string of 1..%d characters, got %q", where, max, s)
	}
	if _, ok := o["emoji"]; ok && typ != "plain_text" {
		bad("%s.emoji: only allowed on plain_text", where)
	}
	if typ == "mrkdwn" {
		checkMrkdwn(bad, where, s)
	}
}

// checkButton checks a button element: text plain_text max 75, url max 3000,
// style primary or danger, action_id max 255.
func checkButton(bad func(string, ...any), where string, v any) {
	o, ok := v.(map[string]any)
	if !ok || o["type"] != "button" {
		bad("%s: not a button: %#v", where, v)
		return
	}
	checkText(bad, where+".text", o["text"], "plain_text", 75)
	u, _ := o["url"].(string)
	if pu, err := url.Parse(u); err != nil || !pu.IsAbs() || len(u) > 3000 {
		bad("%s.url: want an absolute URL up to 3000 characters, got %q", where, u)
	}
	if s, ok := o["style"]; ok && s != "primary" && s != "danger" {
		bad("%s.style = %v, want primary or danger", where, s)
	}
	if id, ok := o["action_id"].(string); ok && len(id) > 255 {
		bad("%s.action_id longer than 255", where)
	}
}

// Slack's escaping rule: in mrkdwn, & < > are control characters; a literal
// one must be &amp; &lt; &gt;. riskwatch's only control sequence is <!date^…|…>.
var (
	stray     = regexp.MustCompile(`&(?:amp|lt|gt);|&`)
	dateToken = regexp.MustCompile(`<!date\^\d+\^[^|>]+\|[^>]+>`)
)

func checkMrkdwn(bad func(string, ...any), where, s string) {
	rest := dateToken.ReplaceAllString(s, "")
	if strings.ContainsAny(rest, "<>") {
		bad("%s: unescaped < or > in %q", where, s)
	}
	for _, m := range stray.FindAllString(rest, -1) {
		if m == "&" {
			bad("%s: unescaped & in %q", where, s)
			break
		}
	}
}

func orStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func send(t *testing.T, n notify.Notification) (map[string]any, slack.Message) {
	t.Helper()
	srv := notifytest.NewServer(t)
	nt, err := slack.New(slack.Config{URL: srv.URL + "/services/T000/B000/XXXX"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nt.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/services/T000/B000/XXXX" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "riskwatch" {
		t.Errorf("request %s %s %v, want a JSON POST to the webhook path", r.Method, r.Path, r.Header)
	}
	var raw map[string]any
	r.Decode(t, &raw)
	for _, e := range checkMessage(raw) {
		t.Error(e)
	}
	var msg slack.Message
	r.Decode(t, &msg)
	return raw, msg
}

func blocksOfType(m slack.Message, typ string) []slack.Block {
	var out []slack.Block
	for _, b := range m.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

func fieldTexts(m slack.Message) []string {
	var out []string
	for _, b := range blocksOfType(m, "section") {
		for _, f := range b.Fields {
			out = append(out, f.Text)
		}
	}
	return out
}

func TestMessageFiring(t *testing.T) {
	in := notifytest.Sample(notify.KindFiring)
	_, m := send(t, in)

	wantText := "[FIRING] cancel_rate_spike · Hanbit Books &amp; &lt;Co&gt; (#1001): " + strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(in.Summary)
	if m.Text != wantText {
		t.Errorf("text = %q, want %q", m.Text, wantText)
	}
	if m.Blocks[0].Type != "header" || m.Blocks[0].Text.Text != "🔴 Firing: cancel_rate_spike · Hanbit Books & <Co> (#1001)" {
		t.Errorf("first block = %+v, want the firing header", m.Blocks[0])
	}
	if m.Blocks[1].Type != "section" || m.Blocks[1].Text == nil || !strings.HasPrefix(m.Blocks[1].Text.Text, "Cancel rate 12.5%") {
		t.Errorf("second block = %+v, want the summary", m.Blocks[1])
	}
	want := []string{
		"*Merchant*\nHanbit Books &amp; &lt;Co&gt; (#1001)",
		"*Rule*\n`cancel_rate_spike`",
		"*Severity*\ncritical",
		"*Priority*\nP1",
		"*Firing since*\n<!date^1741914120^{date_short_pretty} {time_secs}|2025-03-14T01:02:00Z>",
		"*Minute*\n<!date^1741914060^{date_short_pretty} {time_secs}|2025-03-14T01:01:00Z>",
		// values, sorted by name, formatted for people
		"*a_H*\n`120`",
		"*baseline*\n`0.02`",
		"*baseline_source*\n`merchant`",
		"*c_H*\n`15`",
		"*rate_H*\n`0.125`",
		"*ratio*\n`6.25`",
	}
	if got := fieldTexts(m); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fields =\n%q\nwant\n%q", got, want)
	}
	acts := blocksOfType(m, "actions")
	if len(acts) != 1 || len(acts[0].Elements) != 1 {
		t.Fatalf("actions = %+v, want one button", acts)
	}
	btn := acts[0].Elements[0]
	if btn.Type != "button" || btn.URL != in.DashboardURL || btn.Style != "danger" {
		t.Errorf("button = %+v, want a danger button to %s", btn, in.DashboardURL)
	}
	ctx := blocksOfType(m, "context")
	if len(ctx) != 1 || !strings.Contains(fmt.Sprint(ctx[0].Elements[0].Text), "key `riskwatch-7-firing-1`") {
		t.Errorf("context = %+v, want the idempotency key", ctx)
	}
}

func TestMessageResolvedLooksDifferent(t *testing.T) {
	in := notifytest.Sample(notify.KindResolved)
	_, m := send(t, in)
	if !strings.HasPrefix(m.Text, "[RESOLVED] ") {
		t.Errorf("text = %q, want it to start with [RESOLVED]", m.Text)
	}
	if h := m.Blocks[0].Text.Text; !strings.HasPrefix(h, "✅ Resolved: ") {
		t.Errorf("header = %q, want ✅ Resolved", h)
	}
	if s := m.Blocks[1].Text.Text; !strings.HasPrefix(s, "~") || !strings.HasSuffix(s, "~") {
		t.Errorf("summary = %q, want it struck through", s)
	}
	fields := strings.Join(fieldTexts(m), "|")
	for _, want := range []string{"*Resolved at*\n<!date^1741916340^", "*Duration*\n37m0s", "*rate_H*\n`–`"} {
		if !strings.Contains(fields, want) {
			t.Errorf("fields %q lack %q", fields, want)
		}
	}
	if btn := blocksOfType(m, "actions")[0].Elements[0]; btn.Style != "primary" {
		t.Errorf("button style %q, want primary for a resolved alert", btn.Style)
	}
}

func TestMessageRepeatAndWarning(t *testing.T) {
	rep := notifytest.Sample(notify.KindRepeat)
	if _, m := send(t, rep); !strings.HasPrefix(m.Blocks[0].Text.Text, "🔁 Still firing: ") || !strings.HasPrefix(m.Text, "[STILL FIRING] ") {
		t.Errorf("repeat header %q text %q, want still firing", m.Blocks[0].Text.Text, m.Text)
	}
	warn := notifytest.Sample(notify.KindFiring)
	warn.Severity, warn.Rule = "warning", "volume_drop"
	warn.MerchantName = ""
	if _, m := send(t, warn); m.Blocks[0].Text.Text != "🟠 Firing: volume_drop · merchant 1001" {
		t.Errorf("warning header = %q", m.Blocks[0].Text.Text)
	}
}

func TestMessageLimits(t *testing.T) {
	in := notifytest.Sample(notify.KindFiring)
	in.MerchantName = strings.Repeat("가", 200) // header over 150 characters
	in.Summary = strings.Repeat("x", 5000)     // section text over 3000
	in.Values = map[string]any{}
	for i := range 23 { // three sections of fields
		in.Values[fmt.Sprintf("v%02d", i)] = float64(i) * 1234.5
	}
	in.DashboardURL = "/relative/only" // no button, and the message still valid
	_, m := send(t, in)                // send checks the documented limits
	if acts := blocksOfType(m, "actions"); len(acts) != 0 {
		t.Errorf("actions %+v for a relative dashboard link, want none", acts)
	}
	if got := fieldTexts(m); !strings.Contains(strings.Join(got, "|"), "*v22*\n`27,159`") {
		t.Errorf("fields lack the last value with thousands separators: %q", got)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  slack.Config
		want string
	}{
		{"valid", slack.Config{URL: "https://hooks.slack.com/services/T/B/X"}, ""},
		{"missing", slack.Config{}, "slack: url: is required"},
		{"not http", slack.Config{URL: "hooks.slack.com/services/T/B/X"}, "slack: url:"},
		{"negative timeout", slack.Config{URL: "https://hooks.slack.com/x", Timeout: -time.Second}, "slack: timeout:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := slack.New(tt.cfg)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("New error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRetryCodes(t *testing.T) {
	notifytest.RetryCodes(t, func(t *testing.T, url string, timeout time.Duration) notify.Notifier {
		n, err := slack.New(slack.Config{URL: url, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return n
	})
}

func TestNotifyStopsAtFirstFailure(t *testing.T) {
	srv := notifytest.NewServer(t, 200, 500, 200)
	n, err := slack.New(slack.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := notifytest.Sample(notify.KindFiring), notifytest.Sample(notify.KindRepeat), notifytest.Sample(notify.KindResolved)
	retry, err := n.Notify(context.Background(), a, b, c)
	if err == nil || !retry {
		t.Fatalf("Notify = (%v, %v), want a retryable failure", retry, err)
	}
	if got := len(srv.Requests()); got != 2 {
		t.Errorf("%d requests, want 2 (stop after the failure, keep order)", got)
	}
	if n.MaxBatch() != 1 {
		t.Errorf("MaxBatch = %d, want 1", n.MaxBatch())
	}
}

// TestCheckMessageCatches makes sure the shape check is not vacuous.
func TestCheckMessageCatches(t *testing.T) {
	txt := func(typ, s string) map[string]any { return map[string]any{"type": typ, "text": s} }
	tooMany := make([]any, 11)
	for i := range tooMany {
		tooMany[i] = txt("mrkdwn", "x")
	}
	tests := []struct {
		name string
		msg  map[string]any
		want string
	}{
		{"no text", map[string]any{"blocks": []any{map[string]any{"type": "section", "text": txt("mrkdwn", "x")}}}, "text:"},
		{"unknown block", map[string]any{"text": "x", "blocks": []any{map[string]any{"type": "divider2"}}}, "type not one of"},
		{"mrkdwn header", map[string]any{"text": "x", "blocks": []any{map[string]any{"type": "header", "text": txt("mrkdwn", "x")}}}, "want plain_text"},
		{"unescaped", map[string]any{"text": "a <b>", "blocks": []any{map[string]any{"type": "section", "text": txt("mrkdwn", "x")}}}, "unescaped"},
		{"unescaped amp", map[string]any{"text": "a & b", "blocks": []any{map[string]any{"type": "section", "text": txt("mrkdwn", "x")}}}, "unescaped &"},
		{"eleven fields", map[string]any{"text": "x", "blocks": []any{map[string]any{"type": "section", "fields": tooMany}}}, "1..10"},
		{"bad button", map[string]any{"text": "x", "blocks": []any{map[string]any{"type": "actions", "elements": []any{
			map[string]any{"type": "button", "text": txt("plain_text", "Go"), "url": "/rel", "style": "green"}}}}}, "url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := checkMessage(tt.msg); !strings.Contains(strings.Join(errs, "\n"), tt.want) {
				t.Errorf("violations %q, want one mentioning %q", errs, tt.want)
			}
		})
	}
}

func TestEscapingSurvivesTruncation(t *testing.T) {
	in := notifytest.Sample(notify.KindResolved)
	in.Summary = strings.Repeat("&<>", 2000) // every cut lands next to an entity
	in.MerchantName = strings.Repeat("<", 3000)
	send(t, in) // send fails on any unescaped &, < or > and on any length over a limit
}
