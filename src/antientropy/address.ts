/** `host:port` or `[v6]:port`. */
export function parsePeer(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (m === null || port < 1 || port > 65535) throw new RangeError(`peer address must be host:port, got '${address}'`);
  return { host: (m[1] ?? m[2]) as string, port };
}
