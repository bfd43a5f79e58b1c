// Korean glyphs on a machine without a CJK font: the dashboard's Korean
// pages in Chromium must be drawn by the bundled webfont (Noto Sans KR
// Variable, web/korean-font.mjs), loaded subset by subset.
//
// The browser gets a fontconfig of its own: whatever configuration it
// would have used (FONTCONFIG_FILE, else /etc/fonts/fonts.conf) with every
// font that supports Korean or has the syllable 가 rejected. So even where
// Debian's fonts-noto-cjk is installed, only the webfont can draw Hangul
// here, and a control (가 and 나 drawn with the system's sans-serif come
// out the same: an empty box) proves it before anything else is checked.
//
// Pages: overview, merchant, alerts and one alert in Korean, the overview
// in English. Started by a Go test (or by hand) with:
//   RW_BASE_URL, RW_READ_USER, RW_READ_PASSWORD, RW_ALERT_MERCHANT,
//   RW_KOREAN_NAME (RW_ALERT_MERCHANT's name, in Hangul),
//   RW_ARTIFACTS (screenshots ko-overview.png, ko-merchant.png, ko-alerts.png;
//   default $TMPDIR/riskwatch-e2e), CHROMIUM (default /usr/bin/chromium).
// For each page: every face the page uses for the Hangul it shows is
// loaded; every element showing Hangul is drawn by the bundled font, per
// Chromium's own account (CDP CSS.getPlatformFontsForNode: the glyphs the
// bundled font drew are at least the element's CJK characters); the font
// files fetched are only faces holding a character of the page, answered
// as font/woff2 with long caching, and few of all the faces.
// Prints progress and PASS at the end; any failure: message on stderr, exit 1.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`FAIL: environment variable ${name} is required`);
    process.exit(1);
  }
  return v;
};

const BASE = need('RW_BASE_URL').replace(/\/+$/, '');
const READ_USER = process.env.RW_READ_USER || '';
const READ_PASSWORD = process.env.RW_READ_PASSWORD || '';
const ALERT_MERCHANT = need('RW_ALERT_MERCHANT');
const KOREAN_NAME = need('RW_KOREAN_NAME');
const ARTIFACTS = process.env.RW_ARTIFACTS || path.join(os.tmpdir(), 'riskwatch-e2e');
const FAMILY = 'Noto Sans KR Variable';
// The faces the page may fetch at most, of the ~120: a page needs the few
// subsets of common syllables and one for each rarer one it shows.
const MAX_SHARE = 0.25;

mkdirSync(ARTIFACTS, { recursive: true });
const log = (line) => process.stdout.write(`${line}\n`);
const assert = (cond, message) => {
  if (!cond) throw new Error(message);
};
const xml = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A fontconfig file: the usual configuration minus every font with Hangul. */
function fontconfigWithoutKorean(dir) {
  const base = process.env.FONTCONFIG_FILE || '/etc/fonts/fonts.conf';
  const file = path.join(dir, 'fonts.conf');
  writeFileSync(file, `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">${xml(path.resolve(base))}</include>
  <cachedir>${xml(path.join(dir, 'cache'))}</cachedir>
  <selectfont>
    <rejectfont>
      <pattern><patelt name="lang"><string>ko</string></patelt></pattern>
      <pattern><patelt name="charset"><charset><int>0xac00</int></charset></patelt></pattern>
    </rejectfont>
  </selectfont>
</fontconfig>
`);
  return file;
}

/**
 * In the page: the bundled faces (file URL, parsed ranges, status), the
 * characters the page holds anywhere (text, option labels, placeholders,
 * the Korean number units its chart axes draw on canvas) and, for every
 * element that shows CJK text, how many CJK characters it shows; those
 * elements get data-glyph-probe=N for CDP to find.
 */
