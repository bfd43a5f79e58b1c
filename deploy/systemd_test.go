// Package deploy holds what installs riskwatch on a machine; its tests
// check those files with the tools that will read them.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies: systemd itself accepts the unit without a
// warning, in a root that has the binary where ExecStart says.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := systemdAnalyze(t)
	root := t.TempDir()
	copyTree(t, "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/system"))
	writeFile(t, filepath.Join(root, "usr/local/bin/riskwatch"), "#!/bin/sh\n", 0o755)
	unit, err := os.ReadFile("riskwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "etc/systemd/system/riskwatch.service"), string(unit), 0o644)
	out, err := exec.Command(analyze, "verify", "--root="+root, "/etc/systemd/system/riskwatch.service").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitIsHardened: systemd's own exposure score for the unit
// stays in its "OK" band (below 2.0 of 10), and the unit runs as the user
// the sysusers file creates, never root.
func TestSystemdUnitIsHardened(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", "riskwatch.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for riskwatch\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level >= 2.0 {
		t.Fatalf("exposure level %.1f, want < 2.0:\n%s", level, out)
	}
	user := unitValue(t, "riskwatch.service", "User")
	if user == "" || user == "root" {
		t.Fatalf("User=%q, want an unprivileged user of its own", user)
	}
	sysusers, err := os.ReadFile("riskwatch.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u ` + regexp.QuoteMeta(user) + ` `).Match(sysusers) {
		t.Fatalf("riskwatch.sysusers does not create user %s:\n%s", user, sysusers)
	}
}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check the unit (Debian package systemd; make test installs it): %v", err)
	}
	return p
}

// unitValue returns the last value of key in the unit file.
func unitValue(t *testing.T, path, key string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+"="); ok {
			v = rest
		}
	}
	return v
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s: %v", from, err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
