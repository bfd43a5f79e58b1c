package config

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/korean"
	"gopkg.in/yaml.v3"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/httptemplate"
)

// exampleTemplateReceivers are the template receivers example.yaml shows
// (commented out, since the default is none), uncommented.
func exampleTemplateReceivers(t *testing.T) []Receiver {
	t.Helper()
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "A template receiver renders")
	if !ok {
		t.Fatal("example.yaml has no template receiver examples")
	}
	rest, _, _ = strings.Cut(rest, "# Retry backoff")
	var b strings.Builder
	b.WriteString("receivers:\n")
	for _, line := range strings.Split(rest, "\n") {
		// Item lines are "  # - key: …" or "  #   key: …"; prose starts
		// with a letter after "# ".
		body, ok := strings.CutPrefix(line, "  # ")
		if ok && (strings.HasPrefix(body, "- ") || strings.HasPrefix(body, "  ")) {
			b.WriteString("  " + body + "\n")
		}
	}
	var doc struct{ Receivers []Receiver }
	if err := yaml.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatalf("example receivers do not parse: %v\n%s", err, b.String())
	}
	if len(doc.Receivers) != 2 {
		t.Fatalf("found %d example template receivers, want 2 (a chat tool and an SMS gateway):\n%s", len(doc.Receivers), b.String())
	}
	return doc.Receivers
}

// TestExampleTemplateReceivers: the chat and SMS examples of example.yaml
// validate, render the request their APIs document, and the SMS text fits
// one Korean SMS (90 bytes in EUC-KR/CP949) whatever the merchant's name.
func TestExampleTemplateReceivers(t *testing.T) {
	c := Default()
	c.Source.DSN, c.Sink.DSN = testSourceDSN, testSinkDSN
	c.Notify.Receivers = exampleTemplateReceivers(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("example receivers do not validate: %v", err)
	}
	chat, sms := c.Notify.Receivers[0], c.Notify.Receivers[1]
	if chat.Name != "telegram" || sms.Name != "sms-oncall" {
		t.Fatalf("example receivers are %q and %q", chat.Name, sms.Name)
	}

	render := func(r Receiver, n notify.Notification) *httptemplate.Request {
		t.Helper()
		tp, err := httptemplate.Parse(r.TemplateSpec(), c.Location)
		if err != nil {
			t.Fatal(err)
		}
		req, err := tp.Render(httptemplate.DataOf(n))
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		return req
	}
	firing := httptemplate.Samples()[0]

	// Telegram: POST /bot<token>/sendMessage with chat_id and text.
	req := render(chat, firing)
	var msg struct {
		ChatID int64  `json:"chat_id"`
		Text   string `json:"text"`
	}
	if err := json.Unmarshal(req.Body, &msg); err != nil {
		t.Fatalf("telegram body: %v\n%s", err, req.Body)
	}
	u, _ := url.Parse(req.URL)
	wantText := "[P1] firing: cancel_rate_spike · " + firing.MerchantName + " (#1001)\n" + firing.Summary + "\nat stake 12.3억원\n" + firing.DashboardURL
	if req.Method != http.MethodPost || u.Host != "api.telegram.org" || !strings.HasSuffix(u.Path, "/sendMessage") || msg.ChatID != -1001234567890 || msg.Text != wantText {
		t.Fatalf("telegram request %s %s chat %d text\n%q\nwant\n%q", req.Method, req.URL, msg.ChatID, msg.Text, wantText)
	}

	// The SMS gateway: the secret header, and the text of each notification.
	names := []string{"", "A", "한빛상사", strings.Repeat("가", 60), strings.Repeat("Ab", 50), "\"따옴표\" \\ 상사\n(주)", "이모지😀가게"}
	cases := []struct {
		name string
		n    func(merchant string) notify.Notification
		want string // the text for merchant "한빛상사"
	}{
		{"firing", func(m string) notify.Notification { n := firing; n.MerchantName = m; return n }, "[P1]취소급증 한빛상사 (#1001) 12.3억원"},
		{"resolved", func(m string) notify.Notification { n := httptemplate.Samples()[1]; n.MerchantName = m; return n }, "[P2]매출급감 해제 한빛상사 (#1001) 168억원"},
		{"test", func(string) notify.Notification { return notify.TestNotification("sms-oncall", firing.StartsAt, "") }, "[TEST] riskwatch SMS 수신 확인"},
	}
	for _, tc := range cases {
		for _, m := range names {
			req := render(sms, tc.n(m))
			var body struct {
				Body       string `json:"body"`
				SendNo     string `json:"sendNo"`
				Recipients []struct {
					RecipientNo string `json:"recipientNo"`
				} `json:"recipientList"`
			}
			if err := json.Unmarshal(req.Body, &body); err != nil {
				t.Fatalf("%s, merchant %q: %v\n%s", tc.name, m, err, req.Body)
			}
			if req.Header.Get("X-Secret-Key") != "ExampleSecretKey" || req.Header.Get("Content-Type") != "application/json;charset=UTF-8" ||
				body.SendNo == "" || len(body.Recipients) != 1 {
				t.Fatalf("%s: request %v %s", tc.name, req.Header, req.Body)
			}
			if m == "한빛상사" && body.Body != tc.want {
				t.Errorf("%s: SMS text %q, want %q", tc.name, body.Body, tc.want)
			}
			if n := utf8.RuneCountInString(body.Body); n > 45 {
				t.Errorf("%s, merchant %q: %d characters", tc.name, m, n)
			}
			// What the gateway sends: the text in CP949 (Korean's SMS
			// encoding; x/text's EUC-KR is its superset CP949), with what
			// it cannot encode replaced by one byte.
			var enc strings.Builder
			for _, r := range body.Body {
				b, err := korean.EUCKR.NewEncoder().String(string(r))
				if err != nil {
					b = "?"
				}
				enc.WriteString(b)
			}
			if n := len(enc.String()); n > 90 {
				t.Errorf("%s, merchant %q: SMS text %q is %d bytes in CP949, more than one SMS (90)", tc.name, m, body.Body, n)
			}
		}
	}
}
