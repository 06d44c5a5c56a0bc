// A vitest reporter for `npm run test:faults`: writes bench/results/faults.json, the fault
// suite's summary that `npm run bench` puts in bench/RESULTS.md. One entry per scenario
// (test case): its outcome, duration and what it observed — the figures each test records
// with `annotate(text, 'observed')` (see observe() in ./support.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';
import { machine } from '../../bench/support/stats.js';

const OUT = path.resolve('bench/results/faults.json');

export default class FaultSummaryReporter implements Reporter {
  private startedAt = new Date();

  onTestRunStart(): void {
    this.startedAt = new Date();
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const scenarios = modules.flatMap((module) =>
      [...module.children.allTests()].map((test) => {
        const result = test.result();
        return {
          file: module.relativeModuleId,
          name: test.fullName,
          status: result.state, // passed | failed | skipped | pending
          durationMs: Math.round(test.diagnostic()?.duration ?? 0),
          observed: test
            .annotations()
            .filter((a) => a.type === 'observed')
            .map((a) => a.message),
          ...(result.state === 'failed' ? { errors: result.errors.map((e) => e.message) } : {}),
          ...(result.state === 'skipped' && result.note ? { skipReason: result.note } : {}),
        };
      }),
    );
    const count = (state: string) => scenarios.filter((s) => s.status === state).length;
    const summary = {
      date: this.startedAt.toISOString(),
      machine: machine(),
      passed: count('passed'),
      failed: count('failed'),
      skipped: count('skipped'),
      scenarios,
    };
    mkdirSync(path.dirname(OUT), { recursive: true });
    writeFileSync(OUT, `${JSON.stringify(summary, null, 2)}\n`);
    console.log(`fault suite: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped; wrote ${path.relative(process.cwd(), OUT)}`);
  }
}
