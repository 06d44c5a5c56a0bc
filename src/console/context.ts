// What every view gets from the shell: the signed-in token and who it is, a GraphQL call that
// signs out on a refused token, and the names of the teams the token may see.
import type { Viewer } from './api.js';

export interface Ctx {
  token: string;
  viewer: Viewer;
  /** GraphQL over HTTP; a refused token ends the session (back to sign-in) and rejects. */
  query<T>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** The server refused the token on the websocket: end the session. */
  authRejected(): void;
  /** Team id → name, for the teams this token may see. */
  teams: Map<string, string>;
  /** A team's name; an id not known yet (a team made since sign-in) reloads the names. */
  teamName(id: string | null | undefined): string;
}

export interface View {
  el: HTMLElement;
  stop(): void;
}