function survey(family) {
  const parse = (text) => text.split(',').map((part) => {
    const m = /U\+([0-9a-f]+)(?:-([0-9a-f]+))?/i.exec(part);
    return [parseInt(m[1], 16), parseInt(m[2] || m[1], 16)];
  });
  const norm = (s) => s.replace(/["'\s]/g, '').toUpperCase();
  const status = new Map();
  for (const f of document.fonts) if (norm(f.family) === norm(family)) status.set(norm(f.unicodeRange), f.status);
  const faces = [];
  for (const sheet of document.styleSheets) {
    for (const rule of sheet.cssRules) {
      if (!(rule instanceof CSSFontFaceRule) || norm(rule.style.getPropertyValue('font-family')) !== norm(family)) continue;
      const src = /url\("?([^")]+)"?\)/.exec(rule.style.getPropertyValue('src'));
      const range = rule.style.getPropertyValue('unicode-range');
      faces.push({ url: new URL(src[1], sheet.href).href, ranges: parse(range), status: status.get(norm(range)) ?? 'missing' });
    }
  }
  const faceOf = (cp) => faces.findIndex((f) => f.ranges.some(([lo, hi]) => cp >= lo && cp <= hi));
  const cjk = (s) => [...(s || '')].filter((c) => faceOf(c.codePointAt(0)) >= 0);
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility === 'visible';

  const all = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) for (const c of n.data) all.add(c);
  for (const el of document.querySelectorAll('[placeholder]')) for (const c of el.placeholder) all.add(c);
  for (const n of [1e3, 1e4, 1e8, 1e12]) for (const c of new Intl.NumberFormat('ko-KR', { notation: 'compact' }).format(n)) all.add(c);

  // What an element shows in its own lines, as Chromium accounts for it:
  // its text and that of its plain inline descendants (a block, an
  // inline-block or a form control is accounted for by itself); a select
  // shows its chosen option, an empty input its placeholder.
  const control = (el) => el instanceof HTMLSelectElement || el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement;
  const shows = (el, top = true) => {
    if (!top && (control(el) || getComputedStyle(el).display !== 'inline')) return '';
    if (control(el)) {
      if (el instanceof HTMLSelectElement) return el.selectedIndex >= 0 ? el.options[el.selectedIndex].text : '';
      return el.value ? '' : el.placeholder || '';
    }
    if (!shown(el)) return '';
    let s = '';
    for (const child of el.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) s += child.data;
      else if (child.nodeType === Node.ELEMENT_NODE) s += shows(child, false);
    }
    return s;
  };
  const probes = [];
  const hangul = new Set();
  for (const el of document.body.querySelectorAll('*')) {
    const own = control(el) ? shows(el) : [...el.childNodes].filter((c) => c.nodeType === Node.TEXT_NODE).map((c) => c.data).join('');
    if (!cjk(own).length || !shown(el)) continue;
    const text = shows(el);
    el.dataset.glyphProbe = String(probes.length);
    probes.push({ tag: el.tagName.toLowerCase(), text: text.trim().slice(0, 60), cjk: cjk(text).length });
    for (const c of text) if (/[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]/.test(c)) hangul.add(c);
  }
  const outside = [...all].filter((c) => /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]/.test(c) && faceOf(c.codePointAt(0)) < 0);
  const justified = new Set([...all].map((c) => faceOf(c.codePointAt(0))).filter((i) => i >= 0));
  const needed = new Set([...hangul].map((c) => faceOf(c.codePointAt(0))));
  return {
    faces: faces.map(({ url, status }) => ({ url, status })),
    justified: [...justified],
    needed: [...needed],
    probes,
    hangul: hangul.size,
    outside,
  };
}

/** Pixels of one character drawn in `font` (tofu boxes all look the same). */
function glyphPixels([font, ch]) {
  const c = document.createElement('canvas');
  c.width = 64;
  c.height = 64;
  const ctx = c.getContext('2d');
  ctx.font = font;
  ctx.fillText(ch, 4, 48);
  return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
}

