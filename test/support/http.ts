// Raw HTTP for tests that need what fetch will not send (repeated headers) or CORS requests.
import net from 'node:net';

/** One HTTP/1.1 exchange over a raw socket: the request exactly as written, repeated headers included. */
export async function rawRequest(url: string, lines: string[], body = ''): Promise<{ status: number; head: string; body: string }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const head = [...lines, `host: ${hostname}:${port}`, `content-length: ${Buffer.byteLength(body)}`, 'connection: close', '', ''].join('\r\n');
  // write, not end: a half-closed connection reads as a client that went away. The server
  // closes it after answering (connection: close).
  socket.write(head + body);
  let text = '';
  for await (const chunk of socket) text += chunk;
  const [responseHead, ...rest] = text.split('\r\n\r\n');
  return { status: Number(responseHead!.split(' ')[1]), head: responseHead!.toLowerCase(), body: rest.join('\r\n\r\n') };
}

/** The `error` of an OpenAI-shaped error body (chunked or not). */
export function openAIError(body: string): { message: string; type: string; param: string | null; code: string | null } {
  return JSON.parse(body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1)).error;
}

/** A browser's CORS preflight for a POST with these request headers. */
export function preflight(url: string, path: string, origin: string): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
}

export function corsHeaders(res: Response): Record<string, string> {
  return Object.fromEntries([...res.headers].filter(([name]) => name.startsWith('access-control-')));
}
