// Package grafana holds only tests: they check the provisioning folder
// beside them (data sources, dashboard provider, dashboards) and the
// Prometheus rules in deploy/prometheus against a real sink, a real
// Prometheus and a running riskwatch. Nothing here is linked into a binary.
package grafana

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	sinkUID = "riskwatch-sink"
	promUID = "riskwatch-prometheus"
)

// dsRef is a panel's, target's or variable's data source.
type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string `json:"refId"`
	Datasource *dsRef `json:"datasource"`
	RawSQL     string `json:"rawSql"`
	Format     string `json:"format"`
	Expr       string `json:"expr"`
}

type panel struct {
	ID         int      `json:"id"`
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Datasource *dsRef   `json:"datasource"`
	Interval   string   `json:"interval"`
	Targets    []target `json:"targets"`
	Panels     []panel  `json:"panels"` // a collapsed row's
}

type variable struct {
	Type       string `json:"type"`
	Name       string `json:"name"`
	Datasource *dsRef `json:"datasource"`
	Query      string `json:"query"`
}

type dashboardJSON struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

// allPanels flattens rows.
func (d dashboardJSON) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

func readDashboard(t *testing.T, name string) dashboardJSON {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("provisioning", "dashboards", "riskwatch", name))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// dashboards are the two the provisioning loads, by file name.
var dashboardFiles = map[string]string{"riskwatch-pipeline.json": "riskwatch-pipeline", "riskwatch-merchants.json": "riskwatch-merchants"}

// TestProvisioning: the data sources have the fixed uids the dashboards
// use and take every address and secret from the environment; the
// provider loads the folder the dashboards are in; both dashboards parse,
// have their fixed uids, and every panel, query and variable names one of
// the provisioned data sources.
func TestProvisioning(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("provisioning", "datasources", "riskwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var dsFile struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name           string            `yaml:"name"`
			UID            string            `yaml:"uid"`
			Type           string            `yaml:"type"`
			URL            string            `yaml:"url"`
			User           string            `yaml:"user"`
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &dsFile); err != nil {
		t.Fatalf("datasources: %v", err)
	}
	envRef := regexp.MustCompile(`^\$\{[A-Z][A-Z0-9_]*\}$`)
	types := map[string]string{}
	for _, ds := range dsFile.Datasources {
		types[ds.UID] = ds.Type
		if !envRef.MatchString(ds.URL) {
			t.Errorf("data source %s: url %q is not an environment variable", ds.UID, ds.URL)
		}
		switch ds.UID {
		case sinkUID:
			if ds.Type != "grafana-postgresql-datasource" {
				t.Errorf("sink type %q", ds.Type)
			}
			for what, v := range map[string]string{"user": ds.User, "password": ds.SecureJSONData["password"], "database": ds.JSONData["database"].(string)} {
				if !envRef.MatchString(v) {
					t.Errorf("sink %s %q is not an environment variable", what, v)
				}
			}
			// $__timeGroup expands differently with TimescaleDB on.
			if ds.JSONData["timescaledb"] != false || ds.JSONData["timeInterval"] != "1m" {
				t.Errorf("sink jsonData: %v", ds.JSONData)
			}
		case promUID:
			if ds.Type != "prometheus" {
				t.Errorf("prometheus type %q", ds.Type)
			}
		default:
			t.Errorf("unexpected data source %q", ds.UID)
		}
	}
	if dsFile.APIVersion != 1 || len(types) != 2 {
		t.Fatalf("want apiVersion 1 and the two data sources, got %d and %v", dsFile.APIVersion, types)
	}

	b, err = os.ReadFile(filepath.Join("provisioning", "dashboards", "riskwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatalf("dashboard provider: %v", err)
	}
	// The path is where the files are when provisioning/ is mounted as
	// Grafana's /etc/grafana/provisioning.
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != "/etc/grafana/provisioning/dashboards/riskwatch" {
		t.Fatalf("dashboard provider: %+v", prov)
	}
	files, err := filepath.Glob(filepath.Join("provisioning", "dashboards", "riskwatch", "*.json"))
	if err != nil || len(files) != len(dashboardFiles) {
		t.Fatalf("dashboard files %v (%v), want %d", files, err, len(dashboardFiles))
	}

	check := func(where string, ref *dsRef) {
		if ref == nil {
			t.Errorf("%s: no data source", where)
			return
		}
		if typ, ok := types[ref.UID]; !ok || typ != ref.Type {
			t.Errorf("%s: data source %+v is not a provisioned one (%v)", where, *ref, types)
		}
	}
	for file, uid := range dashboardFiles {
		d := readDashboard(t, file)
		if d.UID != uid {
			t.Errorf("%s: uid %q, want %q", file, d.UID, uid)
		}
		ids := map[int]bool{}
		queries := 0
		for _, p := range d.allPanels() {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", file, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			where := file + ": " + p.Title
			check(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range p.Targets {
				check(where+" "+tg.RefID, tg.Datasource)
				if tg.Datasource != nil && p.Datasource != nil && tg.Datasource.UID != p.Datasource.UID {
					t.Errorf("%s %s: target data source differs from the panel's", where, tg.RefID)
				}
				if strings.TrimSpace(tg.RawSQL+tg.Expr) == "" {
					t.Errorf("%s %s: empty query", where, tg.RefID)
				}
				queries++
			}
		}
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				check(file+": variable "+v.Name, v.Datasource)
			}
		}
		if queries == 0 {
			t.Errorf("%s: no queries", file)
		}
	}
}
