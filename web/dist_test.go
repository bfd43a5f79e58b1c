package web

import (
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestKoreanFontFaces reads the embedded stylesheet's @font-face rules for
// the bundled Korean font: one file per face, every file embedded and named,
// font-display: swap, every Hangul syllable and compatibility jamo in
// exactly one face, and no Latin character in any (so Latin text keeps the
// system font and an English page fetches no font file).
func TestKoreanFontFaces(t *testing.T) {
	dist := Dist()
	css, err := fs.ReadFile(dist, "assets/app.css")
	if err != nil {
		t.Fatal(err)
	}
	faces := regexp.MustCompile(`@font-face\{([^}]*)\}`).FindAllStringSubmatch(string(css), -1)
	files, err := fs.Glob(dist, "assets/fonts/*.woff2")
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != len(files) || len(faces) < 100 {
		t.Fatalf("%d @font-face rules, %d font files embedded; want one file per face, about 120", len(faces), len(files))
	}
	prop := func(face, name string) string {
		m := regexp.MustCompile(`(?:^|;)` + name + `:([^;]*)`).FindStringSubmatch(face)
		if m == nil {
			return ""
		}
		return m[1]
	}
	owner := map[rune]int{} // code point -> face index
	named := map[string]bool{}
	for i, f := range faces {
		face := f[1]
		if fam := strings.Trim(prop(face, "font-family"), `"'`); fam != "Noto Sans KR Variable" {
			t.Errorf("face %d: font-family %q", i, fam)
		}
		if d := prop(face, "font-display"); d != "swap" {
			t.Errorf("face %d: font-display %q, want swap (text shows at once in a fallback)", i, d)
		}
		if w := prop(face, "font-weight"); w != "100 900" {
			t.Errorf("face %d: font-weight %q, want the variable font's 100 900", i, w)
		}
		src := regexp.MustCompile(`url\("?\./(fonts/[^")]+\.woff2)"?\) format\("woff2"\)`).FindStringSubmatch(prop(face, "src"))
		if src == nil {
			t.Errorf("face %d: src %q", i, prop(face, "src"))
			continue
		}
		if _, err := fs.Stat(dist, "assets/"+src[1]); err != nil || named[src[1]] {
			t.Errorf("face %d: %s is missing or named twice (%v)", i, src[1], err)
		}
		named[src[1]] = true
		for _, part := range strings.Split(prop(face, "unicode-range"), ",") {
			lo, hi, ok := strings.Cut(strings.TrimPrefix(part, "U+"), "-")
			if !ok {
				hi = lo
			}
			a, errA := strconv.ParseUint(lo, 16, 32)
			b, errB := strconv.ParseUint(hi, 16, 32)
			if errA != nil || errB != nil || a > b {
				t.Fatalf("face %d: unicode-range part %q", i, part)
			}
			for r := rune(a); r <= rune(b); r++ {
				if r < 0x1100 {
					t.Fatalf("face %d: U+%04X (Latin, before the CJK blocks) in %s", i, r, part)
				}
				if j, dup := owner[r]; dup {
					t.Fatalf("U+%04X is in faces %d and %d", r, j, i)
				}
				owner[r] = i
			}
		}
	}
	missing := 0
	for _, block := range [][2]rune{{0xAC00, 0xD7A3}, {0x3131, 0x318E}} { // Hangul syllables, compatibility jamo
		for r := block[0]; r <= block[1]; r++ {
			if _, ok := owner[r]; !ok {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d Hangul characters are in no face", missing)
	}
	if lic, err := fs.ReadFile(dist, "assets/fonts/OFL.txt"); err != nil || !strings.Contains(string(lic), "SIL OPEN FONT LICENSE Version 1.1") {
		t.Errorf("assets/fonts/OFL.txt: the font's licence is not shipped with it (%v)", err)
	}
}
