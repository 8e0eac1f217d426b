import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import { checkValue } from '../rules.js';
import { expiresAt, setWithExpiry } from '../store/index.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';
import { WRONG_KIND } from './kinds.js';

export interface AppendRequest {
  readonly kind: 'append';
  readonly key: Buffer;
  readonly value: Buffer;
  readonly prepend: boolean;
}

function parser(prepend: boolean) {
  return (args: Args): AppendRequest => {
    const key = args.key();
    return { kind: 'append', key, value: args.value(), prepend };
  };
}

function execute(req: AppendRequest, ctx: Context, out: Output): undefined {
  // A read-modify-write: its reply shows the new value, which waits as the write does.
  const current = ctx.store.readValue(req.key).value;
  if (current === 'set') throw new ProtocolError(WRONG_KIND);
  let next = req.value;
  if (current !== undefined) {
    next = req.prepend ? Buffer.concat([req.value, current]) : Buffer.concat([current, req.value]);
  }
  checkValue(next, ctx.limits);
  ctx.stats.writes++;
  // A new value (a new epoch, so a counter becomes plain text); like Redis, it keeps the key's expiry.
  const at = current === undefined ? 0 : expiresAt(ctx.store, req.key);
  const done = at === 0 ? ctx.store.set(req.key, next) : setWithExpiry(ctx.store, req.key, next, at);
  out.bytesLine('VALUE ', next);
  out.dependOn(done);
}

export const append = {
  names: ['APPEND'],
  access: 'write',
  requires: 'a key and a value',
  parse: parser(false),
  execute,
} as const satisfies Command<AppendRequest>;

export const prepend = {
  names: ['PREPEND'],
  access: 'write',
  requires: 'a key and a value',
  parse: parser(true),
  execute,
} as const satisfies Command<AppendRequest>;
