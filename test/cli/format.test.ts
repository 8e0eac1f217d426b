import { describe, expect, it } from 'vitest';
import { format } from '../../src/cli/format.js';

describe('readable replies (merkle-kv cli)', () => {
  it.each([
    [['VALUE hello world'], ['"hello world"']],
    [['NOT_FOUND'], ['(nil)']],
    [['OK'], ['OK']],
    [['ERROR Unknown command: X'], ['(error) Unknown command: X']],
    [['KEYS 2', 'a', 'b'], ['1) "a"', '2) "b"']],
    [['MEMBERS 0'], ['(empty list)']],
    [['VALUES 1', 'a 1', 'b NOT_FOUND'], ['1) a => "1"', '2) b => (nil)']],
    [['EXISTS 2'], ['(integer) 2']],
    [['TTL -1'], ['(integer) -1']],
    [['1'], ['(integer) 1']],
    [['STATS', 'keys:1', 'END'], ['keys:1']],
    [['id=1 addr=x age=0 idle=0 cmd=client', 'END'], ['id=1 addr=x age=0 idle=0 cmd=client']],
    [['HASH 00ff'], ['HASH 00ff']],
  ])('%j reads as %j', (reply, shown) => {
    expect(format(reply)).toEqual(shown);
  });
});
