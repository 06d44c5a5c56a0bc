// The physical limit of a Node proxy on this machine: a bare undici pass-through with no
// auth, no parsing, no receipts. Tollgate's throughput is reported as a ratio to this.
import http from 'node:http';
import { Pool } from 'undici';

const upstream = new URL(process.argv[2]!);
const pool = new Pool(upstream.origin, { connections: 256 });
const server = http.createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const path = upstream.pathname.replace(/\/$/, '') + req.url!.replace(/^\/v1/, '');
  const r = await pool.request({ method: req.method as 'POST', path, headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
  res.writeHead(r.statusCode, { 'content-type': String(r.headers['content-type']) });
  for await (const c of r.body) res.write(c);
  res.end();
});
server.on('connection', (s) => s.setNoDelay(true));
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port }));
