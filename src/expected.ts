/**
 * Marks `p`'s rejection as handled, and returns `p`, which still rejects for whoever awaits it.
 *
 * For a promise that may never be awaited: a pipelined request behind one that failed, a step of an
 * exchange that stopped early. Its rejection is expected, not a bug, but Node treats a rejection that no
 * handler saw as fatal (`--unhandled-rejections=throw`, the default): the process ends. One helper says
 * so in one way, instead of a `.catch(() => {})` whose intent a reader must guess.
 */
export function expected<T>(p: Promise<T>): Promise<T> {
  p.catch(ignore);
  return p;
}

function ignore(): void {}
