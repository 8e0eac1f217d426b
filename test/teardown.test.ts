import { describe, expect, it } from 'vitest';
import { Teardown } from '../src/teardown.js';

describe('Teardown', () => {
  it('runs the steps last deferred first, each after the one before it settled', async () => {
    const t = new Teardown();
    const ran: string[] = [];
    t.defer('first', () => ran.push('first'));
    t.defer('second', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      ran.push('second');
    });
    t.defer('third', () => ran.push('third'));
    expect(t.stopping).toBe(false);
    const run = t.run();
    expect(t.stopping).toBe(true);
    expect(await run).toEqual([]);
    expect(ran).toEqual(['third', 'second', 'first']);
  });

  it('runs every step though some fail, and says which failed', async () => {
    const t = new Teardown();
    const ran: string[] = [];
    const closeFailed = new Error('close failed');
    t.defer('store', () => ran.push('store'));
    t.defer('port', () => Promise.reject(closeFailed));
    t.defer('timer', () => {
      throw new RangeError('no timer');
    });
    const failures = await t.run();
    expect(ran).toEqual(['store']);
    expect(failures.map((f) => f.name)).toEqual(['timer', 'port']);
    expect(failures[1]?.err).toBe(closeFailed);
  });

  it("runs once: a second run gets the first one's result", async () => {
    const t = new Teardown();
    let runs = 0;
    t.defer('count', () => runs++);
    const first = t.run();
    expect(t.run()).toBe(first);
    await first;
    await t.run();
    expect(runs).toBe(1);
  });
});
