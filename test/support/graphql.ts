// A minimal GraphQL-over-HTTP client for tests: POSTs to /graphql with a bearer token.
export interface GraphQLResult<T = any> {
  status: number;
  data: T | null;
  errors: Array<{ message: string; path?: Array<string | number>; extensions?: Record<string, unknown> }> | undefined;
}

export async function gql<T = any>(url: string, token: string | null, query: string, variables: Record<string, unknown> = {}): Promise<GraphQLResult<T>> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: GraphQLResult['errors'] };
  return { status: res.status, data: body.data ?? null, errors: body.errors };
}

/** Like gql, but throws on any GraphQL error: for setup steps that must succeed. */
export async function gqlOk<T = any>(url: string, token: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const r = await gql<T>(url, token, query, variables);
  if (r.errors?.length || !r.data) throw new Error(`GraphQL error: ${JSON.stringify(r.errors)}`);
  return r.data;
}
