import { createHash } from 'node:crypto';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { listMembers, type Store } from '../store/index.js';
import type { Command, Context } from './context.js';

export interface HashRequest {
  readonly kind: 'hash';
  /** Undefined: the Merkle root. */
  readonly prefix: Buffer | undefined;
}

export default {
  names: ['HASH'],
  access: 'read',
  requires: 'at most one prefix',
  parse(args: Args): HashRequest {
    const prefix = args.done ? undefined : args.key();
    args.end();
    return { kind: 'hash', prefix };
  },
  execute(req: HashRequest, ctx: Context, out: Output): undefined {
    if (req.prefix === undefined) out.line(`HASH ${ctx.store.rootHash().toString('hex')}`);
    else out.bytesLine('HASH ', req.prefix, ` ${contentDigest(ctx.store, req.prefix).toString('hex')}`);
    out.dependOn(ctx.store.acknowledgedAfter());
  },
} as const satisfies Command<HashRequest>;

/**
 * `HASH <prefix>`, as the reference project answers it: SHA-256 over the live keys under the prefix
 * and what GET (or SMEMBERS) shows for each, in key order. Unlike the Merkle root it leaves out
 * versions, tombstones and expiry times, so replicas that hold the same content agree on it however
 * they came to hold it; and it reads every key under the prefix, where the root costs nothing.
 */
export function contentDigest(store: Store, prefix: Buffer): Buffer {
  const hash = createHash('sha256');
  const field = (bytes: Buffer): void => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    hash.update(len).update(bytes);
  };
  for (const key of store.scan(prefix)) {
    const { value } = store.readValue(key);
    if (value === undefined) continue;
    if (value === 'set') {
      const members = listMembers(store, key);
      if (members === 'wrongtype') continue;
      hash.update(SET_TAG);
      field(key);
      field(Buffer.from(String(members.value.length)));
      for (const m of members.value) field(m);
    } else {
      hash.update(VALUE_TAG);
      field(key);
      field(value);
    }
  }
  return hash.digest();
}

const VALUE_TAG = Buffer.from('v');
const SET_TAG = Buffer.from('s');
