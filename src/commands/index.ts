import type { Args } from '../protocol/args.js';
import type { Parser } from '../protocol/decode.js';
import type { Outcome } from '../protocol/dialect.js';
import type { Output } from '../protocol/output.js';
import type { Access, Session } from '../security/auth.js';
import { client, memory, replicate } from './admin.js';
import { aeDiff, aeGet, aePut, aeRange, aeRoot, aeScan } from './antientropy.js';
import { append, prepend } from './append.js';
import auth from './auth.js';
import { config } from './config.js';
import backup from './backup.js';
import type { Command, Context } from './context.js';
import dbsize from './dbsize.js';
import del from './del.js';
import echo from './echo.js';
import exists from './exists.js';
import { expire, persist } from './expire.js';
import get from './get.js';
import { aeHello, aeProve } from './handshake.js';
import hash from './hash.js';
import { dec, inc } from './incr.js';
import mget from './mget.js';
import mset from './mset.js';
import ping from './ping.js';
import quit from './quit.js';
import scan from './scan.js';
import set from './set.js';
import { sadd, scard, sismember, smembers, srem } from './sets.js';
import setex from './setex.js';
import sync from './sync.js';
import { info, stats } from './stats.js';
import truncate from './truncate.js';
import ttl from './ttl.js';
import version from './version.js';

/**
 * Every command, once: a command is its file and its line here. Its place in the list is its id, where
 * Stats counts it (STATS, /metrics), so a new command goes at the end.
 */
const COMMANDS = [
  auth,
  get,
  set,
  setex,
  expire,
  persist,
  ttl,
  del,
  inc,
  dec,
  append,
  prepend,
  sadd,
  srem,
  smembers,
  sismember,
  scard,
  mget,
  mset,
  exists,
  scan,
  dbsize,
  ping,
  echo,
  stats,
  info,
  version,
  truncate,
  hash,
  sync,
  memory,
  client,
  replicate,
  quit,
  aeHello,
  aeProve,
  aeRoot,
  aeDiff,
  aeGet,
  aePut,
  aeRange,
  aeScan,
  backup,
  config,
] as const;

/** Every request a client can make, discriminated by `kind`: what the commands' parsers return. */
export type Request = ReturnType<(typeof COMMANDS)[number]['parse']>;

/**
 * A command word's entry: its command, and the command's index in COMMAND_NAMES (aliases share it),
 * where Stats counts it. Built once per command at load.
 */
export class CommandEntry<R = Request> implements Parser<R> {
  readonly requires: string;
  /** What a connection must have proven to run it. */
  readonly access: Access;

  constructor(
    readonly command: Command<R>,
    readonly id: number,
  ) {
    this.requires = command.requires;
    this.access = command.access;
  }

  parse(args: Args): R {
    return this.command.parse(args);
  }

  /**
   * Parses the arguments and runs the command. Errors it throws become the request's `ERROR` reply
   * (commands/dialect.ts). One generic call: the request goes from the command's parser to its own
   * executor, the type checked for each command where it `satisfies Command<R>`.
   */
  run(args: Args, ctx: Context, out: Output, session: Session): Outcome {
    const command = this.command;
    return command.execute(command.parse(args), ctx, out, session);
  }
}

/** Each command's first name, indexed by CommandEntry.id. */
export const COMMAND_NAMES: readonly string[] = COMMANDS.map((cmd) => cmd.names[0] as string);

/** Command word (upper case) -> its entry. */
export const PARSERS: ReadonlyMap<string, CommandEntry> = entries(COMMANDS);

function entries(commands: readonly Command<Request>[]): Map<string, CommandEntry> {
  const byWord = new Map<string, CommandEntry>();
  commands.forEach((cmd, id) => {
    const entry = new CommandEntry(cmd, id);
    for (const name of cmd.names) {
      // A word listed twice would quietly run only one of its commands.
      if (byWord.has(name)) throw new TypeError(`command word ${name} is listed twice`);
      byWord.set(name, entry);
    }
  });
  return byWord;
}
