// Task outcomes through REST (gateway key) and GraphQL (recordTaskOutcome), and their effect
// on costPerTask: an explicit verdict beats the last request's status, latest verdict wins.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql, gqlOk } from '../support/graphql.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
const from = new Date(Date.now() - 3600_000).toISOString();

beforeAll(async () => {
  gw = await startTestGateway();
  key = await gw.createKey('team-outcomes');
  const client = gw.client(key.secret, { defaultHeaders: { 'x-tollgate-task-id': 'task-ok' } });
  await client.chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: 'do the task' }] });
  await gw.started.runtime.journal.flush();
});
afterAll(async () => {
  await gw?.close();
});

async function postOutcome(taskId: string, body: unknown, secret = key.secret) {
  const res = await fetch(`${gw.baseURL}/tasks/${encodeURIComponent(taskId)}/outcome`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

const costPerTask = async () => {
  const to = new Date(Date.now() + 60_000).toISOString();
  const data = await gqlOk(gw.url, gw.adminToken, `query($f: AnalyticsFilter!) { costPerTask(filter: $f) { tasks succeededTasks failedTasks requests } }`, {
    f: { from, to, teamIds: [key.teamId] },
  });
  return data.costPerTask[0];
};

describe('task outcomes', () => {
  it('an ok last request counts as succeeded until an outcome says otherwise', async () => {
    expect(await costPerTask()).toMatchObject({ tasks: 1, succeededTasks: 1, failedTasks: 0, requests: 1 });
    const r = await postOutcome('task-ok', { success: false, note: 'JSON did not validate' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ task_id: 'task-ok', success: false });
    expect(await costPerTask()).toMatchObject({ tasks: 1, succeededTasks: 0, failedTasks: 1 });
  });

  it('records through GraphQL too; the latest verdict wins', async () => {
    await new Promise((r) => setTimeout(r, 5));
    const data = await gqlOk(gw.url, gw.adminToken, `mutation($i: TaskOutcomeInput!) { recordTaskOutcome(input: $i) { taskId success teamId } }`, {
      i: { taskId: 'task-ok', success: true, score: 0.9, teamId: key.teamId },
    });
    expect(data.recordTaskOutcome).toEqual({ taskId: 'task-ok', success: true, teamId: key.teamId });
    expect(await costPerTask()).toMatchObject({ succeededTasks: 1, failedTasks: 0 });
    // An admin's verdict is on record, as every admin mutation.
    const log = await gqlOk(gw.url, gw.adminToken, '{ auditLog(filter: { actions: ["recordTaskOutcome"] }) { edges { node { actor target after } } } }');
    expect(log.auditLog.edges.map((e: { node: unknown }) => e.node)).toEqual([
      { actor: 'admin', target: 'task:task-ok', after: { success: true, score: 0.9 } },
    ]);
  });

  it('refuses bad input, bad keys and read-only tokens', async () => {
    expect((await postOutcome('task-ok', { success: 'yes' })).status).toBe(400);
    expect((await postOutcome('task-ok', { success: true, extra: 1 })).status).toBe(400);
    expect((await postOutcome('task-ok', { success: true }, 'tg-nope')).status).toBe(401);
    const noTeam = await gql(gw.url, gw.adminToken, `mutation { recordTaskOutcome(input: {taskId: "t", success: true}) { taskId } }`);
    expect(noTeam.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const { secret } = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'ro', role: 'ANALYST' });
    const analyst = await gql(gw.url, secret, `mutation { recordTaskOutcome(input: {taskId: "t", success: true, teamId: "${key.teamId}"}) { taskId } }`);
    expect(analyst.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const injected = await postOutcome("x' OR 1=1 --", { success: true });
    expect(injected.status).toBe(200);
    expect(await costPerTask()).toMatchObject({ tasks: 1 });
  });
});
