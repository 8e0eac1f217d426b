/**
 * Replies as people read them, in the manner of redis-cli: values quoted, absent ones `(nil)`, counts
 * `(integer) n`, lists numbered, errors `(error) ...`. `--raw` skips this.
 */
export function format(reply: readonly string[]): string[] {
  const [first = '', ...rest] = reply;
  if (first.startsWith('ERROR')) return [`(error) ${first.slice(6)}`];
  if (first === 'NOT_FOUND') return ['(nil)'];
  const value = /^VALUE (.*)$/s.exec(first);
  if (value !== null) return [quote(value[1] as string)];
  if (/^(KEYS|MEMBERS) \d+$/.test(first)) return rest.length === 0 ? ['(empty list)'] : rest.map((item, i) => `${i + 1}) ${quote(item)}`);
  if (/^VALUES \d+$/.test(first)) {
    // MGET: `<key> <value>` or `<key> NOT_FOUND`, in request order.
    return rest.map((line, i) => {
      const sp = line.indexOf(' ');
      const key = line.slice(0, sp);
      const v = line.slice(sp + 1);
      return `${i + 1}) ${key} => ${v === 'NOT_FOUND' ? '(nil)' : quote(v)}`;
    });
  }
  const count = /^(EXISTS|DBSIZE|SCARD|SADD|SREM|TTL) (-?\d+)$/.exec(first);
  if (count !== null) return [`(integer) ${count[2]}`];
  if (/^[01]$/.test(first)) return [`(integer) ${first}`];
  // STATS and INFO: the lines between the header and END; CLIENT LIST: those before END.
  if (reply[reply.length - 1] === 'END') {
    const lines = (first === 'STATS' || first === 'INFO' ? rest : reply).slice(0, -1);
    return lines.length === 0 ? ['(empty list)'] : lines;
  }
  return [...reply];
}

function quote(s: string): string {
  return JSON.stringify(s);
}
