/**
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): 48 bits of wall-clock
 * milliseconds and a 16-bit counter (DESIGN.md section 4). Two numbers, because 64 bits do not fit
 * in a JavaScript number.
 */
export interface Hlc {
  readonly wall: number;
  readonly counter: number;
}

/** A record's version: the clock reading and the node that wrote it. Ordered by (hlc, node). */
export interface Version extends Hlc {
  readonly node: string;
}

const MAX_WALL = 2 ** 48 - 1;
const MAX_COUNTER = 0xffff;

export class HybridClock {
  private wall = 0;
  private counter = 0;

  /**
   * @param maxSkewMs remote readings further ahead of our physical clock than this are clamped
   * @param physical milliseconds since the epoch; injectable for tests
   * @param onSkew told of each clamped remote reading, so the caller can log it
   */
  constructor(
    private readonly maxSkewMs: number,
    private readonly physical: () => number = Date.now,
    private readonly onSkew: (remote: Hlc, limit: number) => void = () => {},
  ) {}

  /** A new reading, strictly greater than every reading this clock has issued or observed. */
  now(): Hlc {
    this.tick();
    return { wall: this.wall, counter: this.counter };
  }

  /** A new reading (see now()) as the version of a write made by `node`. */
  stamp(node: string): Version {
    this.tick();
    return { wall: this.wall, counter: this.counter, node };
  }

  private tick(): void {
    const pt = this.physical();
    if (pt > this.wall) {
      this.wall = pt;
      this.counter = 0;
    } else if (this.counter < MAX_COUNTER) {
      this.counter++;
    } else {
      // The counter is exhausted within one millisecond: borrow the next millisecond rather than stall.
      this.wall++;
      this.counter = 0;
    }
  }

  /**
   * Merges a remote reading so that later local readings order after it. A reading more than
   * `maxSkewMs` ahead of the physical clock is clamped to that bound: a peer with a runaway clock
   * must not drag every replica's clock into the future. Returns the reading as merged.
   */
  observe(remote: Hlc): Hlc {
    const limit = this.physical() + this.maxSkewMs;
    let r = remote;
    if (r.wall > limit) {
      this.onSkew(remote, limit);
      r = { wall: limit, counter: 0 };
    }
    if (r.wall > this.wall || (r.wall === this.wall && r.counter > this.counter)) {
      this.wall = r.wall;
      this.counter = r.counter;
    }
    return r;
  }
}

export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wall - b.wall || a.counter - b.counter;
}

/** Last-writer-wins order: clock first, node id as the tie-break so every replica picks the same winner. */
export function compareVersion(a: Version, b: Version): number {
  const byClock = compareHlc(a, b);
  if (byClock !== 0) return byClock;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

/** `0193a0b1c2d3-0000`: the wire form used in replication messages. */
export function formatHlc(h: Hlc): string {
  return `${h.wall.toString(16).padStart(12, '0')}-${h.counter.toString(16).padStart(4, '0')}`;
}

export function parseHlc(text: string): Hlc | undefined {
  const m = /^([0-9a-f]{12})-([0-9a-f]{4})$/.exec(text);
  if (m === null) return undefined;
  const wall = parseInt(m[1] as string, 16);
  const counter = parseInt(m[2] as string, 16);
  return wall <= MAX_WALL && counter <= MAX_COUNTER ? { wall, counter } : undefined;
}
