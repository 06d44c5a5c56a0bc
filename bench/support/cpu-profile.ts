// Self time per function from a V8 .cpuprofile (node --cpu-prof): the table bench:proxy prints
// for the Tollgate arm. Self time is a node's samples times the sampling interval; a function
// is its name and location, so the same function reached from many call sites adds up.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTimeRow {
  function: string;
  location: string;
  selfMs: number;
  /** Share of all samples, in %. */
  share: number;
}

/** Where a frame's code lives, short: `src/gateway/pipeline.ts:120`, `node:internal/…`, `undici/lib/…`. */
export function shortLocation(url: string, line: number, root: string): string {
  if (!url) return '';
  let p = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = p.lastIndexOf('node_modules/');
  if (nm >= 0) p = p.slice(nm + 'node_modules/'.length);
  else if (p.startsWith(root)) p = path.relative(root, p);
  return `${p}:${line + 1}`;
}

/**
 * A window of samples: ms since `originUs` (a profile's `startTime`; the profile's own when
 * absent). Threads of one process share the clock, so a worker's profile, which starts later,
 * is cut with the main thread's window by passing the main profile's start as the origin.
 */
export interface SampleWindow {
  fromMs: number;
  toMs: number;
  originUs?: number;
}

/** When the profile started (V8's monotonic clock, µs). */
export async function profileStart(file: string): Promise<number> {
  return (JSON.parse(await readFile(file, 'utf8')) as CpuProfile).startTime;
}

/**
 * The top functions by self time. `window` keeps only the samples taken under load, leaving
 * out start-up (engines loading) and shutdown; idle samples are not CPU and are left out.
 */
export async function selfTimeTable(file: string, root: string, top = 15, window?: SampleWindow): Promise<{ rows: SelfTimeRow[]; totalMs: number }> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const shiftMs = window?.originUs !== undefined ? (profile.startTime - window.originUs) / 1000 : 0;
  const byNode = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  // Time per sample: the delta to the next one (the last sample gets the mean).
  const msById = new Map<number, number>();
  const deltas = profile.timeDeltas;
  let atUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    atUs += deltas[i] ?? 0;
    const atMs = shiftMs + atUs / 1000;
    if (window && (atMs < window.fromMs || atMs > window.toMs)) continue;
    const us = i + 1 < deltas.length ? deltas[i + 1]! : (profile.endTime - profile.startTime) / profile.samples.length;
    msById.set(profile.samples[i]!, (msById.get(profile.samples[i]!) ?? 0) + us / 1000);
  }
  const byFunction = new Map<string, SelfTimeRow>();
  let totalMs = 0;
  for (const [id, ms] of msById) {
    const { functionName, url, lineNumber } = byNode.get(id)!.callFrame;
    if (functionName === '(idle)') continue; // the thread waiting, not CPU
    totalMs += ms;
    const name = functionName || (url ? '(anonymous)' : '(native)');
    const location = shortLocation(url, lineNumber, root);
    const key = `${name}@${location}`;
    const row = byFunction.get(key) ?? { function: name, location, selfMs: 0, share: 0 };
    row.selfMs += ms;
    byFunction.set(key, row);
  }
  const rows = [...byFunction.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const r of rows) r.share = (r.selfMs / totalMs) * 100;
  return { rows, totalMs };
}

/** Self time grouped by where the code lives: our modules by file, libraries by package, Node by area. */
export async function selfTimeByModule(file: string, root: string, window?: SampleWindow): Promise<Array<{ module: string; selfMs: number; share: number }>> {
  const { rows, totalMs } = await selfTimeTable(file, root, Number.POSITIVE_INFINITY, window);
  const byModule = new Map<string, number>();
  for (const r of rows) {
    const loc = r.location.replace(/:\d+$/, '');
    const module = !loc
      ? r.function
      : loc.startsWith('node:')
        ? loc.split('/').slice(0, 2).join('/')
        : loc.startsWith('dist/') || loc.startsWith('src/')
          ? loc
          : loc.split('/')[0]!.startsWith('@')
            ? loc.split('/').slice(0, 2).join('/')
            : loc.split('/')[0]!;
    byModule.set(module, (byModule.get(module) ?? 0) + r.selfMs);
  }
  return [...byModule].map(([module, selfMs]) => ({ module, selfMs, share: (selfMs / totalMs) * 100 })).sort((a, b) => b.selfMs - a.selfMs);
}
