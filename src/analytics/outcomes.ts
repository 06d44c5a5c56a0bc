// Task outcomes: a verdict per (team, task), latest wins (ReplacingMergeTree on recorded_at).
// Written by the recordTaskOutcome mutation and POST /v1/tasks/{taskId}/outcome; read by
// costPerTask.
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';

// A task id is a name (receipts, logs, URLs, terminals): no control characters at all. A note
// is free text: tabs and line breaks are fine, other control characters (ESC, NUL, …) are not.
const NO_CONTROL = /^\P{Cc}*$/u;
const NO_CONTROL_BUT_LINES = /^(?:[\t\n\r]|\P{Cc})*$/u;

export const TaskOutcomeInput = z.strictObject({
  taskId: z.string().trim().min(1).max(256).regex(NO_CONTROL, 'must not contain control characters'),
  success: z.boolean(),
  score: z.number().finite().nullish(),
  note: z.string().max(2000).regex(NO_CONTROL_BUT_LINES, 'must not contain control characters other than tabs and line breaks').nullish(),
});

export interface TaskOutcome {
  teamId: string;
  taskId: string;
  success: boolean;
  score: number | null;
  note: string | null;
  recordedAt: Date;
}

export async function recordTaskOutcome(
  clickhouse: ClickHouseClient,
  teamId: string,
  input: z.infer<typeof TaskOutcomeInput>,
  now: Date = new Date(),
): Promise<TaskOutcome> {
  const outcome: TaskOutcome = {
    teamId,
    taskId: input.taskId,
    success: input.success,
    score: input.score ?? null,
    note: input.note ?? null,
    recordedAt: now,
  };
  await clickhouse.insert({
    table: 'task_outcomes',
    format: 'JSONEachRow',
    values: [
      {
        team_id: teamId,
        task_id: outcome.taskId,
        success: outcome.success,
        score: outcome.score,
        note: outcome.note ?? '',
        recorded_at: now.toISOString().replace('T', ' ').replace('Z', ''),
      },
    ],
  });
  return outcome;
}
