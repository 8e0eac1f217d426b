import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareHlc, compareVersion, formatHlc, HybridClock, parseHlc, type Hlc } from '../src/hlc.js';

describe('HybridClock', () => {
  it('issues strictly increasing readings even when the wall clock stands still or goes back', () => {
    let wall = 1000;
    const clock = new HybridClock(60_000, () => wall);
    const seen: Hlc[] = [];
    for (const w of [1000, 1000, 1000, 999, 500, 1001, 1001]) {
      wall = w;
      seen.push(clock.now());
    }
    for (let i = 1; i < seen.length; i++) expect(compareHlc(seen[i] as Hlc, seen[i - 1] as Hlc)).toBeGreaterThan(0);
    expect(seen[0]).toEqual({ wall: 1000, counter: 0 });
    expect(seen[4]).toEqual({ wall: 1000, counter: 4 });
    expect(seen[5]).toEqual({ wall: 1001, counter: 0 });
  });

  it('moves to the next millisecond when the counter is exhausted', () => {
    const clock = new HybridClock(60_000, () => 5);
    let last = clock.now();
    for (let i = 0; i < 0x10000; i++) last = clock.now();
    expect(last).toEqual({ wall: 6, counter: 0 });
  });

  it('orders local readings after observed remote ones', () => {
    const clock = new HybridClock(60_000, () => 1000);
    clock.observe({ wall: 2000, counter: 7 });
    expect(clock.now()).toEqual({ wall: 2000, counter: 8 });
  });

  it('clamps a remote reading too far ahead and reports it', () => {
    const skews: Hlc[] = [];
    const clock = new HybridClock(100, () => 1000, (remote) => skews.push(remote));
    expect(clock.observe({ wall: 5000, counter: 1 })).toEqual({ wall: 1100, counter: 0 });
    expect(skews).toEqual([{ wall: 5000, counter: 1 }]);
    expect(clock.now()).toEqual({ wall: 1100, counter: 1 });
  });

  it('formats and parses the wire form', () => {
    expect(formatHlc({ wall: 0x0193a0b1c2d3, counter: 0 })).toBe('0193a0b1c2d3-0000');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), fc.integer({ min: 0, max: 0xffff }), (wall, counter) => {
        expect(parseHlc(formatHlc({ wall, counter }))).toEqual({ wall, counter });
      }),
    );
    expect(parseHlc('xyz')).toBeUndefined();
    expect(parseHlc('0193a0b1c2d3-00000')).toBeUndefined();
  });

  it('breaks clock ties by node id', () => {
    const a = { wall: 1, counter: 1, node: 'a' };
    const b = { wall: 1, counter: 1, node: 'b' };
    expect(compareVersion(a, b)).toBeLessThan(0);
    expect(compareVersion(b, a)).toBeGreaterThan(0);
    expect(compareVersion(a, { ...a })).toBe(0);
    expect(compareVersion({ ...a, counter: 2 }, b)).toBeGreaterThan(0);
  });
});
