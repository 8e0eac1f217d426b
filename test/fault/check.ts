import { APPEND_KEYS, COUNTER_KEYS, PLAIN_KEYS, SET_KEYS, Workload, type NodeState, type Op } from './workload.js';

/*
 * The fault suite's checks on a workload's history against the converged state.
 *
 * Plain values are last-writer-wins by version (hybrid clock, then node id). A write that a later one
 * could not have seen may win over it (a partition, a node catching up after a restart, a skewed clock),
 * so "the newest acknowledged write survives" is required where it must hold: between two writes made in
 * one calm stretch (no fault under way, or settling, between the first's start and the second's), more
 * than `slackMs` apart. Every surviving value must be one some write wrote (no phantom), and an
 * acknowledged write may be replaced only by one that may have come after it.
 */

/** A fault, from its start until the cluster settled after it was healed. */
export interface FaultWindow {
  readonly kind: string;
  readonly start: number;
  /** When it was healed (or the node restarted) plus the settling time. */
  readonly end: number;
}

export interface CheckOptions {
  /** Replication delay allowed between two writes in a calm stretch. */
  readonly slackMs: number;
  readonly clients: number;
}

export interface CheckReport {
  readonly problems: string[];
  /** Acknowledged appends that a concurrent write replaced (last writer wins: not a loss). */
  readonly appendsReplaced: number;
  readonly acked: number;
  readonly unknown: number;
  readonly failed: number;
}

export function checkHistory(history: readonly Op[], state: NodeState, windows: readonly FaultWindow[], opts: CheckOptions): CheckReport {
  const problems: string[] = [];
  const calm = (a: Op, b: Op): boolean => !windows.some((w) => w.start <= b.start && w.end >= a.start);
  const byKey = new Map<string, Op[]>();
  for (const op of history) {
    const list = byKey.get(op.key) ?? [];
    list.push(op);
    byKey.set(op.key, list);
  }
  const describe = (op: Op): string => `${op.kind} ${op.key} ${op.arg} on node ${op.node} [${op.start}..${op.end}] ${op.outcome}`;

  // An explanation of the final value: a write that made it, with no acknowledged write that surely came later.
  const supersededBy = (w: Op, ops: readonly Op[]): Op | undefined =>
    ops.find((w2) => w2 !== w && w2.outcome === 'ok' && w2.start > w.end + opts.slackMs && calm(w, w2));

  for (const key of PLAIN_KEYS) {
    const ops = (byKey.get(key) ?? []).filter((o) => o.kind === 'set' || o.kind === 'del');
    const value = state.values[key];
    const made = value === undefined ? ops.filter((o) => o.kind === 'del' && o.outcome !== 'fail') : ops.filter((o) => o.kind === 'set' && o.arg === value);
    if (value !== undefined && (made.length === 0 || made.every((o) => o.outcome === 'fail'))) {
      problems.push(`${key}: value ${value} was never written`);
      continue;
    }
    if (made.length === 0) {
      // Absent and never deleted: nothing may have been acknowledged.
      const acked = ops.find((o) => o.outcome === 'ok');
      if (acked !== undefined) problems.push(`${key}: absent, but ${describe(acked)} was acknowledged`);
      continue;
    }
    if (made.every((w) => supersededBy(w, ops) !== undefined)) {
      const w = made[made.length - 1] as Op;
      problems.push(`${key}: holds ${value ?? '(deleted)'} from ${describe(w)}, but ${describe(supersededBy(w, ops) as Op)} came later`);
    }
  }

  let appendsReplaced = 0;
  for (const key of APPEND_KEYS) {
    const ops = (byKey.get(key) ?? []).filter((o) => o.kind === 'append');
    const tokens = (state.values[key] ?? '').split('.').filter((t) => t !== '');
    const seen = new Set<string>();
    let last: Op | undefined;
    for (const t of tokens) {
      const op = ops.find((o) => o.arg === `${t}.`);
      if (op === undefined || op.outcome === 'fail') problems.push(`${key}: holds ${t}, which no append wrote`);
      if (seen.has(t)) problems.push(`${key}: holds ${t} twice`);
      seen.add(t);
      if (op !== undefined && (last === undefined || op.end > last.end)) last = op;
    }
    appendsReplaced += ops.filter((o) => o.outcome === 'ok' && !seen.has(o.arg.slice(0, -1))).length;
    if (last !== undefined) {
      const later = supersededBy(last, ops);
      if (later !== undefined && !seen.has(later.arg.slice(0, -1))) problems.push(`${key}: lost ${describe(later)}, made after ${describe(last)}`);
    } else if (ops.some((o) => o.outcome === 'ok')) {
      problems.push(`${key}: empty, though appends were acknowledged`);
    }
  }

  for (const key of COUNTER_KEYS) {
    const ops = (byKey.get(key) ?? []).filter((o) => o.kind === 'inc');
    const sum = (f: (o: Op) => boolean): number => ops.filter(f).reduce((n, o) => n + Number(o.arg), 0);
    const acked = sum((o) => o.outcome === 'ok');
    const low = acked + sum((o) => o.outcome === 'unknown' && Number(o.arg) < 0);
    const high = acked + sum((o) => o.outcome === 'unknown' && Number(o.arg) > 0);
    const value = Number(state.values[key] ?? '0');
    if (!(value >= low && value <= high)) problems.push(`${key}: counter is ${value}, acknowledged increments sum to ${acked} (allowed ${low}..${high})`);
  }

  for (const key of SET_KEYS) {
    const members = new Set(state.sets[key] ?? []);
    for (let c = 0; c < opts.clients; c++) {
      for (const member of Workload.membersOf(c)) {
        const ops = (byKey.get(key) ?? []).filter((o) => o.arg === member).sort((a, b) => a.start - b.start);
        let lastAcked = -1;
        ops.forEach((o, i) => {
          if (o.outcome === 'ok') lastAcked = i;
        });
        const after = ops.slice(lastAcked + 1).filter((o) => o.outcome === 'unknown');
        const base = lastAcked === -1 ? 'srem' : (ops[lastAcked] as Op).kind;
        const mayBePresent = base === 'sadd' || after.some((o) => o.kind === 'sadd');
        const mayBeAbsent = base === 'srem' || after.some((o) => o.kind === 'srem');
        const present = members.has(member);
        if (present && !mayBePresent) problems.push(`${key}: holds ${member}, whose last acknowledged op was a remove`);
        if (!present && !mayBeAbsent) problems.push(`${key}: lacks ${member}, whose last acknowledged op was ${describe(ops[lastAcked] as Op)}`);
      }
    }
  }

  return {
    problems,
    appendsReplaced,
    acked: history.filter((o) => o.outcome === 'ok').length,
    unknown: history.filter((o) => o.outcome === 'unknown').length,
    failed: history.filter((o) => o.outcome === 'fail').length,
  };
}

/** Whether every node holds the same: roots and the workload's keys. */
export function converged(states: readonly NodeState[]): boolean {
  const first = JSON.stringify(states[0]);
  return states.every((s) => JSON.stringify(s) === first);
}
