import { readFileSync } from 'node:fs';
import { parse as parseToml, TomlError } from 'smol-toml';
import { ConfigError } from '../errors.js';
import { isWord, MAX_NODE_ID_BYTES, nodeIdProblem, parsePeer } from '../rules.js';
import { type Config, type Field, FIELDS, envName, ROLES, type Role, type UserConfig } from './schema.js';

/** Where the config comes from, lowest precedence first: defaults < file < environment < flags. */
export interface ConfigSources {
  /** Path of a TOML file. */
  readonly file?: string | undefined;
  /** Usually `process.env`; only `MERKLE_KV_*` names are read. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Command-line overrides by dotted path, as the strings the user typed. */
  readonly flags?: Readonly<Record<string, string | undefined>>;
}

type Values = Map<string, unknown>;

/** Builds the effective configuration; throws `ConfigError` naming the source and key of any problem. */
export function loadConfig(sources: ConfigSources): Config {
  const values: Values = new Map(Object.entries(FIELDS).map(([path, f]) => [path, f.default]));
  if (sources.file !== undefined) readFile(sources.file, values);
  for (const [name, raw] of Object.entries(sources.env ?? {})) {
    if (!name.startsWith('MERKLE_KV_') || raw === undefined) continue;
    const path = ENV_PATHS.get(name);
    if (path === undefined) throw new ConfigError(`unknown environment variable ${name}`);
    values.set(path, fromString(path, raw, `environment variable ${name}`));
  }
  for (const [path, raw] of Object.entries(sources.flags ?? {})) {
    if (raw === undefined) continue;
    if (FIELDS[path] === undefined) throw new ConfigError(`unknown setting ${path}`);
    values.set(path, fromString(path, raw, 'command-line flag'));
  }
  return finish(values);
}

const ENV_PATHS = new Map(Object.keys(FIELDS).map((path) => [envName(path), path]));

function readFile(file: string, values: Values): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(`cannot read config file ${file}: ${why}`, { cause: err });
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0] ?? 'syntax error';
      throw new ConfigError(`${file}: TOML syntax error at line ${err.line}, column ${err.column}: ${first}`, {
        cause: err,
      });
    }
    throw err;
  }
  walk(doc, '', file, values);
}

function walk(table: Record<string, unknown>, prefix: string, file: string, values: Values): void {
  for (const [key, value] of Object.entries(table)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    const field = FIELDS[path];
    if (field !== undefined) {
      values.set(path, checkTyped(path, field, value, `${file}: ${path}`));
    } else if (isTable(value) && Object.keys(FIELDS).some((p) => p.startsWith(`${path}.`))) {
      walk(value, path, file, values);
    } else {
      throw new ConfigError(`${file}: unknown key '${path}'`);
    }
  }
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Checks a TOML value against its field. `where` names the source and key for the message. */
function checkTyped(path: string, field: Field, value: unknown, where: string): unknown {
  const fail = (expected: string): never => {
    throw new ConfigError(`${where} must be ${expected}, got ${JSON.stringify(value) ?? typeof value}`);
  };
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') return fail('a string');
      if (field.nonEmpty === true && value === '') return fail('a non-empty string');
      return value;
    case 'int': {
      const n = typeof value === 'bigint' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail('an integer');
      if (n < field.min || n > field.max) return fail(`in ${field.min}..${field.max}`);
      return n;
    }
    case 'bool':
      return typeof value === 'boolean' ? value : fail('true or false');
    case 'strings':
      if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) return fail('an array of strings');
      return value;
    case 'enum':
      if (typeof value !== 'string' || !field.values.includes(value)) return fail(`one of ${field.values.join(', ')}`);
      return value;
    case 'users':
      return checkUsers(value, where);
    default:
      return assertNever(field, path);
  }
}

/** Converts an environment or flag string to the field's type, then checks it like a file value. */
function fromString(path: string, raw: string, where: string): unknown {
  const field = FIELDS[path];
  if (field === undefined) throw new ConfigError(`unknown setting ${path}`);
  let value: unknown = raw;
  if (field.type === 'int' && /^-?\d{1,15}$/.test(raw.trim())) value = Number(raw.trim());
  if (field.type === 'bool') {
    const lower = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(lower)) value = true;
    if (['false', '0', 'no', 'off'].includes(lower)) value = false;
  }
  if (field.type === 'users') {
    try {
      value = JSON.parse(raw);
    } catch {
      throw new ConfigError(`${where} must be JSON such as {"alice":{"password":"...","role":"write"}}`);
    }
  }
  if (field.type === 'strings') {
    value = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }
  return checkTyped(path, field, value, `${where} (${path})`);
}

