// The websocket fan-out (src/live/fanout.ts) with a stand-in for envelop's subscribe and for
// the sockets: one execution per event per group, graphql-ws's frame format, per-member
// bounded queues whose gaps are reported in that member's own droppedBefore.
import type { DocumentNode, ExecutionArgs, GraphQLSchema } from 'graphql';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import { LiveBus, type LiveStreamOpener, type RoutingDecision } from '../../src/live/events.js';
import { type SubscribeFn, WsFanout } from '../../src/live/fanout.js';

function decision(requestId: string, teamId = 'team-1'): RoutingDecision {
  return {
    requestId,
    receiptId: null,
    at: new Date().toISOString(),
    teamId,
    apiKeyId: null,
    feature: null,
    requestedModel: 'm',
    route: null,
    strategy: null,
    attempt: 1,
    provider: null,
    model: null,
    outcome: 'SUCCESS',
    reason: null,
    latencyMs: null,
    candidates: [],
  };
}

/** Stands in for envelop's subscribe: opens the stream like the schema's resolver and "executes" each event. */
function fakeSubscribe(bus: LiveBus, accept: (d: RoutingDecision) => boolean = () => true) {
  const counts = { subscribes: 0, executions: 0 };
  const subscribe: SubscribeFn = (args) => {
    counts.subscribes++;
    const open = (args.contextValue as { openLiveStream: LiveStreamOpener }).openLiveStream;
    const source = open(bus.decisions, accept);
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          const r = await source.next();
          if (r.done) return { done: true as const, value: undefined };
          counts.executions++;
          return { done: false as const, value: { data: { d: { requestId: r.value.requestId, droppedBefore: r.value.droppedBefore } } } };
        },
        return: async () => {
          await source.return?.();
          return { done: true as const, value: undefined };
        },
      }),
    };
  };
  return { subscribe, counts };
}

interface Frame {
  id: string;
  type: string;
  payload: { data: { d: { requestId: string; droppedBefore: number } } };
}

/**
 * A socket whose writes can be held back, like a client that stopped reading: while blocked,
 * what is sent stays in `bufferedAmount` (as in ws) and write callbacks wait.
 */
function fakeSocket() {
  const frames: Frame[] = [];
  const held: Array<() => void> = [];
  let blocked = false;
  const closed: Array<{ code: number; reason: string }> = [];
  const socket = {
    OPEN: 1,
    CLOSED: 3,
    readyState: 1,
    bufferedAmount: 0,
    send(data: string, cb?: (err?: Error) => void) {
      frames.push(JSON.parse(data));
      if (!blocked) {
        if (cb) setImmediate(() => cb());
        return;
      }
      socket.bufferedAmount += Buffer.byteLength(data);
      held.push(() => cb?.());
    },
    once: () => socket,
    close(code: number, reason: string) {
      socket.readyState = 2; // CLOSING
      closed.push({ code, reason });
    },
  };
  return {
    socket: socket as unknown as WebSocket,
    frames,
    closed,
    ids: () => frames.map((f) => f.payload.data.d.requestId),
    block: () => void (blocked = true),
    unblock: () => {
      blocked = false;
      socket.bufferedAmount = 0;
      for (const h of held.splice(0)) h();
    },
  };
}

const args = (): ExecutionArgs => ({ schema: {} as GraphQLSchema, document: {} as DocumentNode, contextValue: {} });

const open: Array<AsyncIterator<unknown>> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((it) => it.return?.()));
});

