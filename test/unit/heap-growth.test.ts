// TOLLGATE_HEAP_GROWTH_PERCENT: limitHeapGrowth (src/main.ts) bounds how far V8 lets the old
// generation grow past its live size. Each case runs in a child process: V8's flags are global.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const probe = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../support/heap-growth-probe.ts');

async function run(percent: number): Promise<{ peakOldMb: number; fullCollections: number }> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', probe, String(percent)]);
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

describe('limitHeapGrowth', () => {
  it('keeps the old generation near its live size, where V8 alone lets it grow several times over', async () => {
    const [own, limited] = await Promise.all([run(0), run(20)]);
    // ~60 MB live at any time and several hundred MB promoted over the run: V8 alone lets old
    // space grow to several times the live size.
    expect(own.peakOldMb).toBeGreaterThan(1.5 * limited.peakOldMb);
    expect(limited.fullCollections).toBeGreaterThan(own.fullCollections);
  }, 60_000);
});
