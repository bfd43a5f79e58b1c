package alertstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func cli(name string) Actor { return Actor{Name: name, Via: ViaCLI} }

// TestOperatorAudit: acknowledgements, comments and silences name their
// actor and leave one audit row each, written with the action (a refused
// action leaves none); an alert's audit holds its own actions and the
// silences of its merchant and rule that overlap its time.
func TestOperatorAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	closed := bootstrapEmpty(t, s)
	m0 := minute(t, "2026-11-25T14:01:00Z")
	const spike, drop = "cancel_rate_spike", "volume_drop"
	// open: spike/7 firing since m0. resolved: drop/7 from m0, resolved at
	// m0+20 (the fifth false evaluation).
	openLive, ch := fire(spike, 7, m0, nil)
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0, Changes: []AlertChange{ch}})
	resLive, ch := fire(drop, 7, m0, nil)
	chs := []AlertChange{ch}
	for m := m0 + 16; m <= m0+20; m++ {
		chs = append(chs, falseEval(resLive, m, nil, 5))
	}
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 20, Changes: chs})
	open, resolved := openLive.ID, resLive.ID

	kim := Actor{Name: "kim", Via: ViaProxy, Email: "kim@example.com", Peer: "10.0.3.7", ForwardedFor: "203.0.113.9"}
	oncall := Actor{Name: "oncall", Via: ViaBasic, Peer: "127.0.0.1"}
	lee := Actor{Name: "lee", Via: ViaTyped, Peer: "127.0.0.1"}
	at := func(min int) time.Time { return (m0 + 30).Start().Add(time.Duration(min) * time.Minute) }

	a, err := s.Ack(ctx, open, kim, "calling the merchant", at(1))
	if err != nil || a.Ack == nil || a.Ack.By != "kim" {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if _, err := s.Ack(ctx, resolved, kim, "", at(1)); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("ack of the resolved alert: %v", err)
	}
	if _, err := s.Ack(ctx, 99999, kim, "", at(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ack of an unknown alert: %v", err)
	}
	c, err := s.Comment(ctx, resolved, oncall, "refund batch, not fraud", at(2))
	if err != nil || c.ID == 0 || c.Merchant != 7 || c.Rule != drop {
		t.Fatalf("comment: %+v %v", c, err)
	}
	if _, err := s.Comment(ctx, 99999, oncall, "x", at(2)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("comment on an unknown alert: %v", err)
	}
	add := func(sl Silence, by Actor) Silence {
		t.Helper()
		got, err := s.AddSilence(ctx, sl, by)
		if err != nil || got.CreatedBy != by.Name {
			t.Fatalf("AddSilence: %+v %v", got, err)
		}
		return got
	}
	// spikeSl covers the open alert; allSl (every rule, after the resolved
	// one ended) too; other is another merchant's; early is the drop rule's
	// before and during the resolved alert.
	spikeSl := add(Silence{Merchant: 7, Rule: spike, StartsAt: at(3), EndsAt: at(63), Reason: "merchant under review"}, lee)
	allSl := add(Silence{Merchant: 7, StartsAt: at(4), EndsAt: at(5), Reason: "maintenance"}, kim)
	add(Silence{Merchant: 8, StartsAt: at(4), EndsAt: at(64), Reason: "other merchant"}, kim)
	early := add(Silence{Merchant: 7, Rule: drop, StartsAt: m0.Start().Add(-time.Hour), EndsAt: (m0 + 5).Start(), Reason: "promotion"}, cli("park"))
	sl, err := s.ExpireSilence(ctx, spikeSl.ID, at(6), kim)
	if err != nil || !sl.EndsAt.Equal(at(6)) || sl.Merchant != 7 || sl.Rule != spike || sl.CreatedBy != "lee" {
		t.Fatalf("expire: %+v %v", sl, err)
	}
	if _, err := s.ExpireSilence(ctx, spikeSl.ID, at(7), kim); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expiring it again: %v", err)
	}

	line := func(e AuditEntry) string {
		return fmt.Sprintf("%s %s/%s/%s %s alert=%d silence=%d %d/%s %q %s %s", e.At.UTC().Format("15:04"), e.Actor.Name, e.Actor.Via, e.Actor.Email,
			e.Action, e.AlertID, e.SilenceID, e.Merchant, e.Rule, e.Comment, e.Actor.Peer, e.Actor.ForwardedFor)
	}
	lines := func(es []AuditEntry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, line(e))
		}
		return out
	}
	ack := fmt.Sprintf(`14:32 kim/proxy/kim@example.com ack alert=%d silence=0 7/cancel_rate_spike "calling the merchant" 10.0.3.7 203.0.113.9`, open)
	comment := fmt.Sprintf(`14:33 oncall/basic/ comment alert=%d silence=0 7/volume_drop "refund batch, not fraud" 127.0.0.1 `, resolved)
	spikeAdd := fmt.Sprintf(`14:34 lee/typed/ silence_create alert=0 silence=%d 7/cancel_rate_spike "merchant under review" 127.0.0.1 `, spikeSl.ID)
	allAdd := fmt.Sprintf(`14:35 kim/proxy/kim@example.com silence_create alert=0 silence=%d 7/ "maintenance" 10.0.3.7 203.0.113.9`, allSl.ID)
	otherAdd := fmt.Sprintf(`14:35 kim/proxy/kim@example.com silence_create alert=0 silence=%d 8/ "other merchant" 10.0.3.7 203.0.113.9`, allSl.ID+1)
	earlyAdd := fmt.Sprintf(`13:01 park/cli/ silence_create alert=0 silence=%d 7/volume_drop "promotion"  `, early.ID)
	expire := fmt.Sprintf(`14:37 kim/proxy/kim@example.com silence_expire alert=0 silence=%d 7/cancel_rate_spike "" 10.0.3.7 203.0.113.9`, spikeSl.ID)

	for _, tc := range []struct {
		name  string
		alert int64
		want  []string
	}{
		{"open alert", open, []string{ack, spikeAdd, allAdd, expire}},
		{"resolved alert", resolved, []string{earlyAdd, comment}},
	} {
		got, err := s.AlertAudit(ctx, tc.alert)
		if err != nil {
			t.Fatal(err)
		}
		if g := lines(got); !slices.Equal(g, tc.want) {
			t.Errorf("%s: AlertAudit =\n%s\nwant\n%s", tc.name, strings.Join(g, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	if _, err := s.AlertAudit(ctx, 99999); !errors.Is(err, ErrNotFound) {
		t.Errorf("audit of an unknown alert: %v", err)
	}

	// Everything, newest (highest id) first; since, before and limit.
	all := []string{expire, earlyAdd, otherAdd, allAdd, spikeAdd, comment, ack}
	for _, tc := range []struct {
		name string
		f    AuditFilter
		want []string
	}{
		{"all", AuditFilter{}, all},
		{"limit", AuditFilter{Limit: 2}, all[:2]},
		{"since", AuditFilter{Since: at(4)}, []string{expire, otherAdd, allAdd}},
	} {
		got, err := s.Audit(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if g := lines(got); !slices.Equal(g, tc.want) {
			t.Errorf("%s: Audit(%+v) =\n%s\nwant\n%s", tc.name, tc.f, strings.Join(g, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	first, err := s.Audit(ctx, AuditFilter{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := s.Audit(ctx, AuditFilter{Before: first[2].ID})
	if err != nil || !slices.Equal(lines(rest), all[3:]) {
		t.Errorf("the page after %d: %v %v", first[2].ID, lines(rest), err)
	}
}
