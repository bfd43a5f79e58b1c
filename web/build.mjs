// Builds the dashboard into dist/ (committed, embedded in the Go binary):
//   dist/index.html, dist/assets/app.js, dist/assets/app.css, dist/assets/favicon.svg,
//   dist/assets/fonts/*.woff2 (the Korean webfont's subsets, named by content
//   hash so they can be cached for good) and dist/assets/fonts/OFL.txt
// Minified, no source maps; esbuild's output is deterministic, so running the
// build twice gives byte-identical files.
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { koreanFont, koreanFontPlugin } from './korean-font.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
const assets = path.join(dist, 'assets');

// uPlot's own header comment is not a /*! legal comment, so credit it here.
const uplot = JSON.parse(await readFile(path.join(here, 'node_modules/uplot/package.json'), 'utf8'));
const banner = `/*! riskwatch dashboard. Includes uPlot v${uplot.version} (c) Leon Sorokin, MIT License, https://github.com/leeoniya/uPlot */`;

await rm(dist, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js' }, // app.js + app.css (main.js imports the CSS)
  outdir: assets,
  entryNames: '[name]',
  bundle: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: false,
  legalComments: 'eof',
  banner: { js: banner, css: banner },
  charset: 'utf8',
  loader: { '.woff2': 'file' },
  assetNames: 'fonts/[name]-[hash]',
  plugins: [koreanFontPlugin(here)],
  logLevel: 'warning',
});

await copyFile(path.join(here, 'index.html'), path.join(dist, 'index.html'));
await copyFile(path.join(here, 'favicon.svg'), path.join(assets, 'favicon.svg'));
// The OFL asks for the licence to travel with the font.
await copyFile((await koreanFont(here)).license, path.join(assets, 'fonts', 'OFL.txt'));
console.log('built dist/index.html, dist/assets/{app.js,app.css,favicon.svg,fonts/}');
