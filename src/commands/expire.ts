import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { expire as setExpiry } from '../store/index.js';
import type { Command, Context } from './context.js';
import { parseSeconds } from './kinds.js';

export interface ExpireRequest {
  readonly kind: 'expire';
  readonly key: Buffer;
  /** undefined: PERSIST. */
  readonly seconds: number | undefined;
}

function execute(req: ExpireRequest, ctx: Context, out: Output): undefined {
  let done;
  if (req.seconds !== undefined && req.seconds <= 0) {
    // As in Redis: a TTL already over deletes the key.
    const held = ctx.store.readValue(req.key).value !== undefined;
    done = held ? ctx.store.delete(req.key) : undefined;
  } else {
    done = setExpiry(ctx.store, req.key, req.seconds === undefined ? 0 : Date.now() + req.seconds * 1000);
  }
  if (done === undefined) {
    out.line('NOT_FOUND');
    return;
  }
  ctx.stats.writes++;
  out.line('OK');
  out.dependOn(done);
}

export const expire = {
  names: ['EXPIRE'],
  access: 'write',
  requires: 'a key and a number of seconds',
  parse(args: Args): ExpireRequest {
    const key = args.key();
    const seconds = parseSeconds(args, false);
    args.end();
    return { kind: 'expire', key, seconds };
  },
  execute,
} as const satisfies Command<ExpireRequest>;

export const persist = {
  names: ['PERSIST'],
  access: 'write',
  requires: 'exactly one key',
  parse(args: Args): ExpireRequest {
    const key = args.key();
    args.end();
    return { kind: 'expire', key, seconds: undefined };
  },
  execute,
} as const satisfies Command<ExpireRequest>;
