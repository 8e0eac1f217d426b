import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface IncrRequest {
  readonly kind: 'incr';
  readonly key: Buffer;
  /** Signed amount: DEC negates it at parse time. */
  readonly delta: bigint;
}

// Values are signed 64-bit integers, as in the reference implementation and Redis.
const MIN = -(2n ** 63n);
const MAX = 2n ** 63n - 1n;
const INTEGER = /^[+-]?\d{1,19}$/;

function parseInteger(text: string): bigint | undefined {
  if (!INTEGER.test(text)) return undefined;
  const n = BigInt(text);
  return n >= MIN && n <= MAX ? n : undefined;
}

function parser(sign: 1n | -1n) {
  return (args: Args): IncrRequest => {
    const key = args.key();
    const word = args.word();
    args.end();
    let amount = 1n;
    if (word !== undefined) {
      const n = parseInteger(word.toString('latin1'));
      if (n === undefined) throw args.usage();
      amount = n;
    }
    return { kind: 'incr', key, delta: sign * amount };
  };
}

function run(req: IncrRequest, ctx: Context, out: Output): undefined {
  // A read-modify-write: its reply shows the new value, which waits as the write does.
  const current = ctx.store.readValue(req.key).value;
  let base = 0n;
  if (current !== undefined) {
    const n = parseInteger(current.toString('latin1'));
    if (n === undefined) {
      throw new ProtocolError(`Value for key '${req.key.toString('utf8')}' is not a valid number`);
    }
    base = n;
  }
  const next = base + req.delta;
  if (next < MIN || next > MAX) {
    throw new ProtocolError(`increment or decrement would overflow the value of key '${req.key.toString('utf8')}'`);
  }
  ctx.stats.writes++;
  const text = next.toString();
  const done = ctx.store.set(req.key, Buffer.from(text, 'latin1'));
  out.line(`VALUE ${text}`);
  out.dependOn(done);
}

const requires = 'a key and an optional integer amount';

export const inc = {
  names: ['INC', 'INCR'],
  access: 'write',
  requires,
  parse: parser(1n),
  run,
} as const satisfies Command<IncrRequest>;

export const dec = {
  names: ['DEC', 'DECR'],
  access: 'write',
  requires,
  parse: parser(-1n),
  run,
} as const satisfies Command<IncrRequest>;
