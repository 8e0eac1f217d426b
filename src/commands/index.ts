import type { Args } from '../protocol/args.js';
import type { Parser } from '../protocol/decode.js';
import type { Output } from '../protocol/output.js';
import type { Access, Session } from '../security/auth.js';
import type { AntiEntropyRequest } from '../antientropy/requests.js';
import { client, memory, replicate, type ClientListRequest, type MemoryRequest, type ReplicateRequest } from './admin.js';
import { aeGet, aeNodes, aePut, aeRoot } from './antientropy.js';
import { append, prepend, type AppendRequest } from './append.js';
import auth, { type AuthRequest } from './auth.js';
import type { Context, Outcome } from './context.js';
import dbsize, { type DbsizeRequest } from './dbsize.js';
import del, { type DelRequest } from './del.js';
import echo, { type EchoRequest } from './echo.js';
import exists, { type ExistsRequest } from './exists.js';
import { expire, persist, type ExpireRequest } from './expire.js';
import get, { type GetRequest } from './get.js';
import { aeHello, aeProve } from './handshake.js';
import hash, { type HashRequest } from './hash.js';
import { dec, inc, type IncrRequest } from './incr.js';
import mget, { type MgetRequest } from './mget.js';
import mset, { type MsetRequest } from './mset.js';
import ping, { type PingRequest } from './ping.js';
import quit, { type QuitRequest } from './quit.js';
import scan, { type ScanRequest } from './scan.js';
import set, { type SetRequest } from './set.js';
import { sadd, scard, sismember, smembers, srem, type MembersRequest } from './sets.js';
import setex, { type SetexRequest } from './setex.js';
import sync, { type SyncRequest } from './sync.js';
import { info, stats, type StatsRequest } from './stats.js';
import truncate, { type TruncateRequest } from './truncate.js';
import ttl, { type TtlRequest } from './ttl.js';
import version, { type VersionRequest } from './version.js';

/** Every request a client can make, discriminated by `kind`. */
export type Request =
  | AuthRequest
  | GetRequest
  | SetRequest
  | SetexRequest
  | ExpireRequest
  | TtlRequest
  | DelRequest
  | IncrRequest
  | MembersRequest
  | AppendRequest
  | MgetRequest
  | MsetRequest
  | ExistsRequest
  | ScanRequest
  | DbsizeRequest
  | PingRequest
  | EchoRequest
  | StatsRequest
  | VersionRequest
  | TruncateRequest
  | HashRequest
  | SyncRequest
  | MemoryRequest
  | ClientListRequest
  | ReplicateRequest
  | AntiEntropyRequest
  | QuitRequest;

const ALL = [auth, get, set, setex, expire, persist, ttl, del, inc, dec, append, prepend, sadd, srem, smembers, sismember, scard, mget, mset, exists, scan, dbsize, ping, echo, stats, info, version, truncate, hash, sync, memory, client, replicate, quit, aeHello, aeProve, aeRoot, aeNodes, aeGet, aePut];

/** A command word's parser, with what a connection must have proven to run it. */
export interface CommandParser extends Parser<Request> {
  readonly access: Access;
  /** The command's index in COMMAND_NAMES (aliases share it): where Stats counts it. */
  readonly id: number;
}

/** Each command's first name, indexed by CommandParser.id. */
export const COMMAND_NAMES: readonly string[] = ALL.map((cmd) => cmd.names[0] as string);

/** Command word (upper case) -> its parser. */
export const PARSERS: ReadonlyMap<string, CommandParser> = new Map(
  ALL.flatMap((cmd, id) =>
    cmd.names.map((name) => [name, { requires: cmd.requires, access: cmd.access, id, parse: (args: Args) => cmd.parse(args) }] as const),
  ),
);

/** Runs a parsed request. Errors it throws become the request's `ERROR` reply (server/connection.ts). */
export function execute(req: Request, ctx: Context, out: Output, session: Session): Outcome {
  switch (req.kind) {
    case 'auth':
      return auth.run(req, ctx, out, session);
    case 'get':
      return get.run(req, ctx, out);
    case 'set':
      return set.run(req, ctx, out);
    case 'setex':
      return setex.run(req, ctx, out);
    case 'expire':
      return expire.run(req, ctx, out);
    case 'ttl':
      return ttl.run(req, ctx, out);
    case 'del':
      return del.run(req, ctx, out);
    case 'incr':
      return inc.run(req, ctx, out);
    case 'append':
      return append.run(req, ctx, out);
    case 'sadd':
      return sadd.run(req, ctx, out);
    case 'srem':
      return srem.run(req, ctx, out);
    case 'smembers':
      return smembers.run(req, ctx, out);
    case 'sismember':
      return sismember.run(req, ctx, out);
    case 'scard':
      return scard.run(req, ctx, out);
    case 'mget':
      return mget.run(req, ctx, out);
    case 'mset':
      return mset.run(req, ctx, out);
    case 'exists':
      return exists.run(req, ctx, out);
    case 'scan':
      return scan.run(req, ctx, out);
    case 'dbsize':
      return dbsize.run(req, ctx, out);
    case 'ping':
      return ping.run(req, ctx, out);
    case 'echo':
      return echo.run(req, ctx, out);
    case 'stats':
      return stats.run(req, ctx, out);
    case 'version':
      return version.run(req, ctx, out);
    case 'truncate':
      return truncate.run(req, ctx, out);
    case 'hash':
      return hash.run(req, ctx, out);
    case 'sync':
      return sync.run(req, ctx, out);
    case 'ae.hello':
      return aeHello.run(req, ctx, out, session);
    case 'ae.prove':
      return aeProve.run(req, ctx, out, session);
    case 'ae.root':
      return aeRoot.run(req, ctx, out);
    case 'ae.nodes':
      return aeNodes.run(req, ctx, out);
    case 'ae.get':
      return aeGet.run(req, ctx, out);
    case 'ae.put':
      return aePut.run(req, ctx, out);
    case 'memory':
      return memory.run(req, ctx, out);
    case 'client list':
      return client.run(req, ctx, out);
    case 'replicate':
      return replicate.run(req, ctx, out);
    case 'quit':
      return quit.run();
    default:
      return unreachable(req);
  }
}

function unreachable(req: never): never {
  throw new TypeError(`unhandled request ${JSON.stringify(req)}`);
}
