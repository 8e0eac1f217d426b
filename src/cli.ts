#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import type { Logger } from 'pino';
import { effectiveConfig } from './cli/check.js';
import { DEFAULT_HISTORY, runInteractive, runOnce, type ClientOptions } from './cli/client.js';
import { loadConfig, type ConfigSources } from './config/load.js';
import { FSYNC_MODES, LOG_LEVELS } from './config/schema.js';
import { ConfigError, ErrorCode } from './errors.js';
import { createLogger } from './log.js';
import { startNode, type RunningNode } from './node.js';
import { VERSION } from './version.js';

/** Exit code of every start-up error the user can fix (DESIGN.md section 3). */
const EXIT_USAGE = 2;

/** What the command line asked for, once parsed. */
type Action =
  | { readonly kind: 'serve' }
  | { readonly kind: 'cli'; readonly words: string[]; readonly opts: CliFlags }
  | { readonly kind: 'check-config'; readonly file: string };
let action: Action = { kind: 'serve' };

const program = new Command()
  .name('merkle-kv')
  .description('A replicated key-value server: line protocol over TCP, LMDB storage.')
  .version(VERSION, '-V, --version')
  // Options after a subcommand's name are that subcommand's (cli has its own --port).
  .enablePositionalOptions()
  .option('-c, --config <file>', 'TOML configuration file')
  .option('--node-id <id>', 'node id, unique in the cluster (node_id)')
  .option('--bind <address>', 'address to listen on (network.bind_address)')
  .option('-p, --port <port>', 'client port (network.bind_port)')
  .option('--data-dir <path>', 'LMDB directory (storage.path)')
  .addOption(new Option('--fsync <mode>', 'when OK is sent: once the write is in the OS, or on disk (storage.fsync)').choices(FSYNC_MODES))
  .addOption(new Option('--log-level <level>', 'logging.level').choices(LOG_LEVELS))
  .addOption(new Option('--log-format <format>', 'logging.format').choices(['json', 'text']))
  .option('--log-file <path>', 'log to this file instead of stderr (logging.file_path)')
  .addHelpText(
    'after',
    '\nPrecedence: built-in defaults < config file < MERKLE_KV_* environment < flags.\n' +
      'Example: merkle-kv --config configs/node1.toml --port 7900\n' +
      '         merkle-kv cli GET user:1\n' +
      '         merkle-kv check-config configs/node1.toml',
  )
  .exitOverride()
  .action(() => {
    action = { kind: 'serve' };
  });

program
  .command('cli')
  .description('talk to a node: an interactive prompt, or the one command given (exit code 1 on ERROR)')
  .argument('[command...]', 'a command to run, e.g. GET user:1')
  .option('--host <host>', 'node address', '127.0.0.1')
  .option('-p, --port <port>', 'node client port', '7878')
  .option('--user <name>', 'AUTH as this user (with --password)')
  .option('-a, --password <password>', 'AUTH with this password first')
  .option('--tls', 'connect over TLS')
  .option('--cacert <file>', 'with --tls: trust this CA bundle instead of the system roots')
  .option('--raw', 'print replies as the protocol sends them')
  .option('--history <file>', 'history of the interactive prompt', DEFAULT_HISTORY)
  .option('--no-history', 'keep no history')
  // Everything after the command word is the command's: `cli SYNC h p --verify`.
  .passThroughOptions()
  .exitOverride()
  .action((words: string[], opts: CliFlags) => {
    action = { kind: 'cli', words, opts };
  });

program
  .command('check-config')
  .description('validate a configuration file; print the effective configuration, secrets masked')
  .argument('<file>', 'TOML configuration file')
  .exitOverride()
  .action((file: string) => {
    action = { kind: 'check-config', file };
  });

interface CliFlags {
  host: string;
  port: string;
  user?: string;
  password?: string;
  tls?: boolean;
  cacert?: string;
  raw?: boolean;
  history: string | false;
}

interface Flags {
  config?: string;
  nodeId?: string;
  bind?: string;
  port?: string;
  dataDir?: string;
  fsync?: string;
  logLevel?: string;
  logFormat?: string;
  logFile?: string;
}

