// The bundled Korean webfont for build.mjs: Noto Sans KR (variable weight,
// SIL Open Font License 1.1) from @fontsource-variable/noto-sans-kr, already
// cut by Google Fonts into ~120 unicode-range subsets ordered by how often
// Korean text uses their characters. A page downloads only the subsets
// holding characters it shows.
//
// The package's ranges also put Latin letters and digits into the busiest
// Hangul subsets. Each range is cut down here to the CJK blocks, so Latin
// text keeps the system font (the English pages look as before and fetch no
// font file) and the bundled face is first in the font stack only for the
// characters no Latin system font has.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export const FAMILY = 'Noto Sans KR Variable';
const PACKAGE = '@fontsource-variable/noto-sans-kr';

// Hangul (jamo, compatibility jamo, syllables), CJK symbols and punctuation,
// kana, enclosed and compatibility forms, Hanja, full-width forms.
const CJK = [
  [0x1100, 0x11ff],
  [0x2e80, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa960, 0xa97f],
  [0xac00, 0xd7ff],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe1f],
  [0xfe30, 0xfe4f],
  [0xff00, 0xffef],
  [0x20000, 0x3ffff],
];

/** "U+20-22,U+ac00" -> [[0x20, 0x22], [0xac00, 0xac00]] */
export function parseRanges(text) {
  return text.split(',').map((part) => {
    const m = /^U\+([0-9a-f]+)(?:-([0-9a-f]+))?$/i.exec(part.trim());
    if (!m) throw new Error(`${PACKAGE}: unicode-range part ${JSON.stringify(part)}`);
    const lo = parseInt(m[1], 16);
    return [lo, m[2] ? parseInt(m[2], 16) : lo];
  });
}

const formatRanges = (ranges) =>
  ranges.map(([lo, hi]) => (lo === hi ? `U+${lo.toString(16)}` : `U+${lo.toString(16)}-${hi.toString(16)}`)).join(',');

function intersect(ranges, keep) {
  const out = [];
  for (const [lo, hi] of ranges) {
    for (const [klo, khi] of keep) {
      const a = Math.max(lo, klo);
      const b = Math.min(hi, khi);
      if (a <= b) out.push([a, b]);
    }
  }
  return out.sort((x, y) => x[0] - y[0]);
}

/** The package's directory, its licence file and the @font-face rules (CSS text). */
export async function koreanFont(webDir) {
  const dir = path.join(webDir, 'node_modules', PACKAGE);
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
  const subsets = JSON.parse(await readFile(path.join(dir, 'unicode.json'), 'utf8'));
  const faces = [];
  // The numbered subsets are the Korean slicing; the named ones (latin,
  // cyrillic, ...) hold nothing in the CJK blocks.
  const numbered = Object.keys(subsets).filter((k) => /^\[\d+\]$/.test(k)).sort((a, b) => parseInt(a.slice(1), 10) - parseInt(b.slice(1), 10));
  for (const key of numbered) {
    const ranges = intersect(parseRanges(subsets[key]), CJK);
    if (!ranges.length) continue;
    const n = key.slice(1, -1);
    faces.push(`@font-face {
  font-family: '${FAMILY}';
  font-style: normal;
  font-display: swap;
  font-weight: 100 900;
  src: url(./files/noto-sans-kr-${n}-wght-normal.woff2) format('woff2');
  unicode-range: ${formatRanges(ranges)};
}`);
  }
  if (faces.length < 100) throw new Error(`${PACKAGE} ${pkg.version}: only ${faces.length} Korean subsets, want the ~120 of Google Fonts' slicing`);
  const legal = `/*! ${FAMILY}: Noto Sans KR (c) Google Inc., SIL Open Font License 1.1 (assets/fonts/OFL.txt), via ${PACKAGE} ${pkg.version} */`;
  return { dir, license: path.join(dir, 'LICENSE'), css: `${legal}\n${faces.join('\n')}\n` };
}

/** esbuild plugin: `import 'riskwatch:korean-font.css'` is the @font-face rules. */
export function koreanFontPlugin(webDir) {
  return {
    name: 'korean-font',
    setup(build) {
      build.onResolve({ filter: /^riskwatch:korean-font\.css$/ }, (args) => ({ path: args.path, namespace: 'korean-font' }));
      build.onLoad({ filter: /.*/, namespace: 'korean-font' }, async () => {
        const font = await koreanFont(webDir);
        return { contents: font.css, loader: 'css', resolveDir: font.dir };
      });
    },
  };
}
