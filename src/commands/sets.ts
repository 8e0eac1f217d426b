import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { addMembers, addMembersGrowth, countMembers, hasMember, listMembers, memberProblem, removeMembers, type SetResult } from '../store/index.js';
import type { Command, Context } from './context.js';
import { WRONG_KIND } from './kinds.js';

/** SADD, SREM, SMEMBERS, SISMEMBER, SCARD: an add-wins set (DESIGN.md sections 2 and 4; store/setops.ts). */
export interface MembersRequest {
  readonly kind: 'sadd' | 'srem' | 'smembers' | 'sismember' | 'scard';
  readonly key: Buffer;
  readonly members: readonly Buffer[];
}

/** A key, then `min`..`max` members, each following the key rules (and fitting beside the key). */
function parser(kind: MembersRequest['kind'], min: number, max: number) {
  return (args: Args): MembersRequest => {
    const key = args.key();
    const members: Buffer[] = [];
    while (members.length < max) {
      const member = args.word();
      if (member === undefined) break;
      const problem = memberProblem(key, member, args.limits);
      if (problem !== undefined) throw new ProtocolError(problem);
      members.push(member);
    }
    args.end();
    if (members.length < min) throw args.usage();
    return { kind, key, members };
  };
}

/** The result, or WRONGTYPE; its durability wait goes on the reply. */
function settle<T>(result: SetResult<T>, out: Output): T {
  if (result === 'wrongtype') throw new ProtocolError(WRONG_KIND);
  out.dependOn(result.after);
  return result.value;
}

export const sadd = {
  names: ['SADD'],
  access: 'write',
  requires: 'a key and at least one member',
  parse: parser('sadd', 1, Infinity),
  execute(req: MembersRequest, ctx: Context, out: Output): undefined {
    // Refused whole, before any write, if the members could take the data past memory_limit_mb.
    if (ctx.capacity.limitBytes > 0) ctx.capacity.admit(addMembersGrowth(ctx.store, req.key, req.members));
    const added = settle(addMembers(ctx.store, req.key, req.members), out);
    ctx.stats.writes++;
    out.line(`SADD ${added}`);
  },
} as const satisfies Command<MembersRequest>;

export const srem = {
  names: ['SREM'],
  access: 'write',
  requires: 'a key and at least one member',
  parse: parser('srem', 1, Infinity),
  execute(req: MembersRequest, ctx: Context, out: Output): undefined {
    const removed = settle(removeMembers(ctx.store, req.key, req.members), out);
    ctx.stats.writes++;
    out.line(`SREM ${removed}`);
  },
} as const satisfies Command<MembersRequest>;

export const smembers = {
  names: ['SMEMBERS'],
  access: 'read',
  requires: 'exactly one key',
  parse: parser('smembers', 0, 0),
  execute(req: MembersRequest, ctx: Context, out: Output): undefined {
    const members = settle(listMembers(ctx.store, req.key), out);
    out.line(`MEMBERS ${members.length}`);
    for (const m of members) out.bytesLine('', m);
  },
} as const satisfies Command<MembersRequest>;

export const sismember = {
  names: ['SISMEMBER'],
  access: 'read',
  requires: 'a key and a member',
  parse: parser('sismember', 1, 1),
  execute(req: MembersRequest, ctx: Context, out: Output): undefined {
    const found = settle(hasMember(ctx.store, req.key, req.members[0] as Buffer), out);
    out.line(found ? '1' : '0');
  },
} as const satisfies Command<MembersRequest>;

export const scard = {
  names: ['SCARD'],
  access: 'read',
  requires: 'exactly one key',
  parse: parser('scard', 0, 0),
  execute(req: MembersRequest, ctx: Context, out: Output): undefined {
    out.line(`SCARD ${settle(countMembers(ctx.store, req.key), out)}`);
  },
} as const satisfies Command<MembersRequest>;
