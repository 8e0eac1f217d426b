import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';

function file(text: string): string {
  const path = join(tempDir(), 'node.toml');
  writeFileSync(path, text);
  return path;
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('fills defaults and derives client id and data path from node_id', () => {
    const c = loadConfig({ flags: { node_id: 'n7' } });
    expect(c.network).toEqual({
      bind_address: '127.0.0.1',
      bind_port: 7878,
      max_connections: 1000,
      connection_timeout: 30,
      advertise_address: '',
      tls: { enabled: false, cert_file: '', key_file: '', ca_file: '' },
    });
    expect(c.anti_entropy.discover_peers).toBe(true);
    expect(c.mqtt.client_id).toBe('n7');
    expect(c.mqtt.embedded.port).toBe(1883);
    expect(c.storage.path).toBe('./data/n7');
    expect(c.storage.max_value_bytes).toBe(1_048_576);
    expect(c.logging).toEqual({ level: 'info', format: 'json', file_path: '' });
  });

  it('reads [network.tls] and the MQTT credentials, and refuses a password without a user name', () => {
    const path = file(`node_id = "t"\n[network.tls]\nenabled = true\ncert_file = "c.pem"\nkey_file = "k.pem"\n[mqtt]\nusername = "u"\npassword = "p"\nca_file = "ca.pem"\n`);
    const c = loadConfig({ file: path, env: { MERKLE_KV_NETWORK_TLS_CA_FILE: 'clients.pem' } });
    expect(c.network.tls).toEqual({ enabled: true, cert_file: 'c.pem', key_file: 'k.pem', ca_file: 'clients.pem' });
    expect([c.mqtt.username, c.mqtt.password, c.mqtt.ca_file]).toEqual(['u', 'p', 'ca.pem']);
    expect(() => loadConfig({ flags: { node_id: 't', 'mqtt.password': 'p' } })).toThrow('mqtt.password is set without mqtt.username');
  });

  it('applies defaults < file < environment < flags', () => {
    const path = file(`node_id = "from-file"\n[network]\nbind_port = 7001\nbind_address = "127.0.0.2"\n[logging]\nlevel = "debug"\n`);
    const env = { MERKLE_KV_NETWORK_BIND_PORT: '7002', MERKLE_KV_LOGGING_LEVEL: 'warn', HOME: '/x' };
    const c = loadConfig({ file: path, env, flags: { 'network.bind_port': '7003' } });
    expect(c.node_id).toBe('from-file');
    expect(c.network.bind_address).toBe('127.0.0.2');
    expect(c.logging.level).toBe('warn');
    expect(c.network.bind_port).toBe(7003);
    expect(loadConfig({ file: path, env }).network.bind_port).toBe(7002);
    expect(loadConfig({ file: path }).network.bind_port).toBe(7001);
  });

  it('reads nested tables, arrays and booleans, from the file and from the environment', () => {
    const path = file(
      `node_id = "a"\n[mqtt]\nenabled = false\n[mqtt.embedded]\nenabled = true\nport = 1999\n` +
        `[anti_entropy]\npeer_list = ["127.0.0.1:1", "127.0.0.1:2"]\n`,
    );
    const c = loadConfig({ file: path });
    expect(c.mqtt.enabled).toBe(false);
    expect(c.mqtt.embedded).toEqual({ enabled: true, bind_address: '127.0.0.1', port: 1999 });
    expect(c.anti_entropy.peer_list).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
    const e = loadConfig({
      file: path,
      env: { MERKLE_KV_MQTT_EMBEDDED_ENABLED: 'false', MERKLE_KV_ANTI_ENTROPY_PEER_LIST: 'h:1, h:2' },
    });
    expect(e.mqtt.embedded.enabled).toBe(false);
    expect(e.anti_entropy.peer_list).toEqual(['h:1', 'h:2']);
  });

  it('names the file and key of every mistake', () => {
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[network]\nbind_prot = 1\n') }))).toMatch(
      /node\.toml: unknown key 'network\.bind_prot'/,
    );
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[network]\nbind_port = 70000\n') }))).toMatch(
      /node\.toml: network\.bind_port must be in 0\.\.65535, got 70000/,
    );
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[network]\nbind_port = "x"\n') }))).toMatch(
      /network\.bind_port must be an integer/,
    );
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[logging]\nlevel = "loud"\n') }))).toMatch(
      /logging\.level must be one of trace, debug, info, warn, error/,
    );
    expect(configError(() => loadConfig({ file: file('node_id = "a\n') }))).toMatch(/node\.toml: TOML syntax error at line 1/);
    expect(configError(() => loadConfig({ file: '/nonexistent/x.toml' }))).toMatch(/cannot read config file .*ENOENT/);
    expect(configError(() => loadConfig({ file: file('[network]\nbind_port = 1\n') }))).toMatch(/node_id is required/);
  });

  it('checks what spans more than one key: segment bits, node id, peer addresses', () => {
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[anti_entropy]\nsegment_bits = 10\n') }))).toMatch(
      /anti_entropy\.segment_bits must be a multiple of 4/,
    );
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[anti_entropy]\nsegment_bits = 24\n') }))).toMatch(
      /anti_entropy\.segment_bits must be in 4\.\.20/,
    );
    expect(configError(() => loadConfig({ flags: { node_id: 'two words' } }))).toMatch(
      /node_id contains a space or a control character: it must be 1\.\.255 bytes of UTF-8/,
    );
    expect(configError(() => loadConfig({ flags: { node_id: 'n'.repeat(256) } }))).toMatch(/node_id is 256 bytes long \(at most 255\)/);
    expect(configError(() => loadConfig({ flags: { node_id: 'a', 'anti_entropy.peer_list': '127.0.0.1' } }))).toMatch(
      /anti_entropy\.peer_list: peer address must be host:port, got '127\.0\.0\.1'/,
    );
    const ok = loadConfig({ flags: { node_id: 'a', 'anti_entropy.peer_list': '[::1]:7879,localhost:7880' } });
    expect(ok.anti_entropy.segment_bits).toBe(16);
  });

  it('reads the advertised address and discover_peers, from the file, the environment and flags, and checks the address', () => {
    const path = file('node_id = "a"\n[network]\nadvertise_address = "10.0.0.5:7878"\n[anti_entropy]\ndiscover_peers = false\n');
    const c = loadConfig({ file: path });
    expect([c.network.advertise_address, c.anti_entropy.discover_peers]).toEqual(['10.0.0.5:7878', false]);
    const e = loadConfig({ file: path, env: { MERKLE_KV_NETWORK_ADVERTISE_ADDRESS: 'node1:7878', MERKLE_KV_ANTI_ENTROPY_DISCOVER_PEERS: 'yes' } });
    expect([e.network.advertise_address, e.anti_entropy.discover_peers]).toEqual(['node1:7878', true]);
    expect(loadConfig({ file: path, flags: { 'network.advertise_address': '[fd00::5]:7000' } }).network.advertise_address).toBe('[fd00::5]:7000');
    expect(configError(() => loadConfig({ flags: { node_id: 'a', 'network.advertise_address': 'node1' } }))).toMatch(
      /network\.advertise_address: peer address must be host:port, got 'node1'/,
    );
    expect(configError(() => loadConfig({ flags: { node_id: 'a', 'network.advertise_address': 'my host:7878' } }))).toMatch(
      /network\.advertise_address: an address has no spaces or control characters/,
    );
    expect(configError(() => loadConfig({ file: file('node_id = "a"\n[anti_entropy]\ndiscover_peers = "no"\n') }))).toMatch(
      /anti_entropy\.discover_peers must be true or false/,
    );
  });

  it('reads [security.users.<name>] tables from the file, or JSON from the environment, and checks each user', () => {
    const users = loadConfig({
      file: file('node_id = "a"\n[security]\npassword = "pw"\n[security.users.alice]\npassword = "s3"\nrole = "write"\n'),
    });
    expect(users.security).toEqual({ password: 'pw', admin_commands: true, users: { alice: { password: 's3', role: 'write' } } });
    const fromEnv = loadConfig({ env: { MERKLE_KV_NODE_ID: 'a', MERKLE_KV_SECURITY_USERS: '{"bob":{"password":"x","role":"read"}}' } });
    expect(fromEnv.security.users).toEqual({ bob: { password: 'x', role: 'read' } });
    const user = (toml: string): string => configError(() => loadConfig({ file: file(`node_id = "a"\n[security.users.alice]\n${toml}`) }));
    expect(user('password = "x"\nrole = "root"\n')).toMatch(/security\.users\.alice\.role must be one of read, write, admin, got "root"/);
    expect(user('role = "read"\n')).toMatch(/security\.users\.alice\.password must be a non-empty string/);
    expect(user('password = "x"\nrole = "read"\ncolor = "red"\n')).toMatch(/security\.users\.alice: unknown key 'color'/);
    expect(configError(() => loadConfig({ env: { MERKLE_KV_NODE_ID: 'a', MERKLE_KV_SECURITY_USERS: 'alice' } }))).toMatch(
      /environment variable MERKLE_KV_SECURITY_USERS must be JSON/,
    );
  });

  it('names the variable or flag of a bad override', () => {
    expect(configError(() => loadConfig({ flags: { node_id: 'a' }, env: { MERKLE_KV_NETWORK_BIND_PORT: 'abc' } }))).toMatch(
      /environment variable MERKLE_KV_NETWORK_BIND_PORT \(network\.bind_port\) must be an integer/,
    );
    expect(configError(() => loadConfig({ flags: { node_id: 'a' }, env: { MERKLE_KV_NETWORK_PORT: '1' } }))).toMatch(
      /unknown environment variable MERKLE_KV_NETWORK_PORT/,
    );
    expect(configError(() => loadConfig({ flags: { node_id: 'a', 'network.bind_port': '-1' } }))).toMatch(
      /command-line flag \(network\.bind_port\) must be in 0\.\.65535/,
    );
  });
});