async function main(): Promise<void> {
  try {
    program.parse(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
    }
    throw err;
  }
  if (action.kind === 'cli') return process.exit(await runClient(action.words, action.opts));
  if (action.kind === 'check-config') return checkConfig(action.file);
  const flags = program.opts<Flags>();
  // Read again on every reload (SIGHUP, CONFIG RELOAD): the file, the environment, and the same flags, which still win.
  const sources: ConfigSources = {
    file: flags.config,
    env: process.env,
    flags: {
      node_id: flags.nodeId,
      'network.bind_address': flags.bind,
      'network.bind_port': flags.port,
      'storage.path': flags.dataDir,
      'storage.fsync': flags.fsync,
      'logging.level': flags.logLevel,
      'logging.format': flags.logFormat,
      'logging.file_path': flags.logFile,
    },
  };
  let config;
  try {
    config = loadConfig(sources);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`merkle-kv: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    throw err;
  }

  const log = createLogger(config.logging, { node: config.node_id });
  const { logger } = log;
  skewClockForTests(logger);
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    void log.close().finally(() => process.exit(1));
  });
  // lmdb rejects every write of a failed commit (a full disk), also writes whose promises nobody holds;
  // the overlay retries the batch (the write-ahead log keeps it), so such a rejection is logged, not
  // fatal. Anything else still ends the process as an uncaught exception.
  process.on('unhandledRejection', (reason) => {
    if (reason instanceof Error && 'commitError' in reason) {
      logger.error({ err: reason }, 'unhandled rejection (not fatal)');
      return;
    }
    throw reason;
  });

  // Signals are handled from before the node starts: one that arrives while it starts up stops it as
  // soon as it is up, instead of killing it half-open.
  let node: RunningNode | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopSignal = signal;
    if (node !== undefined) shutDown(node, signal);
  };
  const shutDown = (running: RunningNode, signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'shutting down');
    running
      .stop()
      .then(() => log.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          void log.close().finally(() => process.exit(1));
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // SIGHUP reloads the configuration (Node's default would end the process: a closed terminal, a
  // supervisor's reload); one that arrives while the node starts is done once it is up.
  let reloadWanted = false;
  process.on('SIGHUP', () => {
    if (stopSignal !== undefined) return;
    if (node === undefined) reloadWanted = true;
    else reloadOn(node, logger);
  });

  try {
    node = await startNode(config, logger, { load: () => loadConfig(sources) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    logger.fatal({ err }, 'cannot start');
    await log.close();
    process.stderr.write(`merkle-kv: cannot start: ${e.message}\n`);
    // What the operator must fix (a port or a data directory taken, no permission) is a usage error.
    process.exit(e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === ErrorCode.DirectoryInUse ? EXIT_USAGE : 1);
  }
  if (stopSignal !== undefined) shutDown(node, stopSignal);
  else if (reloadWanted) reloadOn(node, logger);
}

/** SIGHUP: the node reloads its configuration, and logs what came of it. */
function reloadOn(node: RunningNode, logger: Logger): void {
  logger.info({ signal: 'SIGHUP' }, 'reloading the configuration');
  node.reload();
}

/**
 * For fault-injection tests only: `MERKLEKV_TEST_CLOCK_SKEW_MS=<ms>` makes this process's wall clock
 * (Date.now) run that far ahead (or behind, negative) of the machine's, as on a host whose clock is off.
 * Not a MERKLE_KV_* setting: no configuration file can turn it on.
 */
function skewClockForTests(logger: Logger): void {
  const raw = process.env.MERKLEKV_TEST_CLOCK_SKEW_MS;
  if (raw === undefined || raw === '') return;
  const skew = Number(raw);
  if (!Number.isSafeInteger(skew)) throw new ConfigError(`MERKLEKV_TEST_CLOCK_SKEW_MS must be an integer, got '${raw}'`);
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + skew;
  logger.warn({ skewMs: skew }, 'TEST ONLY: this process runs with a skewed wall clock (MERKLEKV_TEST_CLOCK_SKEW_MS)');
}

/** `merkle-kv cli ...`: its exit code. */
async function runClient(words: string[], f: CliFlags): Promise<number> {
  const port = /^[0-9]{1,5}$/.test(f.port) ? Number(f.port) : 0;
  if (port < 1 || port > 65535) {
    process.stderr.write(`merkle-kv cli: --port must be in 1..65535\n`);
    return EXIT_USAGE;
  }
  const opts: ClientOptions = {
    host: f.host,
    port,
    user: f.user,
    password: f.password,
    tls: f.tls === true,
    cacert: f.cacert,
    raw: f.raw === true,
    history: f.history === false ? '' : f.history,
  };
  return words.length > 0 ? runOnce(opts, words) : runInteractive(opts);
}

/** `merkle-kv check-config f.toml`: exit 0 and the effective configuration, or 2 and why not. */
function checkConfig(file: string): void {
  try {
    const text = effectiveConfig(file, process.env);
    process.stdout.write(`# ${file}: valid. Effective configuration (defaults, file, MERKLE_KV_* environment), secrets masked:\n${text}\n`);
    process.exit(0);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`merkle-kv: ${err.message}\n`);
    process.exit(EXIT_USAGE);
  }
}

await main();
