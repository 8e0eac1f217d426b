import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { envName, FIELDS } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { startNode } from '../../src/node.js';
import { startBroker, type EmbeddedBroker } from '../../src/replication/broker.js';
import { LineClient, silent, tempDir } from '../helpers.js';
import { waitFor } from '../replication/cluster.js';

/*
 * Every TOML configuration in the MerkleKV reference project's README (AI-Decenter/MerkleKV, README.md),
 * verbatim: the "Basic Configuration Example", "Performance Tuning", the three files of the "Multi-Node
 * Cluster Example", and the files its "Quick Start" and "Multi-Node Cluster Setup" write with `cat <<EOF`
 * (shown here without the Markdown list's indentation). Each must validate as it is and start a node
 * (DESIGN.md section 3: every key the reference documents is accepted and means something).
 *
 * To start, and only for that, the test overrides through the loader's flag layer, as an operator would
 * on the command line: ports 0 on 127.0.0.1 (the examples name 7878.. and 192.168.1.x), this test's
 * broker (they name test.mosquitto.org or a LAN host: a test never reaches outside the machine), no
 * peer_list (their peers are elsewhere), and data, backup and log files in a temporary directory.
 */

interface Example {
  readonly name: string;
  readonly toml: string;
  /** For a fragment without node_id, the one given on the command line. */
  readonly nodeId?: string;
}

const EXAMPLES: readonly Example[] = [
  {
    name: 'Quick Start (Single Node) node1.toml',
    toml: `node_id = "local-node"

[network]
bind_address = "127.0.0.1"
bind_port = 7878

[mqtt]
broker_address = "tcp://localhost:1883"
topic_prefix = "dev-merkle-kv"
`,
  },
  {
    name: 'Multi-Node Cluster Setup node1.toml',
    toml: `node_id = "node-1"

[network]
bind_address = "127.0.0.1"
bind_port = 7878

[mqtt]
broker_address = "tcp://localhost:1883"
topic_prefix = "cluster-merkle-kv"
client_id = "node-1"

[anti_entropy]
enabled = true
interval_seconds = 60
peer_list = ["127.0.0.1:7879", "127.0.0.1:7880"]
`,
  },
  {
    name: 'Multi-Node Cluster Setup node2.toml',
    toml: `node_id = "node-2"

[network]
bind_address = "127.0.0.1"
bind_port = 7879

[mqtt]
broker_address = "tcp://localhost:1883"
topic_prefix = "cluster-merkle-kv"
client_id = "node-2"

[anti_entropy]
enabled = true
interval_seconds = 60
peer_list = ["127.0.0.1:7878", "127.0.0.1:7880"]
`,
  },
  {
    name: 'Multi-Node Cluster Setup node3.toml',
    toml: `node_id = "node-3"

[network]
bind_address = "127.0.0.1"
bind_port = 7880

[mqtt]
broker_address = "tcp://localhost:1883"
topic_prefix = "cluster-merkle-kv"
client_id = "node-3"

[anti_entropy]
enabled = true
interval_seconds = 60
peer_list = ["127.0.0.1:7878", "127.0.0.1:7879"]
`,
  },
  {
    name: 'Performance Tuning',
    nodeId: 'tuned-node',
    toml: `[network]
max_connections = 10000
connection_timeout = 60

[storage]
memory_limit_mb = 8192  # 8GB

[anti_entropy]
interval_seconds = 300   # 5 minutes
max_concurrent_syncs = 5

[logging]
level = "warn"  # Reduce log verbosity
`,
  },
  {
    name: 'Basic Configuration Example (node1.toml)',
    toml: `# Node Identity
node_id = "node-alpha"
description = "Primary MerkleKV node in us-east datacenter"

# Network Configuration
[network]
bind_address = "127.0.0.1"
bind_port = 7878
max_connections = 1000

# MQTT Broker Settings
[mqtt]
broker_address = "tcp://test.mosquitto.org:1883"
topic_prefix = "merkle-kv"
client_id = "merkle-node-alpha"
keep_alive = 60
clean_session = true

# Anti-Entropy Settings
[anti_entropy]
enabled = true
interval_seconds = 300  # 5 minutes
peer_discovery_interval = 600  # 10 minutes
max_concurrent_syncs = 3

# Storage Configuration
[storage]
memory_limit_mb = 1024  # 1GB memory limit
persistence_enabled = false
backup_interval_hours = 24

# Logging Configuration  
[logging]
level = "info"  # trace, debug, info, warn, error
format = "json"  # json, text
file_path = "/var/log/merkle-kv/node-alpha.log"
`,
  },
  {
    name: 'Multi-Node Cluster Example node1.toml',
    toml: `node_id = "node-primary"

[network]
bind_address = "192.168.1.10"
bind_port = 7878

[mqtt]
broker_address = "tcp://192.168.1.100:1883"
topic_prefix = "prod-merkle-kv"
client_id = "primary-node"

[anti_entropy]
enabled = true
interval_seconds = 180
peer_list = ["192.168.1.11:7878", "192.168.1.12:7878"]
`,
  },
  {
    name: 'Multi-Node Cluster Example node2.toml',
    toml: `node_id = "node-secondary"

[network]
bind_address = "192.168.1.11" 
bind_port = 7878

[mqtt]
broker_address = "tcp://192.168.1.100:1883"
topic_prefix = "prod-merkle-kv"
client_id = "secondary-node"

[anti_entropy]
enabled = true
interval_seconds = 180
peer_list = ["192.168.1.10:7878", "192.168.1.12:7878"]
`,
  },
  {
    name: 'Multi-Node Cluster Example node3.toml',
    toml: `node_id = "node-tertiary"

[network]
bind_address = "192.168.1.12"
bind_port = 7878

[mqtt]
broker_address = "tcp://192.168.1.100:1883" 
topic_prefix = "prod-merkle-kv"
client_id = "tertiary-node"

[anti_entropy]
enabled = true
interval_seconds = 180
peer_list = ["192.168.1.10:7878", "192.168.1.11:7878"]
`,
  },
];

