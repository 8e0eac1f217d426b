import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { increment, parseInt64 } from '../store/index.js';
import type { Command, Context } from './context.js';
import { WRONG_KIND } from './kinds.js';

export interface IncrRequest {
  readonly kind: 'incr';
  readonly key: Buffer;
  /** Signed amount: DEC negates it at parse time. */
  readonly delta: bigint;
}

function parser(sign: 1n | -1n) {
  return (args: Args): IncrRequest => {
    const key = args.key();
    const word = args.word();
    args.end();
    let amount = 1n;
    if (word !== undefined) {
      const n = parseInt64(word.toString('latin1'));
      if (n === undefined) throw args.usage();
      amount = n;
    }
    return { kind: 'incr', key, delta: sign * amount };
  };
}

/** A PN-counter (DESIGN.md section 4): increments on every node add up after replication. */
function execute(req: IncrRequest, ctx: Context, out: Output): undefined {
  const result = increment(ctx.store, req.key, req.delta);
  if (result === 'wrongtype') throw new ProtocolError(WRONG_KIND);
  if (result === 'not-a-number') throw new ProtocolError(`Value for key '${req.key.toString('utf8')}' is not a valid number`);
  if (result === 'overflow') throw new ProtocolError('increment or decrement would overflow');
  ctx.stats.writes++;
  // A read-modify-write: its reply shows the new value, which waits as the write does.
  out.line(`VALUE ${result.value}`);
  out.dependOn(result.after);
}

const requires = 'a key and an optional integer amount';

export const inc = {
  names: ['INC', 'INCR'],
  access: 'write',
  requires,
  parse: parser(1n),
  execute,
} as const satisfies Command<IncrRequest>;

export const dec = {
  names: ['DEC', 'DECR'],
  access: 'write',
  requires,
  parse: parser(-1n),
  execute,
} as const satisfies Command<IncrRequest>;
