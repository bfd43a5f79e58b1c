// Package slack posts notifications to a Slack incoming webhook.
//
// A message is {"text": fallback, "blocks": [...]}: a header (🔴/🟠 firing,
// 🔁 still firing, ⏫ escalated, 🔂 firing again soon after an earlier
// alert, ✅ resolved), the summary, a fields section with merchant, rule,
// severity, priority and times, the rule's values as fields, a button to the
// merchant's dashboard, and a context line with the alert id and the
// idempotency key. "text" is what notifications and clients without Block Kit
// show. Slack has no idempotency key for incoming webhooks, so a retry after
// a lost answer can post twice; the key in the context line lets a reader
// see that two posts are the same notification.
//
// One notification per request (MaxBatch 1): a Slack message is one alert.
// The webhook URL is the credential; errors show only its scheme and host.
package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Config configures a Slack receiver.
type Config struct {
	URL        string        // the incoming webhook URL; required
	Timeout    time.Duration // per request; default 10s
	HTTPClient *http.Client  // default: notify.NewHTTPClient()
}

// Notifier posts to one Slack incoming webhook.
type Notifier struct{ ep *notify.Endpoint }

// New validates c and returns a Notifier.
func New(c Config) (*Notifier, error) {
	ep, err := notify.NewEndpoint(c.URL, c.Timeout, nil, c.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("slack: %w", err)
	}
	return &Notifier{ep: ep}, nil
}

// MaxBatch is 1: one message per notification.
func (n *Notifier) MaxBatch() int { return 1 }

// Notify posts one message per notification, in order, and stops at the
// first failure; the Sender then retries from that point (the ones already
// posted are posted again — at least once).
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	for _, x := range ns {
		body, err := json.Marshal(NewMessage(x))
		if err != nil {
			return false, fmt.Errorf("slack: encoding notification %d: %w", x.ID, err)
		}
		retry, err := n.ep.Post(ctx, nil, body)
		if err != nil {
			return retry, fmt.Errorf("slack: notification %d: %w", x.ID, err)
		}
	}
	return false, nil
}

// Block Kit limits (api.slack.com/reference/block-kit): header text 150
// characters, section text 3000, section fields at most 10 of 2000 each,
// button text 75, button url 3000, context elements at most 10.
const (
	maxHeader       = 150
	maxSectionText  = 3000
	maxFields       = 10
	maxFieldText    = 2000
	maxFieldValue   = maxFieldText - 200 // leaves room for the title and markup
	maxButtonURL    = 3000
	maxFallbackText = 3000
)

// Message is an incoming-webhook payload.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks"`
}

// Block is a layout block; only the fields its Type uses are set.
type Block struct {
	Type     string    `json:"type"` // header, section, actions, context
	Text     *Text     `json:"text,omitempty"`
	Fields   []Text    `json:"fields,omitempty"`
	Elements []Element `json:"elements,omitempty"`
}

