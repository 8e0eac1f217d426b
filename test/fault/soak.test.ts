import { describe, expect, it } from 'vitest';
import { canMount } from './mount.js';
import { runScenario, summaryTable } from './scenario.js';

/** The long soak: `npm run soak -- --minutes N [--broker embedded]` (scripts/soak.mjs); skipped in `npm test`. */
const minutes = Number(process.env.SOAK_MINUTES ?? 0);
const broker = process.env.SOAK_BROKER === 'embedded' ? 'embedded' : 'mosquitto';
const CYCLE_MS = 30_000;

describe.runIf(minutes > 0)('soak', () => {
  it(`${minutes} minutes of faults under load (${broker})`, async () => {
    const started = Date.now();
    const s = await runScenario({
      broker,
      cycles: Math.max(1, Math.round((minutes * 60_000) / (CYCLE_MS + 5000))),
      cycleMs: CYCLE_MS,
      faults: ['kill', 'broker', 'broker-partition', 'peer-partition', 'slow-client', ...(canMount ? (['disk-full'] as const) : [])],
      clients: 8,
      skewMs: 2000,
      holdMs: 3000,
      seed: Date.now() % 100_000,
      log: (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${line}`),
    });
    console.log(`\nsoak, ${minutes} min, ${broker} broker, 3 nodes, 8 clients, one node's clock 2 s off:\n| | |\n| --- | --- |\n${summaryTable(s)}\n`);
    for (const p of s.problems.slice(0, 20)) console.log(`problem: ${p}`);
    for (const c of s.crashes) console.log(`crash: ${c}`);
    expect(s.problems).toEqual([]);
    expect(s.crashes).toEqual([]);
  }, (minutes * 60 + 300) * 1000);
});
