// A child process that takes the lock at argv[2] (src/store/process-lock.ts), says "held" (or
// "busy <pid>") and stays alive until killed: for tests of what a live or killed holder means.
import { takeLock } from '../../src/store/process-lock.js';

const attempt = await takeLock(process.argv[2]!);
process.stdout.write('held' in attempt ? 'held\n' : `busy ${attempt.holderPid}\n`);
setInterval(() => {}, 60_000);
