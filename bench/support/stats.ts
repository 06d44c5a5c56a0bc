// Small helpers shared by the soak test and the benchmark runner.
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function median(xs: number[]): number {
  return percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
}

/** Least-squares slope of y over x (NaN with fewer than two points). */
export function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** The fields of a /proc stat file after the command name (state first). */
function statFields(file: string): string[] {
  return readFileSync(file, 'utf8').split(') ')[1]!.split(' ');
}

/** utime + stime of a /proc stat file, in seconds (the kernel counts at 100 Hz). */
function statCpuSeconds(file: string): number {
  const fields = statFields(file);
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU time of a process so far, all its threads (from /proc; Linux only). */
export function cpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** CPU time of a process's main thread so far (from /proc; Linux only). */
export function mainThreadCpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);
}

/**
 * Minor page faults of a process so far (all its threads; Linux only). Each is memory the kernel
 * maps in on first touch; on these VMs one costs ~11 µs, so a few per request show in CPU and latency.
 */
export function minorFaults(pid: number): number {
  return Number(statFields(`/proc/${pid}/stat`)[7]);
}

/** A memory line of /proc/<pid>/status (kB there) in MB (Linux only). */
function statusMb(pid: number, field: 'VmRSS' | 'RssFile'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

/** Resident set size of a process in MB. */
export const rssMb = (pid: number): number => statusMb(pid, 'VmRSS');

/** The part of a process's RSS that is mapped files (its code: node, shared libraries such as chDB's), MB. */
export const rssFileMb = (pid: number): number => statusMb(pid, 'RssFile');

/** What the figures were measured on; the load average says how busy the machine already was. */
export function machine() {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
  };
}
