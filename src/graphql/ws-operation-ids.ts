// Which websocket subscribe is the newest for its operation id.
//
// graphql-ws tells an operation that is still starting (its token check, its fan-out group's
// start) from a newer one with the same id by the id alone. After `subscribe 1`, `complete 1`,
// `subscribe 1` in one breath, the older operation, once started, took the newer one's place
// in graphql-ws's table and was never ended: not by `complete`, not when its socket closed, and
// not counted against the per-socket limit (one entry, however many subscriptions). So each
// subscribe is stamped as it arrives, and an operation that is no longer the newest for its id
// when it has started is refused (its socket closed 4409, graphql-ws's code for an id in use).
import type { WebSocket } from 'ws';

export interface Arrival {
  socket: WebSocket;
  id: string;
}

export class OperationArrivals {
  private readonly newest = new WeakMap<WebSocket, Map<string, Arrival>>();

  /** Called synchronously as the subscribe message is handled, before anything awaits. */
  arrive(socket: WebSocket, id: string): Arrival {
    let ids = this.newest.get(socket);
    if (!ids) {
      ids = new Map();
      this.newest.set(socket, ids);
    }
    const arrival = { socket, id };
    ids.set(id, arrival);
    return arrival;
  }

  /**
   * Whether `arrival` was still the newest for its id; either way it is done arriving (an
   * entry per id ever used would grow with a socket that subscribes and fails forever).
   */
  settle(arrival: Arrival): boolean {
    const ids = this.newest.get(arrival.socket);
    if (ids?.get(arrival.id) !== arrival) return false;
    ids.delete(arrival.id);
    return true;
  }
}
