// The fault-injection soak: `npm run soak -- --minutes 10 [--broker mosquitto|embedded]`.
// Runs test/fault/soak.test.ts (a 3-node cluster under load while nodes are killed, the broker restarted and
// links cut) for that long and prints its summary table: operations, faults by kind, convergence time,
// lost writes (must be 0), crashes, RSS peak.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { root } from './bench-lib.mjs';

const { values: args } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, broker: { type: 'string', default: 'mosquitto' } } });
const minutes = Number(args.minutes);
if (!(minutes > 0)) throw new Error('--minutes must be a positive number');
if (!['mosquitto', 'embedded'].includes(args.broker)) throw new Error('--broker must be mosquitto or embedded');
const child = spawn('npx', ['vitest', 'run', 'test/fault/soak.test.ts', '--reporter=verbose', '--silent=false'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, SOAK_MINUTES: String(minutes), SOAK_BROKER: args.broker },
});
child.on('exit', (code) => process.exit(code ?? 1));