async function main() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'riskwatch-fonts-'));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    env: { ...process.env, FONTCONFIG_FILE: fontconfigWithoutKorean(tmp) },
  });
  try {
    let controlled = false;
    const check = async (name, url, lang, ready, shot) => {
      // A context of its own: an empty cache, so what is fetched is what this page needs.
      const context = await browser.newContext({
        viewport: { width: 1400, height: 900 },
        deviceScaleFactor: 1,
        locale: lang === 'ko' ? 'ko-KR' : 'en-US',
        httpCredentials: READ_USER ? { username: READ_USER, password: READ_PASSWORD } : undefined,
      });
      try {
        const page = await context.newPage();
        page.setDefaultTimeout(30000);
        const errors = [];
        page.on('pageerror', (err) => errors.push(err.message));
        const fetched = [];
        page.on('response', (r) => {
          if (/\/assets\/fonts\/[^/]+\.woff2$/.test(new URL(r.url()).pathname)) {
            const h = r.headers();
            fetched.push({ url: r.url(), status: r.status(), type: h['content-type'], cache: h['cache-control'], bytes: Number(h['content-length'] || 0) });
          }
        });
        await page.goto(`${BASE}${url}`);
        await page.waitForFunction((l) => document.documentElement.lang === l, lang);
        await ready(page);
        await page.evaluate(() => document.fonts.ready);
        await page.waitForFunction(() => document.fonts.status === 'loaded' && ![...document.fonts].some((f) => f.status === 'loading'));
        // Charts redraw once the fonts their axes need are there.
        await page.waitForTimeout(300);

        if (!controlled) {
          // Nothing but the bundled font can draw Hangul in this browser.
          for (const generic of ['sans-serif', 'serif', 'monospace', 'system-ui']) {
            const [ga, na] = await Promise.all(['가', '나'].map((ch) => page.evaluate(glyphPixels, [`48px ${generic}`, ch])));
            assert(ga === na, `control: the browser's ${generic} draws 가 and 나 differently, so it has a system font with Hangul and this test would prove nothing (fontconfig ${process.env.FONTCONFIG_FILE || '/etc/fonts/fonts.conf'})`);
          }
          await page.evaluate((f) => document.fonts.load(`48px "${f}"`, '가나'), FAMILY);
          const [ga, na] = await Promise.all(['가', '나'].map((ch) => page.evaluate(glyphPixels, [`48px "${FAMILY}"`, ch])));
          assert(ga !== na, `control: the bundled ${FAMILY} draws 가 and 나 alike`);
          // The chart axes draw Korean number units on canvas with the page's
          // font stack (--font): each must be a glyph of its own, not a box.
          const units = [...new Set([1e3, 1e4, 1e8, 1e12].map((n) => new Intl.NumberFormat('ko-KR', { notation: 'compact' }).format(n).replace(/[\d.,\s]/g, '')))];
          const stack = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--font').trim());
          assert(stack.startsWith(`"${FAMILY}"`), `--font ${stack}: the bundled font is not first`);
          await page.evaluate(([f, text]) => document.fonts.load(f, text), [`48px ${stack}`, units.join('')]);
          const drawn = await Promise.all(units.map((ch) => page.evaluate(glyphPixels, [`48px ${stack}`, ch])));
          assert(new Set(drawn).size === units.length, `the page's font stack draws the axis units ${units.join(' ')} with ${new Set(drawn).size} distinct shapes`);
          log('  control: no system font draws Hangul; the bundled font does');
          controlled = true;
        }

        // The page is live (SSE, polling): an element surveyed can be
        // replaced before Chromium is asked about it. Then survey again.
        const unprobe = () => page.evaluate(() => document.querySelectorAll('[data-glyph-probe]').forEach((el) => el.removeAttribute('data-glyph-probe')));
        const probeFonts = async () => {
          const s = await page.evaluate(survey, FAMILY);
          assert(s.faces.length >= 100, `${name}: ${s.faces.length} bundled faces in the stylesheet, want ~120`);
          assert(!s.outside.length, `${name}: Hangul outside every bundled face's unicode-range: ${s.outside.join('')}`);
          const notLoaded = s.needed.filter((i) => s.faces[i].status !== 'loaded');
          assert(!notLoaded.length, `${name}: faces for the Hangul shown are not loaded: ${notLoaded.map((i) => `${s.faces[i].url} (${s.faces[i].status})`).join(', ')}`);

          // Chromium's own account of the fonts that drew each element.
          const cdp = await context.newCDPSession(page);
          await cdp.send('DOM.enable');
          await cdp.send('CSS.enable');
          const { root } = await cdp.send('DOM.getDocument', { depth: 0 });
          const { nodeIds } = await cdp.send('DOM.querySelectorAll', { nodeId: root.nodeId, selector: '[data-glyph-probe]' });
          assert(nodeIds.length === s.probes.length, `${name}: ${nodeIds.length} probe nodes, ${s.probes.length} probes`);
          let glyphs = 0;
          let cjkChars = 0;
          for (const nodeId of nodeIds) {
            const { attributes } = await cdp.send('DOM.getAttributes', { nodeId });
            const probe = s.probes[Number(attributes[attributes.indexOf('data-glyph-probe') + 1])];
            const { fonts } = await cdp.send('CSS.getPlatformFontsForNode', { nodeId });
            const bundled = fonts.filter((f) => f.isCustomFont && f.familyName.startsWith('Noto Sans KR')).reduce((n, f) => n + f.glyphCount, 0);
            assert(bundled >= probe.cjk,
              `${name}: <${probe.tag}> ${JSON.stringify(probe.text)} shows ${probe.cjk} CJK characters, the bundled font drew ${bundled} glyphs: ${JSON.stringify(fonts)}`);
            glyphs += bundled;
            cjkChars += probe.cjk;
          }
          return { s, glyphs, cjkChars };
        };
        let s, glyphs, cjkChars;
        for (let attempt = 1; ; attempt++) {
          try {
            ({ s, glyphs, cjkChars } = await probeFonts());
            break;
          } catch (e) {
            if (attempt >= 3 || !/Could not find node|probe nodes/.test(String(e && e.message))) throw e;
            log(`  ${name}: the page changed during the font probe (${e.message}); probing again`);
          } finally {
            await unprobe();
          }
        }

        // Fetched: only faces with a character of the page, as fonts, kept for good.
        const index = new Map(s.faces.map((f, i) => [f.url, i]));
        for (const f of fetched) {
          const i = index.get(f.url);
          assert(i !== undefined, `${name}: fetched ${f.url}, which no bundled face names`);
          assert(s.justified.includes(i), `${name}: fetched ${f.url}, whose range holds no character of the page`);
          assert(f.status === 200 && f.type === 'font/woff2' && /\bmax-age=31536000\b/.test(f.cache || '') && /\bimmutable\b/.test(f.cache || ''),
            `${name}: ${f.url}: ${f.status}, Content-Type ${f.type}, Cache-Control ${f.cache}`);
        }
        const files = new Set(fetched.map((f) => f.url));
        assert(files.size === fetched.length, `${name}: a font file was fetched twice`);
        assert(files.size <= MAX_SHARE * s.faces.length, `${name}: ${files.size} of ${s.faces.length} font files fetched`);
        if (lang === 'ko') assert(s.needed.length > 0 && cjkChars > 100, `${name}: only ${cjkChars} CJK characters shown; is the page Korean?`);
        assert(!errors.length, `${name}: page errors: ${errors.join('; ')}`);
        log(`  ${name}: ${s.hangul} distinct Hangul in ${s.probes.length} elements (${cjkChars} CJK characters, ${glyphs} glyphs by ${FAMILY}); ` +
          `${files.size} of ${s.faces.length} font files fetched, ${Math.round(fetched.reduce((n, f) => n + f.bytes, 0) / 1024)} KiB (faces needed ${s.needed.length}, with a character anywhere on the page ${s.justified.length})`);

        if (shot) await page.screenshot({ path: path.join(ARTIFACTS, shot), fullPage: true });
      } finally {
        await context.close();
      }
    };

    const alertRow = `[data-testid="alert-row"][data-merchant-id="${ALERT_MERCHANT}"]`;
    const charts = async (page, ids) => {
      for (const id of ids) await page.waitForSelector(`[data-testid="${id}"][data-ready="true"] canvas`);
    };
    await check('overview (ko)', '/', 'ko', async (page) => {
      await page.locator(`[data-testid="open-alerts"] ${alertRow}`).first().waitFor();
      await charts(page, ['chart-platform-counts', 'chart-platform-amounts']);
      const text = await page.locator(`[data-testid="open-alerts"] ${alertRow}`).first().textContent();
      assert(text.includes(KOREAN_NAME), `the alert row does not name ${KOREAN_NAME}: ${JSON.stringify(text)}`);
    }, 'ko-overview.png');
    log('ok: overview');
    await check('merchant (ko)', `/merchants/${ALERT_MERCHANT}`, 'ko', async (page) => {
      await page.waitForFunction((n) => document.querySelector('[data-testid="merchant-name"]')?.textContent.includes(n), KOREAN_NAME);
      await charts(page, ['chart-counts', 'chart-volume', 'chart-rate']);
    }, 'ko-merchant.png');
    log('ok: merchant');
    await check('alerts (ko)', '/alerts', 'ko', async (page) => {
      await page.locator(`[data-testid="alerts-table"] ${alertRow}`).first().waitFor();
    }, 'ko-alerts.png');
    log('ok: alerts');
    const auth = READ_USER ? { Authorization: `Basic ${Buffer.from(`${READ_USER}:${READ_PASSWORD}`).toString('base64')}` } : {};
    const res = await fetch(`${BASE}/api/alerts?merchant=${ALERT_MERCHANT}&limit=1`, { headers: { Accept: 'application/json', ...auth } });
    assert(res.ok, `GET /api/alerts?merchant=${ALERT_MERCHANT}: ${res.status}`);
    const alertId = (await res.json()).alerts[0].id;
    await check('alert (ko)', `/alerts/${alertId}`, 'ko', async (page) => {
      await page.locator(`[data-testid="alert-detail"] ${alertRow}`).first().waitFor();
      await page.locator('[data-testid="audit"]').waitFor();
    });
    log('ok: alert');
    // English: Latin text keeps the system font; only the Hangul it shows
    // (the language switch, Korean merchant names) fetches a subset.
    await check('overview (en)', '/', 'en', async (page) => {
      await page.locator(`[data-testid="open-alerts"] ${alertRow}`).first().waitFor();
    });
    log('ok: English overview');
  } finally {
    await browser.close();
    rmSync(tmp, { recursive: true, force: true });
  }
  log('PASS');
}

main().catch((err) => {
  process.stderr.write(`FAIL: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
