package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateScreenshots = flag.Bool("update-screenshots", false,
	"copy the browser test's Korean screenshots into docs/screenshots (make screenshots)")

// Hangul merchant names for the glyph check: merchant names are text the
// dashboard did not write, so their syllables may be in subsets its own
// Korean strings never fetch.
const (
	browserKoreanName   = "한빛문고"    // browserAlertMerchant
	browserKoreanNameP3 = "꽃뜰 생활마트" // browserP3Merchant
)

// koreanScreenshots are what web/e2e/fonts.mjs writes and docs/screenshots keeps.
var koreanScreenshots = []string{"ko-overview.png", "ko-merchant.png", "ko-alerts.png"}

// checkKoreanGlyphs gives two merchants Hangul names at the source and runs
// web/e2e/fonts.mjs against the running dashboard: its Korean pages in a
// Chromium that has no font with Hangul must be drawn by the bundled
// webfont, fetching only the subsets they show. With -update-screenshots
// the Korean screenshots are copied into docs/screenshots.
func checkKoreanGlyphs(t *testing.T, c *cliEnv, get func(string, any) error, root, node, base, artifacts string) {
	t.Helper()
	// A rename reaches the sink's copy at the hourly full refresh
	// (merchant_names.full_refresh): write both, as that refresh would.
	for _, table := range []string{"public.merchants", "riskwatch.merchants"} {
		c.exec(`UPDATE `+table+` SET name = $2 WHERE id = $1`, browserAlertMerchant, browserKoreanName)
		c.exec(`UPDATE `+table+` SET name = $2 WHERE id = $1`, browserP3Merchant, browserKoreanNameP3)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found struct{ Merchants []struct{ ID int64 } }
		err := get("/api/merchants?q="+url.QueryEscape(browserKoreanName), &found)
		if err == nil && len(found.Merchants) == 1 && found.Merchants[0].ID == browserAlertMerchant {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("merchant %d is not named %s in the dashboard (%v, %+v)", browserAlertMerchant, browserKoreanName, err, found)
		}
		time.Sleep(200 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "e2e", "fonts.mjs"))
	cmd.Dir = filepath.Join(root, "web")
	cmd.Env = append(os.Environ(),
		"RW_BASE_URL="+base, "RW_READ_USER=viewer", "RW_READ_PASSWORD=view-pw",
		fmt.Sprintf("RW_ALERT_MERCHANT=%d", browserAlertMerchant), "RW_KOREAN_NAME="+browserKoreanName,
		"RW_ARTIFACTS="+artifacts, "CHROMIUM=/usr/bin/chromium")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Logf("fonts: %s", line)
	}
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "\nPASS") {
		t.Fatalf("Korean glyph check failed (%v):\n%s", err, stderr.String())
	}
	for _, shot := range koreanScreenshots {
		src := filepath.Join(artifacts, shot)
		if st, err := os.Stat(src); err != nil || st.Size() < 10_000 {
			t.Errorf("screenshot %s: %v", shot, err)
			continue
		}
		if *updateScreenshots {
			b, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(filepath.Join(root, "docs", "screenshots", shot), b, 0o644)
			}
			if err != nil {
				t.Errorf("updating docs/screenshots/%s: %v", shot, err)
			}
		}
	}
}
