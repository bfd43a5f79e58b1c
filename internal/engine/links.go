package engine

import (
	"fmt"
	"strings"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// Routes are the configured receivers with the rules and the priorities
// each takes.
func Routes(cfg *config.Config) []alertstore.Route {
	var out []alertstore.Route
	for _, r := range cfg.Notify.Receivers {
		min, _ := rules.ParsePriority(r.MinPriority) // validated; "" is every priority
		out = append(out, alertstore.Route{Receiver: r.Name, Rules: r.Rules, MinPriority: min})
	}
	return out
}

// DashboardURL links to a merchant's page on the dashboard.
func DashboardURL(cfg *config.Config, merchant int64) string {
	return fmt.Sprintf("%s/merchants/%d", dashboardBase(cfg), merchant)
}

// dashboardBase is the dashboard's address without a trailing slash.
func dashboardBase(cfg *config.Config) string {
	base := cfg.HTTP.ExternalURL
	if base == "" {
		base = "http://" + cfg.HTTP.Listen
	}
	return strings.TrimRight(base, "/")
}

// DashboardHome links to the dashboard's front page.
func DashboardHome(cfg *config.Config) string { return dashboardBase(cfg) + "/" }
