import { describe, expect, it } from 'vitest';
import { checkHistory, converged, type FaultWindow } from './check.js';
import type { NodeState, Op } from './workload.js';

/** The checks themselves: each must fail on the history it exists to catch. */
const op = (kind: Op['kind'], key: string, arg: string, start: number, end: number, outcome: Op['outcome'] = 'ok', node = 0, client = 0): Op => ({ client, node, kind, key, arg, start, end, outcome });
const state = (values: Record<string, string | undefined> = {}, sets: Record<string, string[]> = {}): NodeState => ({ root: 'r', values, sets });
const opts = { slackMs: 100, clients: 1 };
const check = (history: Op[], s: NodeState, windows: FaultWindow[] = []): string[] => checkHistory(history, s, windows, opts).problems;

describe('the fault checks', () => {
  it('plain values: the newest write of a calm stretch must survive; none may be made up', () => {
    const h = [op('set', 'p0', 'old', 0, 10), op('set', 'p0', 'new', 500, 510)];
    expect(check(h, state({ p0: 'new' }))).toEqual([]);
    expect(check(h, state({ p0: 'old' }))[0]).toMatch(/p0: holds old .* but set p0 new .* came later/);
    expect(check(h, state({ p0: 'other' }))[0]).toMatch(/never written/);
    expect(check(h, state({}))[0]).toMatch(/absent, but/);
    // Within the slack, or with a fault between them, either may win.
    expect(check([op('set', 'p0', 'old', 0, 10), op('set', 'p0', 'new', 50, 60)], state({ p0: 'old' }))).toEqual([]);
    expect(check(h, state({ p0: 'old' }), [{ kind: 'kill', start: 200, end: 300 }])).toEqual([]);
    // A write that was refused (ERROR) cannot be the value; one that got no reply can.
    expect(check([op('set', 'p0', 'x', 0, 10, 'fail')], state({ p0: 'x' }))[0]).toMatch(/never written/);
    expect(check([op('set', 'p0', 'x', 0, 10, 'unknown')], state({ p0: 'x' }))).toEqual([]);
    // A delete explains absence only if nothing surely came after it.
    expect(check([op('set', 'p0', 'a', 0, 10), op('del', 'p0', '', 500, 510)], state({}))).toEqual([]);
    expect(check([op('del', 'p0', '', 0, 10), op('set', 'p0', 'a', 500, 510)], state({}))[0]).toMatch(/came later/);
  });

  it('appends: no made-up or doubled token; the newest calm append must be there', () => {
    const h = [op('append', 'a0', 't1.', 0, 10), op('append', 'a0', 't2.', 500, 510)];
    expect(check(h, state({ a0: 't1.t2.' }))).toEqual([]);
    expect(check(h, state({ a0: 't1.' }))[0]).toMatch(/lost append a0 t2\./);
    expect(check(h, state({ a0: 't1.t9.' }))[0]).toMatch(/t9, which no append wrote/);
    expect(check(h, state({ a0: 't1.t1.t2.' }))[0]).toMatch(/t1 twice/);
  });

  it('counters: the sum of acknowledged increments, give or take those without a reply', () => {
    const h = [op('inc', 'c0', '5', 0, 1), op('inc', 'c0', '-2', 2, 3), op('inc', 'c0', '4', 4, 5, 'unknown'), op('inc', 'c0', '9', 6, 7, 'fail')];
    expect(check(h, state({ c0: '3' }))).toEqual([]);
    expect(check(h, state({ c0: '7' }))).toEqual([]);
    expect(check(h, state({ c0: '8' }))[0]).toMatch(/c0: counter is 8, acknowledged increments sum to 3 \(allowed 3..7\)/);
    expect(check(h, state({ c0: '2' }))[0]).toMatch(/counter is 2/);
  });

  it("sets: each member as its owner's last acknowledged op left it", () => {
    const h = [op('sadd', 's0', 'm0-0', 0, 1), op('srem', 's0', 'm0-0', 2, 3), op('sadd', 's0', 'm0-1', 4, 5)];
    expect(check(h, state({}, { s0: ['m0-1'] }))).toEqual([]);
    expect(check(h, state({}, { s0: [] }))[0]).toMatch(/lacks m0-1/);
    expect(check(h, state({}, { s0: ['m0-0', 'm0-1'] }))[0]).toMatch(/holds m0-0, whose last acknowledged op was a remove/);
    // A remove without a reply may or may not have happened.
    const unsure = [...h, op('srem', 's0', 'm0-1', 6, 7, 'unknown')];
    expect(check(unsure, state({}, { s0: [] }))).toEqual([]);
    expect(check(unsure, state({}, { s0: ['m0-1'] }))).toEqual([]);
  });

  it('convergence: every node the same', () => {
    expect(converged([state({ p0: 'a' }), state({ p0: 'a' })])).toBe(true);
    expect(converged([state({ p0: 'a' }), state({ p0: 'b' })])).toBe(false);
  });
});
