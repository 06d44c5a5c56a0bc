// The floor of Tollgate's own transport: its inbound server (InboundServer) and upstream
// client (UpstreamClient, with its connection policy), the request body read and forwarded,
// the answer read whole and sent back, with the cancellation signal the pipeline passes. No
// auth, parsing, routing, limits or receipts.
// bench:proxy runs it beside the bare proxy and Tollgate: Tollgate − floor is what the
// pipeline costs per request, floor − bare what Tollgate's servers and client add.
import { readRequestBody } from '../../src/gateway/body.js';
import { Cancellation } from '../../src/gateway/cancellation.js';
import { InboundServer } from '../../src/gateway/inbound.js';
import { UpstreamClient } from '../../src/gateway/upstream.js';
import type { Provider } from '../../src/routing/catalog.js';

const upstream = new URL(process.argv[2]!);
const provider = { origin: upstream.origin, basePath: upstream.pathname.replace(/\/$/, ''), query: '', headers: {} } as Provider;
const client = new UpstreamClient({ connectMs: 5_000, firstByteMs: 30_000, answerMs: 30_000, idleMs: 30_000, totalMs: 60_000 });
const server = new InboundServer({ headersMs: 10_000, requestMs: 30_000 }, async (req, res) => {
  const body = await readRequestBody(req, 1 << 20);
  const answer = await client.post(provider, req.url!.replace(/^\/v1/, ''), body.toString('utf8'), new Cancellation());
  const bytes = await answer.body.read();
  res.writeHead(answer.status, { 'content-type': String(answer.headers['content-type']) });
  res.end(bytes);
});
await server.listen(0, '127.0.0.1');
process.send!({ port: (server.server.address() as { port: number }).port });