// Text is a text composition object.
type Text struct {
	Type  string `json:"type"` // plain_text or mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// Element is a block element: a button in actions, or a text in context.
type Element struct {
	Type     string `json:"type"`           // button, mrkdwn
	Text     any    `json:"text,omitempty"` // *Text for a button, string for mrkdwn
	URL      string `json:"url,omitempty"`
	ActionID string `json:"action_id,omitempty"`
	Style    string `json:"style,omitempty"` // primary or danger
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// NewMessage renders one notification.
func NewMessage(n notify.Notification) Message {
	merchant := merchantLabel(n)
	var icon, state string
	switch n.Kind {
	case notify.KindResolved:
		icon, state = "✅", "Resolved"
	case notify.KindRepeat:
		icon, state = "🔁", "Still firing"
	case notify.KindEscalated:
		icon, state = "⏫", "Escalated to "+n.Priority
	case notify.KindContinued:
		icon, state = "🔂", "Firing again"
	default:
		icon, state = "🔴", "Firing"
		if n.Severity != "critical" {
			icon = "🟠"
		}
	}

	fallback := fmt.Sprintf("[%s] %s · %s: %s", strings.ToUpper(state), n.Rule, merchant, n.Summary)
	msg := Message{Text: escapeMax(fallback, maxFallbackText)}

	msg.Blocks = append(msg.Blocks, Block{
		Type: "header",
		Text: &Text{Type: "plain_text", Text: notify.Truncate(fmt.Sprintf("%s %s: %s · %s", icon, state, n.Rule, merchant), maxHeader), Emoji: true},
	})
	if n.Summary != "" {
		summary := escapeMax(n.Summary, maxSectionText)
		if n.Kind == notify.KindResolved {
			// Struck through, so a resolved message does not read like a
			// live problem at a glance.
			summary = "~" + escapeMax(n.Summary, maxSectionText-2) + "~"
		}
		msg.Blocks = append(msg.Blocks, Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: summary}})
	}

	facts := []Text{
		field("Merchant", escapeMax(merchant, maxFieldValue)),
		field("Rule", "`"+escapeMax(n.Rule, maxFieldValue)+"`"),
		field("Severity", escapeMax(n.Severity, maxFieldValue)),
		field("Priority", escapeMax(orNone(n.Priority), maxFieldValue)),
		field("Firing since", slackDate(n.StartsAt)),
	}
	if n.Kind == notify.KindResolved && !n.EndsAt.IsZero() {
		facts = append(facts, field("Resolved at", slackDate(n.EndsAt)))
		if !n.StartsAt.IsZero() {
			facts = append(facts, field("Duration", n.EndsAt.Sub(n.StartsAt).Round(time.Second).String()))
		}
	}
	facts = append(facts, field("Minute", slackDate(n.Minute)))
	msg.Blocks = append(msg.Blocks, Block{Type: "section", Fields: facts})

	for chunk := range slices.Chunk(slices.Sorted(maps.Keys(n.Values)), maxFields) {
		fields := make([]Text, 0, len(chunk))
		for _, k := range chunk {
			fields = append(fields, field(escapeMax(k, 100), "`"+escapeMax(formatValue(n.Values[k]), maxFieldValue)+"`"))
		}
		msg.Blocks = append(msg.Blocks, Block{Type: "section", Fields: fields})
	}

	// Slack rejects a whole message over one malformed button URL, which
	// would make the notification a permanent rejection; a link it cannot
	// render is left out instead and the context line still shows it.
	if notify.IsAbsoluteURL(n.DashboardURL) && len(n.DashboardURL) <= maxButtonURL {
		style := "danger"
		if n.Kind == notify.KindResolved {
			style = "primary"
		}
		msg.Blocks = append(msg.Blocks, Block{Type: "actions", Elements: []Element{{
			Type:     "button",
			Text:     &Text{Type: "plain_text", Text: "Open dashboard"},
			URL:      n.DashboardURL,
			ActionID: "riskwatch-dashboard",
			Style:    style,
		}}})
	}

	ctx := fmt.Sprintf("riskwatch · alert %d · notification %d · key `%s`", n.AlertID, n.ID, escapeMax(n.IdempotencyKey, 255))
	if n.DashboardURL != "" && !notify.IsAbsoluteURL(n.DashboardURL) {
		ctx += " · " + escapeMax(n.DashboardURL, 1000)
	}
	msg.Blocks = append(msg.Blocks, Block{Type: "context", Elements: []Element{{Type: "mrkdwn", Text: ctx}}})
	return msg
}

func merchantLabel(n notify.Notification) string {
	if n.MerchantName == "" {
		return "merchant " + strconv.FormatInt(n.MerchantID, 10)
	}
	return fmt.Sprintf("%s (#%d)", n.MerchantName, n.MerchantID)
}

// field is a bold title over a value, both already escaped and short
// (titles are fixed or value names; values are cut by the caller).
func field(title, value string) Text {
	return Text{Type: "mrkdwn", Text: "*" + title + "*\n" + value}
}

// slackDate renders t in each reader's own time zone, with RFC 3339 as the
// fallback for clients that cannot (<!date^…|fallback>).
func slackDate(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time_secs}|%s>", t.Unix(), notify.FormatTime(t))
}

// escapeMax turns the three characters Slack's mrkdwn treats as control
// characters into entities, so a merchant called "A&B <Co>" is shown, not
// parsed, and keeps the result within n characters. It cuts between
// characters of the input, never inside an entity it wrote.
func escapeMax(s string, n int) string {
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	if full := esc.Replace(s); utf8.RuneCountInString(full) <= n {
		return full
	}
	var b strings.Builder
	count := 0
	for _, r := range s {
		piece := esc.Replace(string(r))
		w := utf8.RuneCountInString(piece)
		if count+w > n-1 { // room for the "…"
			break
		}
		b.WriteString(piece)
		count += w
	}
	b.WriteString("…")
	return b.String()
}

// formatValue renders a value for people: whole amounts with thousands
// separators, fractions with four significant digits.
func formatValue(v any) string {
	var f float64
	switch x := v.(type) {
	case nil:
		return "–"
	case int:
		return group(strconv.Itoa(x))
	case int64:
		return group(strconv.FormatInt(x, 10))
	case float64:
		f = x
	case float32:
		f = float64(x)
	default:
		return notify.FormatValue(v)
	}
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return notify.FormatValue(f)
	case math.Abs(f) >= 1000 && math.Abs(f) < 1e18:
		return group(strconv.FormatInt(int64(math.Round(f)), 10))
	default:
		return strconv.FormatFloat(f, 'g', 4, 64)
	}
}

// group inserts thousands separators into a decimal integer.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