/** The dotted path and value of every leaf of a TOML document (arrays are leaves). */
function leaves(table: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(table).flatMap(([key, value]): [string, unknown][] => {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? leaves(value as Record<string, unknown>, path) : [[path, value]];
  });
}

function valueAt(config: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((t, part) => (t as Record<string, unknown>)[part], config);
}

let broker: EmbeddedBroker;
beforeAll(async () => {
  broker = await startBroker('127.0.0.1', 0, silent);
});
afterAll(() => broker.close());

describe("the reference README's example configurations", () => {
  for (const example of EXAMPLES) {
    it(`${example.name}: validates as it is and starts a node`, async () => {
      const dir = tempDir();
      const file = join(dir, 'node.toml');
      writeFileSync(file, example.toml);
      const written = leaves(parseToml(example.toml));
      // Every key the example uses is one of ours (all of them listed at once, unlike the loader's first).
      expect(written.map(([path]) => path).filter((path) => FIELDS[path] === undefined)).toEqual([]);
      const base: Record<string, string> = example.nodeId === undefined ? {} : { node_id: example.nodeId };
      const config = loadConfig({ file, flags: base });
      for (const [path, value] of written) expect(valueAt(config, path), path).toEqual(value);

      const flags: Record<string, string> = {
        ...base,
        'network.bind_address': '127.0.0.1',
        'network.bind_port': '0',
        'mqtt.broker_address': `mqtt://127.0.0.1:${broker.address.port}`,
        'anti_entropy.peer_list': '',
      };
      if (config.storage.persistence_enabled) flags['storage.path'] = join(dir, 'data');
      if (FIELDS['storage.backup_path'] !== undefined) flags['storage.backup_path'] = join(dir, 'backups');
      // Where they name a log file (/var/log/...), and where they do not (stderr), to keep the test's output quiet.
      flags['logging.file_path'] = join(dir, 'node.log');
      const running = loadConfig({ file, flags });
      const log = createLogger(running.logging, { node: running.node_id });
      const node = await startNode(running, log.logger).catch(async (err: unknown) => {
        await log.close();
        throw err;
      });
      onTestFinished(async () => {
        await node.stop();
        await log.close();
      });
      expect(node.store.figures().persistence).toBe(running.storage.persistence_enabled ? 'disk' : 'cache');
      const c = await LineClient.connect(node.address.port);
      expect(await c.call('SET greeting hello')).toBe('OK');
      expect(await c.call('GET greeting')).toBe('VALUE hello');
      await waitFor('the node to connect to the broker', () => node.replicator?.stats.subscribed === true, 5000);
    });
  }

  it('takes the environment overrides its "Environment Variable Overrides" section sets', () => {
    const env = {
      [envName('node_id')]: 'production-node-1',
      [envName('mqtt.broker_address')]: 'tcp://production-mqtt.example.com:1883',
      [envName('network.bind_port')]: '8080',
    };
    expect(Object.keys(env)).toEqual(['MERKLE_KV_NODE_ID', 'MERKLE_KV_MQTT_BROKER_ADDRESS', 'MERKLE_KV_NETWORK_BIND_PORT']);
    const config = loadConfig({ env });
    expect([config.node_id, config.mqtt.broker_address, config.network.bind_port]).toEqual(['production-node-1', 'tcp://production-mqtt.example.com:1883', 8080]);
  });
});
