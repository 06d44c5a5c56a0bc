// npm run soak:chart — the soak's memory curves as a PNG beside bench/RESULTS.md
// (bench/soak-memory.png): Tollgate's RSS and V8 heap for each soak that has results
// (bench/results/soak.json: embedded stores; soak-external.json: external stores), with the
// RSS trend line over the samples after warm-up, whose slope is the soak's verdict.
// The chart is an SVG written here and rendered by resvg (no browser, no network).
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Resvg } from '@resvg/resvg-js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Soak {
  date: string;
  loadSeconds: number;
  rssSamples: Array<{ at: number; mb: number }>;
  heapSamples: Array<{ at: number; usedMb: number }>;
  /** Heap left by each full collection (soaks since 2026-12-05). */
  fullGcSamples?: Array<{ at: number; afterMb: number }>;
  checks: { rssFlat: { value: number } };
}

interface Series {
  label: string;
  color: string;
  dashed?: boolean;
  points: Array<[number, number]>;
}

const W = 960;
const PANEL_H = 300;
const M = { left: 60, right: 20, top: 40, bottom: 40 };

/** Least-squares line through the points: [slope, intercept]. */
function leastSquares(points: Array<[number, number]>): [number, number] {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  const sxy = points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
  const sxx = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  const slope = sxx ? sxy / sxx : 0;
  return [slope, my - slope * mx];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function panel(title: string, series: Series[], top: number): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = [0, Math.max(...xs)];
  const [y0, y1] = [0, Math.ceil((Math.max(...ys) * 1.1) / 50) * 50];
  const plotW = W - M.left - M.right;
  const plotH = PANEL_H - M.top - M.bottom;
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (y: number) => top + M.top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;
  let svg = `<text x="${M.left}" y="${top + 24}" font-size="15" font-weight="bold">${esc(title)}</text>`;
  for (let i = 0; i <= 5; i++) {
    const y = y0 + ((y1 - y0) * i) / 5;
    svg += `<line x1="${M.left}" x2="${W - M.right}" y1="${sy(y)}" y2="${sy(y)}" stroke="#ddd"/><text x="${M.left - 6}" y="${sy(y) + 4}" font-size="11" text-anchor="end">${y.toFixed(0)}</text>`;
  }
  const step = x1 > 20 ? 5 : 1;
  for (let x = 0; x <= x1; x += step) svg += `<text x="${sx(x)}" y="${top + PANEL_H - M.bottom + 16}" font-size="11" text-anchor="middle">${x}</text>`;
  svg += `<text x="12" y="${top + M.top - 8}" font-size="11">MB</text>`;
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
    svg += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.dashed ? 1.5 : 2}"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
    const lx = M.left + 10 + i * 205;
    svg += `<line x1="${lx}" x2="${lx + 24}" y1="${top + PANEL_H - 4}" y2="${top + PANEL_H - 4}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${lx + 30}" y="${top + PANEL_H}" font-size="11">${esc(s.label)}</text>`;
  });
  return svg;
}

function seriesOf(soak: Soak): Series[] {
  const rss = soak.rssSamples.map((r): [number, number] => [r.at / 60, r.mb]);
  const warm = soak.loadSeconds / 3 / 60;
  const [slope, intercept] = leastSquares(rss.filter((p) => p[0] >= warm));
  const end = soak.loadSeconds / 60;
  return [
    { label: 'RSS (VmRSS)', color: '#1f77b4', points: rss },
    { label: 'V8 heap used', color: '#2ca02c', points: soak.heapSamples.map((h): [number, number] => [h.at / 60, h.usedMb]) },
    ...(soak.fullGcSamples?.length
      ? [{ label: 'V8 heap after full GC', color: '#9467bd', points: soak.fullGcSamples.map((g): [number, number] => [g.at / 60, g.afterMb]) }]
      : []),
    {
      label: `RSS trend after warm-up: ${slope.toFixed(2)} MB/min`,
      color: '#d62728',
      dashed: true,
      points: [
        [warm, slope * warm + intercept],
        [end, slope * end + intercept],
      ],
    },
  ];
}

async function main() {
  const soaks = [
    ['soak.json', 'embedded stores (chDB + PGlite in the process)'],
    ['soak-external.json', 'external stores (ClickHouse over HTTP, PostgreSQL)'],
  ]
    .map(([file, what]) => ({ file: path.join(here, 'results', file!), what: what! }))
    .filter((s) => existsSync(s.file))
    .map((s) => ({ ...s, soak: JSON.parse(readFileSync(s.file, 'utf8')) as Soak }));
  if (!soaks.length) throw new Error('no soak results: run `npm run soak` (and SOAK_STORES=external npm run soak) first');
  const height = soaks.length * PANEL_H + 10;
  const body = soaks
    .map((s, i) =>
      panel(`Tollgate memory, ${s.what}, ${Math.round(s.soak.loadSeconds / 60)} min soak of ${s.soak.date.slice(0, 10)}`, seriesOf(s.soak), i * PANEL_H),
    )
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="white"/>${body}</svg>`;
  const png = new Resvg(svg, { font: { loadSystemFonts: true } }).render().asPng();
  const out = path.join(here, 'soak-memory.png');
  await writeFile(out, png);
  console.log(`wrote ${path.relative(process.cwd(), out)} (${soaks.map((s) => path.basename(s.file)).join(', ')})`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
