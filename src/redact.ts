// Credentials inside URLs never leave the process in clear: not in the start banner, log lines,
// error messages, nor GraphQL answers and audit entries. One function does it everywhere.
//
// It works on text, not on parsed URLs: it finds `scheme://userinfo@` and `?name=value` /
// `&name=value` pairs wherever they occur (a whole URL, or a URL inside an error message),
// and keeps everything else byte for byte, so what an operator reads is still recognisable.

const MASK = '***';

// `scheme://` then userinfo up to the LAST '@' before the host (an unencoded '@' inside a
// password is common in hand-written URLs; a '/', '?', '#' or whitespace ends the authority).
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#"'<>]*)@/gi;

// A query parameter (or a ';' parameter); its value runs to the next separator.
const PARAM = /([?&;])([^=&#\s"'<>]+)=([^&#\s"'<>]*)/g;

/**
 * Parameter names that carry secrets: key, api_key, apikey, api-key, token, access_token,
 * secret, client_secret, password, pwd, sig, signature (X-Amz-Signature), auth, credential …
 */
const SECRET_PARAM = /^(?:.*[-_.])?(?:api-?key|apikey|key|token|secret|password|passwd|pwd|pass|sig|signature|auth|authorization|credentials?)$/i;

/** `text` with every URL password, bare-userinfo credential and secret query value masked. */
export function redactSecrets(text: string): string {
  if (!text.includes('@') && !text.includes('=')) return text;
  return text
    .replace(USERINFO, (_m, scheme: string, userinfo: string) => {
      if (userinfo === '') return `${scheme}@`;
      const colon = userinfo.indexOf(':');
      // user:password keeps the user name (useful, rarely secret); a lone name may be a token.
      return colon === -1 ? `${scheme}${MASK}@` : `${scheme}${userinfo.slice(0, colon)}:${MASK}@`;
    })
    .replace(PARAM, (m, sep: string, name: string) => (SECRET_PARAM.test(safeDecode(name)) ? `${sep}${name}=${MASK}` : m));
}

/** Like redactSecrets, for an optional value. */
export function redactUrl(url: string | null | undefined): string | null {
  return url == null ? null : redactSecrets(url);
}

/**
 * The same masking applied to every string inside a log record (objects and arrays, a few
 * levels deep). Log records are built by our code from small objects, so this stays cheap.
 */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (depth >= 5 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  if (value instanceof Error) {
    return { type: value.name, message: redactSecrets(value.message), stack: value.stack === undefined ? undefined : redactSecrets(value.stack) };
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v, depth + 1);
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
