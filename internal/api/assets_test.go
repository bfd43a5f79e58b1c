package api

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/riskwatch/riskwatch/web"
)

// TestFontAssets serves the built dashboard that the binary embeds: every
// font file its stylesheet names answers as font/woff2, byte for byte, with
// a year of caching; the other assets and a missing font are not cached
// for good.
func TestFontAssets(t *testing.T) {
	t.Parallel()
	assets, err := fs.Sub(web.Dist(), "assets")
	if err != nil {
		t.Fatal(err)
	}
	css, err := fs.ReadFile(assets, "app.css")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/assets/", assetsHandler(assets)))
	defer srv.Close()
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	urls := regexp.MustCompile(`url\("?\./(fonts/[^")]+)"?\)`).FindAllStringSubmatch(string(css), -1)
	// Google Fonts cuts Noto Sans KR into 120 subsets; the three without a
	// CJK character are left out (web/korean-font.mjs).
	if len(urls) != 117 {
		t.Fatalf("app.css names %d font files, want 117", len(urls))
	}
	for _, m := range urls {
		name := m[1]
		resp, body := get("/assets/" + name)
		want, err := fs.ReadFile(assets, name)
		if err != nil {
			t.Errorf("%s: named by app.css but not embedded: %v", name, err)
			continue
		}
		if resp.StatusCode != 200 || !bytes.Equal(body, want) || !bytes.HasPrefix(body, []byte("wOF2")) {
			t.Errorf("GET /assets/%s: %d, %d bytes (embedded %d), starts %q", name, resp.StatusCode, len(body), len(want), body[:min(4, len(body))])
		}
		if ct := resp.Header.Get("Content-Type"); ct != "font/woff2" {
			t.Errorf("GET /assets/%s: Content-Type %q, want font/woff2", name, ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=31536000, immutable" {
			t.Errorf("GET /assets/%s: Cache-Control %q, want a year, immutable", name, cc)
		}
	}

	for _, c := range []struct{ path, contentType string }{
		{"/assets/app.css", "text/css; charset=utf-8"},
		{"/assets/app.js", "text/javascript; charset=utf-8"},
		{"/assets/fonts/OFL.txt", "text/plain; charset=utf-8"},
	} {
		resp, body := get(c.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.contentType || resp.Header.Get("Cache-Control") != "" {
			t.Errorf("GET %s: %d, Content-Type %q, Cache-Control %q; want 200, %s, none", c.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), c.contentType)
		}
		if c.path == "/assets/fonts/OFL.txt" && !strings.Contains(string(body), "SIL OPEN FONT LICENSE Version 1.1") {
			t.Errorf("GET %s: not the font's licence: %.80q", c.path, body)
		}
	}
	for _, p := range []string{"/assets/fonts/none.woff2", "/assets/fonts/../app.css.woff2"} {
		resp, _ := get(p)
		if resp.StatusCode != 404 || resp.Header.Get("Cache-Control") != "" {
			t.Errorf("GET %s: %d, Cache-Control %q; want 404 and no caching", p, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
}
