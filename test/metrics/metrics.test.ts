import { describe, expect, it, onTestFinished } from 'vitest';
import { startBroker } from '../../src/replication/broker.js';
import { freePort, startReplicatedNode, waitFor } from '../replication/cluster.js';
import { LineClient, silent, startTestNode } from '../helpers.js';

interface Family {
  help: boolean;
  type: string | undefined;
  samples: Map<string, number>;
}

/**
 * Parses Prometheus text exposition strictly enough to catch what a scraper would reject: every
 * sample belongs to a family announced by HELP and TYPE, and every line is a comment or a sample.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) families.set(name, (f = { help: false, type: undefined, samples: new Map() }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta !== null) {
      const f = family(meta[2] as string);
      if (meta[1] === 'HELP') f.help = true;
      else f.type = meta[3];
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|[Nn]a[Nn]|[+-]Inf)$/.exec(line);
    if (sample === null) throw new Error(`not a sample or comment: ${line}`);
    const name = sample[1] as string;
    const base = [...families.keys()].find((f) => name === f || name === `${f}_bucket` || name === `${f}_sum` || name === `${f}_count`);
    if (base === undefined) throw new Error(`sample before its HELP/TYPE: ${line}`);
    family(base).samples.set(`${name}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return families;
}

async function get(port: number, path: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

describe('metrics, health and readiness over HTTP', () => {
  it('serves every family with HELP and TYPE, and the counters move as commands run', async () => {
    const node = await startTestNode({ 'metrics.enabled': 'true', 'metrics.port': '0' });
    const port = node.metricsAddress?.port as number;
    const c = await LineClient.connect(node.address.port);
    const first = await get(port, '/metrics');
    expect(first.status).toBe(200);
    expect(first.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const before = parseExposition(first.body);
    for (const [name, f] of before) {
      expect(f.help, `${name} has HELP`).toBe(true);
      expect(['counter', 'gauge', 'histogram', 'summary'], `${name} has a TYPE`).toContain(f.type);
      if (f.type === 'counter') expect(name, `${name} is named as a counter`).toMatch(/_total$/);
    }
    for (const name of ['merklekv_requests_total', 'merklekv_request_duration_seconds', 'merklekv_connections', 'merklekv_keys', 'merklekv_tombstones', 'merklekv_lmdb_size_bytes', 'merklekv_log_sync_lag_seconds', 'merklekv_antientropy_syncs_total', 'process_cpu_user_seconds_total', 'process_resident_memory_bytes']) {
      expect(before.has(name), name).toBe(true);
    }
    for (const line of ['SET a 1', 'SET b 2', 'GET a', 'GET zz', 'DEL b', 'INC nope x', 'BOGUS']) await c.call(line);
    const after = parseExposition((await get(port, '/metrics')).body);
    const sample = (fam: string, key: string): number => after.get(fam)?.samples.get(key) ?? 0;
    const was = (fam: string, key: string): number => before.get(fam)?.samples.get(key) ?? 0;
    expect(sample('merklekv_requests_total', 'merklekv_requests_total{command="set",result="ok"}')).toBe(2);
    expect(sample('merklekv_requests_total', 'merklekv_requests_total{command="get",result="ok"}')).toBe(2);
    expect(sample('merklekv_requests_total', 'merklekv_requests_total{command="inc",result="error"}')).toBe(1);
    expect(sample('merklekv_requests_total', 'merklekv_requests_total{command="unknown",result="error"}')).toBe(1);
    expect(sample('merklekv_keys', 'merklekv_keys')).toBe(1);
    expect(sample('merklekv_tombstones', 'merklekv_tombstones')).toBe(1);
    expect(sample('merklekv_connections', 'merklekv_connections')).toBe(1);
    const count = sample('merklekv_request_duration_seconds', 'merklekv_request_duration_seconds_count');
    expect(count - was('merklekv_request_duration_seconds', 'merklekv_request_duration_seconds_count')).toBe(7);
    expect(sample('merklekv_request_duration_seconds', 'merklekv_request_duration_seconds_bucket{le="+Inf"}')).toBe(count);
    expect(sample('merklekv_network_bytes_total', 'merklekv_network_bytes_total{direction="in"}')).toBeGreaterThan(40);
    // The other paths.
    expect(await get(port, '/ready')).toMatchObject({ status: 200, body: '{"status":"ok"}\n' });
    expect(await get(port, '/health')).toMatchObject({ status: 200, body: '{"status":"ok"}\n' });
    expect((await get(port, '/nothing')).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('is off unless enabled', async () => {
    const node = await startTestNode();
    expect(node.metricsAddress).toBeUndefined();
  });

  it('/health turns 503 when the broker goes away and 200 when it is back', async () => {
    const mqttPort = await freePort();
    let broker = await startBroker('127.0.0.1', mqttPort, silent);
    onTestFinished(() => broker.close());
    const { node } = await startReplicatedNode('node-h', {
      'mqtt.broker_address': `mqtt://127.0.0.1:${mqttPort}`,
      'metrics.enabled': 'true',
      'metrics.port': '0',
    });
    const port = node.metricsAddress?.port as number;
    await waitFor('healthy', async () => (await get(port, '/health')).status === 200);
    await broker.close();
    await waitFor('unhealthy', async () => (await get(port, '/health')).status === 503);
    const down = await get(port, '/health');
    expect(JSON.parse(down.body)).toEqual({ status: 'unavailable', reasons: ['not connected to the replication broker'] });
    // Still serving clients: ready.
    expect((await get(port, '/ready')).status).toBe(200);
    const gauge = parseExposition((await get(port, '/metrics')).body).get('merklekv_broker_connected');
    expect(gauge?.samples.get('merklekv_broker_connected')).toBe(0);
    broker = await startBroker('127.0.0.1', mqttPort, silent);
    await waitFor('healthy again', async () => (await get(port, '/health')).status === 200, 15_000);
  }, 30_000);
});
