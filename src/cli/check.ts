import { stringify } from 'smol-toml';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';

const MASK = '********';

/**
 * `merkle-kv check-config f.toml`: the configuration a node started with this file (and this
 * environment) would run with, as TOML, secrets masked. Throws ConfigError as start-up would.
 */
export function effectiveConfig(file: string, env: NodeJS.ProcessEnv): string {
  return stringify(masked(loadConfig({ file, env })));
}

/** A copy with every secret that is set replaced by a mask (an empty one stays empty: "not set" is worth seeing). */
export function masked(config: Config): Config {
  const hide = (s: string): string => (s === '' ? '' : MASK);
  return {
    ...config,
    cluster_secret: hide(config.cluster_secret),
    security: {
      ...config.security,
      password: hide(config.security.password),
      users: Object.fromEntries(Object.entries(config.security.users).map(([name, u]) => [name, { ...u, password: hide(u.password) }])),
    },
    mqtt: { ...config.mqtt, password: hide(config.mqtt.password) },
  };
}
