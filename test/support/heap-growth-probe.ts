// Run by test/unit/heap-growth.test.ts in a process of its own (V8 flags are per process):
// limitHeapGrowth(percent) as `tollgate start` calls it, then a load that promotes a few hundred MB of
// short-lived objects over a ~60 MB live heap (~20 MB held throughout, the rest the ring of the
// latest 400k objects). Prints the old generation's peak size and the
// number of full (mark-compact) collections as JSON.
import { constants, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { limitHeapGrowth } from '../../src/main.js';

limitHeapGrowth(Number(process.argv[2]));
let fullCollections = 0;
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) fullCollections++;
  }
});
observer.observe({ entryTypes: ['gc'] });
const live = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `live-${i}` }));
// Each object outlives ~400k allocations, longer than the young generation holds it: promoted.
const ring = new Array(400_000);
let peakOld = 0;
for (let i = 0; i < 4_000_000; i++) {
  ring[i % ring.length] = { i, s: `x-${i}`, a: [i, i + 1] };
  if (i % 5000 === 0) peakOld = Math.max(peakOld, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_size);
}
await new Promise((resolve) => setTimeout(resolve, 50));
observer.disconnect();
console.log(JSON.stringify({ peakOldMb: peakOld / 2 ** 20, fullCollections, live: live.length }));
