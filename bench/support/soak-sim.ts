// The simulated provider for `npm run soak`, in its own process. argv[2] is a JSON object
// { model: latencyMs }: each model answers after its own fixed latency, so the load generator
// knows what the upstream cost for every answer (by the x-tollgate-model header).
// IPC { model, status } queues one failure for that model's next request: the load generator
// injects upstream failures this way, so their rate follows the request rate.
import { startSimulatedProvider } from '../../src/sim/simulated.js';

const latencies = JSON.parse(process.argv[2] ?? '{}') as Record<string, number>;
const sim = await startSimulatedProvider({ record: false, defaults: { completionTokens: 16 } });
for (const [model, latencyMs] of Object.entries(latencies)) sim.behave(model, { latencyMs });

// A queued behaviour is merged over the model's standing one, so the failure keeps its latency.
process.on('message', (m: { model: string; status: number }) => sim.behave(m.model, { status: m.status, times: 1 }));
process.on('disconnect', () => void sim.close().then(() => process.exit(0)));
process.send!({ url: sim.url });