async function join(fanout: WsFanout, key: string, subscribe: SubscribeFn, socket: WebSocket, id: string) {
  const result = await fanout.subscribe({ key, args: args(), subscribe, socket, id });
  const it = (result as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  open.push(it);
  return it;
}

describe('websocket fan-out', () => {
  it('executes each event once per group and writes it to every member in graphql-ws format', async () => {
    const bus = new LiveBus();
    const fanout = new WsFanout(bus);
    const { subscribe, counts } = fakeSubscribe(bus);
    const a = fakeSocket();
    const b = fakeSocket();
    const subA = await join(fanout, 'k', subscribe, a.socket, 'sub-a');
    const subB1 = await join(fanout, 'k', subscribe, b.socket, 'sub-b1');
    await join(fanout, 'k', subscribe, b.socket, 'sub-b2'); // a second subscription on the same socket
    expect(bus.subscriberCount).toBe(3);
    expect(fanout.groupCount).toBe(1);
    expect(bus.decisions.listenerCount).toBe(1);

    for (let i = 0; i < 5; i++) bus.decisions.publish(decision(`r${i}`));
    await vi.waitFor(() => expect(b.frames).toHaveLength(10));
    await vi.waitFor(() => expect(a.frames).toHaveLength(5));
    expect(counts).toEqual({ subscribes: 1, executions: 5 });
    expect(a.frames[0]).toEqual({ id: 'sub-a', type: 'next', payload: { data: { d: { requestId: 'r0', droppedBefore: 0 } } } });
    expect(a.ids()).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    for (const id of ['sub-b1', 'sub-b2']) expect(b.frames.filter((f) => f.id === id).map((f) => f.payload.data.d.requestId)).toEqual(a.ids());

    // Leaving: the group goes with its last member, and with it the topic listener.
    await subA.return!();
    await subB1.return!();
    expect(bus.subscriberCount).toBe(1);
    expect(fanout.groupCount).toBe(1);
    await open[2]!.return!();
    expect(bus.subscriberCount).toBe(0);
    expect(fanout.groupCount).toBe(0);
    await vi.waitFor(() => expect(bus.decisions.hasListeners).toBe(false));
  });

  it('keeps different keys apart', async () => {
    const bus = new LiveBus();
    const fanout = new WsFanout(bus);
    const team1 = fakeSubscribe(bus, (d) => d.teamId === 'team-1');
    const team2 = fakeSubscribe(bus, (d) => d.teamId === 'team-2');
    const s1 = fakeSocket();
    const s2 = fakeSocket();
    await join(fanout, 'team-1', team1.subscribe, s1.socket, '1');
    await join(fanout, 'team-2', team2.subscribe, s2.socket, '2');
    expect(fanout.groupCount).toBe(2);
    bus.decisions.publish(decision('x', 'team-1'));
    bus.decisions.publish(decision('y', 'team-2'));
    await vi.waitFor(() => expect(s1.ids()).toEqual(['x']));
    await vi.waitFor(() => expect(s2.ids()).toEqual(['y']));
    expect(team1.counts.executions).toBe(1);
    expect(team2.counts.executions).toBe(1);
  });

  it('drops the oldest for a member whose socket stalls, and reports the gap in its own droppedBefore only', async () => {
    const bus = new LiveBus();
    bus.subscriberCapacity = 3;
    const fanout = new WsFanout(bus);
    const { subscribe } = fakeSubscribe(bus);
    const fast = fakeSocket();
    const slow = fakeSocket();
    await join(fanout, 'k', subscribe, fast.socket, 'fast');
    await join(fanout, 'k', subscribe, slow.socket, 'slow');

    slow.block(); // r0 is written but its write never completes: nothing more goes to this socket
    bus.decisions.publish(decision('r0'));
    await vi.waitFor(() => expect(slow.frames).toHaveLength(1));
    // One at a time, so that only the slow member (not the shared execution) falls behind.
    for (let i = 1; i < 10; i++) {
      bus.decisions.publish(decision(`r${i}`));
      await vi.waitFor(() => expect(fast.frames).toHaveLength(i + 1));
    }
    expect(slow.frames).toHaveLength(1);
    expect(bus.droppedTotal).toBe(6); // r1..r6: the queue of 3 keeps r7, r8, r9
    expect(
      bus
        .subscriberStats()
        .map((s) => s.dropped)
        .sort(),
    ).toEqual([0, 6]);

    slow.unblock();
    await vi.waitFor(() => expect(slow.frames).toHaveLength(4));
    expect(slow.frames.map((f) => [f.payload.data.d.requestId, f.payload.data.d.droppedBefore])).toEqual([
      ['r0', 0],
      ['r7', 6],
      ['r8', 0],
      ['r9', 0],
    ]);
    expect(fast.frames.every((f) => f.payload.data.d.droppedBefore === 0)).toBe(true);
    expect(fast.ids()).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`));
  });

  it('closes a socket whose unsent bytes pass the limit (1008 "slow consumer"), ends its members and lets go of their queues', async () => {
    const bus = new LiveBus();
    let slowConsumers = 0;
    const fanout = new WsFanout(bus, { maxBufferedBytes: 4_000, onSlowConsumer: () => slowConsumers++ });
    const fast = fakeSocket();
    const slow = fakeSocket();
    const slowSubs = [];
    // Different keys: every subscription has its own queue and payloads.
    for (let i = 0; i < 5; i++) {
      const { subscribe } = fakeSubscribe(bus);
      await join(fanout, `k${i}`, subscribe, fast.socket, `fast-${i}`);
      slowSubs.push(await join(fanout, `k${i}`, subscribe, slow.socket, `slow-${i}`));
    }
    expect(bus.subscriberCount).toBe(10);

    slow.block();
    for (let i = 0; i < 100; i++) {
      bus.decisions.publish(decision(`r${i}`));
      // Unsent bytes never pile up beyond the limit (plus the event that crossed it); without
      // it the slow socket would hold ~50 kB by the end.
      expect(fanout.bufferedBytes).toBeLessThan(4_000 + 5 * 200);
      await vi.waitFor(() => expect(fast.frames).toHaveLength(5 * (i + 1)), { interval: 1 });
    }
    expect(fast.closed).toEqual([]);
    expect(slow.closed).toEqual([{ code: 1008, reason: 'slow consumer' }]);
    expect(slowConsumers).toBe(1);
    // Its members ended like subscribers that went away; what they held is released.
    expect(bus.subscriberCount).toBe(5);
    expect(await slowSubs[0]!.next()).toEqual({ value: undefined, done: true });
    expect(slow.frames.length).toBeLessThan(100);
    // The reader lost nothing.
    for (let i = 0; i < 5; i++) {
      expect(fast.frames.filter((f) => f.id === `fast-${i}`).map((f) => f.payload.data.d.requestId)).toEqual(Array.from({ length: 100 }, (_, n) => `r${n}`));
    }
    expect(fast.frames.every((f) => f.payload.data.d.droppedBefore === 0)).toBe(true);
    expect(fanout.bufferedBytes).toBe(slow.socket.bufferedAmount);
  });

  it('a single subscription that falls behind drops its oldest within its share of the byte limit; its socket stays open', async () => {
    const bus = new LiveBus();
    const fanout = new WsFanout(bus, { maxBufferedBytes: 4_000, onSlowConsumer: () => undefined });
    const { subscribe } = fakeSubscribe(bus);
    const s = fakeSocket();
    await join(fanout, 'k', subscribe, s.socket, 'only');
    s.block();
    bus.decisions.publish(decision('r0'));
    await vi.waitFor(() => expect(s.frames).toHaveLength(1));
    for (let i = 1; i < 100; i++) bus.decisions.publish(decision(`r${i}`));
    await vi.waitFor(() => expect(bus.droppedTotal).toBeGreaterThan(0));
    expect(fanout.bufferedBytes).toBeLessThanOrEqual(1_000 + s.socket.bufferedAmount); // a quarter of 4 000, plus r0
    expect(s.closed).toEqual([]);
    s.unblock();
    await vi.waitFor(() => expect(s.ids().at(-1)).toBe('r99'));
    const got = s.frames.map((f) => f.payload.data.d);
    expect(got.length + got.reduce((n, d) => n + d.droppedBefore, 0)).toBe(100);
  });

  it('hands an error result to the first subscriber and lets the others run on their own', async () => {
    const bus = new LiveBus();
    const fanout = new WsFanout(bus);
    let calls = 0;
    const refused: SubscribeFn = async () => {
      calls++;
      return { errors: [] };
    };
    const s = fakeSocket();
    const [first, second] = await Promise.all([
      fanout.subscribe({ key: 'k', args: args(), subscribe: refused, socket: s.socket, id: '1' }),
      fanout.subscribe({ key: 'k', args: args(), subscribe: refused, socket: s.socket, id: '2' }),
    ]);
    expect(first).toEqual({ errors: [] });
    expect(second).toEqual({ errors: [] });
    expect(calls).toBe(2);
    expect(fanout.groupCount).toBe(0);
    expect(bus.subscriberCount).toBe(0);
  });

  it("ends every member with the shared execution's failure as an error, not as a normal end", async () => {
    const bus = new LiveBus();
    const fanout = new WsFanout(bus);
    const failing: SubscribeFn = (a) => {
      const source = (a.contextValue as { openLiveStream: LiveStreamOpener }).openLiveStream(bus.decisions, () => true);
      return {
        [Symbol.asyncIterator]: () => ({
          next: async () => {
            const r = await source.next();
            if (r.done) return { done: true as const, value: undefined };
            throw new Error('execution failed');
          },
          return: async () => {
            await source.return?.();
            return { done: true as const, value: undefined };
          },
        }),
      };
    };
    const waiting = await join(fanout, 'failing', failing, fakeSocket().socket, 'waits');
    const late = await join(fanout, 'failing', failing, fakeSocket().socket, 'late');
    const waited = waiting.next().then(
      (r) => `resolved ${JSON.stringify(r)}`,
      (e: Error) => `rejected: ${e.message}`,
    );
    bus.decisions.publish(decision('r0'));
    expect(await waited).toBe('rejected: execution failed');
    // A member that was not waiting when it failed hears of it at its next read, then the end.
    await vi.waitFor(() => expect(fanout.groupCount).toBe(0));
    await expect(late.next()).rejects.toThrow('execution failed');
    await expect(late.next()).resolves.toEqual({ done: true, value: undefined });
  });

  it('forgets a group whose subscribe threw, so the next subscriber starts afresh', async () => {
    const bus = new LiveBus();
    const fanout = new WsFanout(bus);
    const s = fakeSocket();
    const broken: SubscribeFn = () => {
      throw new Error('boom');
    };
    await expect(fanout.subscribe({ key: 'k', args: args(), subscribe: broken, socket: s.socket, id: '1' })).rejects.toThrow('boom');
    expect(fanout.groupCount).toBe(0);
    const { subscribe } = fakeSubscribe(bus);
    await join(fanout, 'k', subscribe, s.socket, '2');
    bus.decisions.publish(decision('r0'));
    await vi.waitFor(() => expect(s.ids()).toEqual(['r0']));
  });

  it('writes sockets in short slices while they keep up, and in longer ones once a socket has waited too long', async () => {
    // A fake clock: each write costs 0.125 ms of it (exact in binary, so no rounding moves a
    // deadline), and the writes of one turn of the event loop (one flush) are counted together.
    let clock = 1_000;
    let writeCost = 0.125;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      const bus = new LiveBus();
      const fanout = new WsFanout(bus);
      const { subscribe } = fakeSubscribe(bus);
      const sockets = Array.from({ length: 20 }, () => fakeSocket());
      const turns: number[] = [];
      let writesThisTurn = 0;
      for (const s of sockets) {
        const send = s.socket.send.bind(s.socket);
        s.socket.send = ((data: string, cb?: (err?: Error) => void) => {
          clock += writeCost;
          writeCost = 0.125;
          if (writesThisTurn++ === 0) {
            queueMicrotask(() => {
              turns.push(writesThisTurn);
              writesThisTurn = 0;
            });
          }
          send(data, cb);
        }) as typeof s.socket.send;
      }
      for (const [i, s] of sockets.entries()) await join(fanout, 'k', subscribe, s.socket, `s${i}`);

      // On time: 0.25 ms a turn, so two writes, then the event loop's other work.
      bus.decisions.publish(decision('on-time'));
      await vi.waitFor(() => expect(sockets.every((s) => s.frames.length === 1)).toBe(true));
      expect(turns).toEqual(Array(10).fill(2));

      // A first write that takes 12 ms leaves every other socket waiting longer than the
      // catch-up threshold (10 ms): the turns that follow take 1 ms (eight writes) each until all
      // are written.
      turns.length = 0;
      clock += 25; // past every socket's minimum write interval
      writeCost = 12;
      bus.decisions.publish(decision('late'));
      await vi.waitFor(() => expect(sockets.every((s) => s.frames.length === 2)).toBe(true));
      expect(turns).toEqual([1, 8, 8, 3]);
    } finally {
      now.mockRestore();
    }
  });
});
