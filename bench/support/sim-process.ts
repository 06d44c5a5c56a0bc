// The simulated provider in its own process, so it does not share an event loop with the
// load generator or the proxies it is compared against.
import { startSimulatedProvider } from '../../src/sim/simulated.js';

const sim = await startSimulatedProvider({ record: false, defaults: JSON.parse(process.argv[2] ?? '{}') });
process.send!({ url: sim.url });
process.on('disconnect', () => void sim.close().then(() => process.exit(0)));