function finish(values: Values): Config {
  const get = <T>(path: string): T => values.get(path) as T;
  const nodeId = get<string>('node_id');
  if (nodeId === '') {
    throw new ConfigError('node_id is required: set it in the config file, MERKLE_KV_NODE_ID or --node-id');
  }
  const config: Record<string, unknown> = {};
  for (const [path, value] of values) {
    const parts = path.split('.');
    let table = config;
    for (const part of parts.slice(0, -1)) table = (table[part] ??= {}) as Record<string, unknown>;
    table[parts[parts.length - 1] as string] = value;
  }
  const result = config as unknown as Config;
  check(result);
  if (result.mqtt.client_id === '') result.mqtt.client_id = nodeId;
  // A cache node keeps its data in a temporary directory (node.ts): `path` stays as set, '' if it was not.
  if (result.storage.path === '' && result.storage.persistence_enabled) result.storage.path = `./data/${nodeId}`;
  if (result.storage.backup_path === '') result.storage.backup_path = `./backups/${nodeId}`;
  return result;
}

function assertNever(x: never, path: string): never {
  throw new ConfigError(`internal: unhandled field type for ${path}: ${JSON.stringify(x)}`);
}

/** `[security.users.<name>]` tables: a password and a role each; names are single words (AUTH name password). */
function checkUsers(value: unknown, where: string): Record<string, UserConfig> {
  if (!isTable(value)) throw new ConfigError(`${where} must be a table of users, each with a password and a role`);
  const users: Record<string, UserConfig> = {};
  for (const [name, user] of Object.entries(value)) {
    const at = `${where}.${name}`;
    if (!isWord(name)) throw new ConfigError(`${at}: a user name must be one word with no control characters`);
    if (!isTable(user)) throw new ConfigError(`${at} must be a table with password and role`);
    const extra = Object.keys(user).filter((k) => k !== 'password' && k !== 'role');
    if (extra.length > 0) throw new ConfigError(`${at}: unknown key '${extra[0]}'`);
    if (typeof user.password !== 'string' || user.password === '') throw new ConfigError(`${at}.password must be a non-empty string`);
    if (typeof user.role !== 'string' || !(ROLES as readonly string[]).includes(user.role)) {
      throw new ConfigError(`${at}.role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(user.role)}`);
    }
    users[name] = { password: user.password, role: user.role as Role };
  }
  return users;
}

/** Checks that span more than one field's type and range. */
function check(c: Config): void {
  const problem = nodeIdProblem(c.node_id);
  if (problem !== undefined) {
    throw new ConfigError(`node_id ${problem}: it must be 1..${MAX_NODE_ID_BYTES} bytes of UTF-8 with no spaces or control characters`);
  }
  if (c.anti_entropy.segment_bits % 4 !== 0) {
    throw new ConfigError(`anti_entropy.segment_bits must be a multiple of 4 (4, 8, 12, 16 or 20), got ${c.anti_entropy.segment_bits}`);
  }
  const tls = c.network.tls;
  if (tls.enabled && (tls.cert_file === '' || tls.key_file === '')) {
    throw new ConfigError('network.tls.enabled needs network.tls.cert_file and network.tls.key_file');
  }
  if (c.mqtt.password !== '' && c.mqtt.username === '') {
    throw new ConfigError('mqtt.password is set without mqtt.username');
  }
  for (const peer of c.anti_entropy.peer_list) checkPeer('anti_entropy.peer_list', peer);
  if (c.network.advertise_address !== '') checkPeer('network.advertise_address', c.network.advertise_address);
}

/** An address anti-entropy dials, as `parsePeer` takes it; one word, so that a presence status can carry it. */
function checkPeer(key: string, address: string): void {
  try {
    parsePeer(address);
  } catch (err) {
    throw new ConfigError(`${key}: ${(err as Error).message}`);
  }
  if (!isWord(address)) throw new ConfigError(`${key}: an address has no spaces or control characters, got ${JSON.stringify(address)}`);
}
