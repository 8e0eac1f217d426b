import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort, startReplicatedNode, waitFor } from '../replication/cluster.js';
import { LineClient, tempDir } from '../helpers.js';

// configs/prometheus/alerts.yml and configs/grafana/merkle-kv.json may only name metrics, labels and label
// values the node exports: a misspelled name would make an alert that never fires or an empty panel.

const ALERTS = fileURLToPath(new URL('../../configs/prometheus/alerts.yml', import.meta.url));
const DASHBOARD = fileURLToPath(new URL('../../configs/grafana/merkle-kv.json', import.meta.url));
const hasPromtool = spawnSync('sh', ['-c', 'command -v promtool']).status === 0;

/** Labels every series gets from Prometheus (the scrape target), not from the node. */
const TARGET_LABELS = new Set(['job', 'instance']);
/** Series Prometheus makes itself for each target. */
const SYNTHETIC = new Set(['up']);

/** PromQL aggregations and functions (Prometheus 2.x); a name outside these before `(` is an error. */
const FUNCTIONS = new Set(
  (
    'sum min max avg group stddev stdvar count count_values bottomk topk quantile ' +
    'abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week day_of_year ' +
    'days_in_month delta deriv exp floor histogram_quantile holt_winters hour idelta increase irate label_join ' +
    'label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort sort_desc sqrt ' +
    'time timestamp vector year avg_over_time min_over_time max_over_time sum_over_time count_over_time ' +
    'quantile_over_time stddev_over_time stdvar_over_time last_over_time present_over_time'
  ).split(' '),
);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

interface Matcher {
  readonly label: string;
  readonly op: string;
  readonly value: string;
}
interface Parsed {
  /** Metric names with the matchers of their selector. */
  readonly selectors: { name: string; matchers: Matcher[] }[];
  /** Label names in by/without/on/ignoring/group_left/group_right. */
  readonly grouping: string[];
}

const TOKEN = /\s+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\$\{?[a-zA-Z_]\w*\}?|[0-9][0-9a-zA-Z.]*|[a-zA-Z_:][\w:]*|=~|!=|!~|==|[{}[\](),=]|[-+*/%^<>!@]=?/y;

/** The metric names, matchers and grouping labels of one PromQL expression; throws on what it cannot read. */
function parsePromQL(expr: string): Parsed {
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < expr.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(expr);
    if (m === null) throw new Error(`cannot read ${JSON.stringify(expr.slice(at))} in ${expr}`);
    if (!/^\s/.test(m[0])) tokens.push(m[0]);
  }
  const selectors: Parsed['selectors'] = [];
  const grouping: string[] = [];
  const isName = (t: string | undefined): t is string => t !== undefined && /^[a-zA-Z_:][\w:]*$/.test(t);
  const unquote = (t: string): string => (JSON.parse(t.startsWith("'") ? `"${t.slice(1, -1)}"` : t) as string);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as string;
    if (t === '[') {
      // A range or subquery: durations and $__rate_interval, no names.
      while (tokens[i] !== ']') if (++i >= tokens.length) throw new Error(`unclosed [ in ${expr}`);
    } else if (t === '{') {
      // A selector without a name before it ({__name__=...}) is not used here.
      const last = selectors.at(-1);
      if (last === undefined || tokens[i - 1] !== last.name) throw new Error(`a selector without a metric name in ${expr}`);
      for (i++; tokens[i] !== '}'; i++) {
        const [label, op, value] = [tokens[i], tokens[i + 1], tokens[i + 2]];
        if (!isName(label) || !['=', '!=', '=~', '!~'].includes(op ?? '') || !/^["']/.test(value ?? '')) throw new Error(`bad matcher in ${expr}`);
        last.matchers.push({ label, op: op as string, value: unquote(value as string) });
        i += 2;
        if (tokens[i + 1] === ',') i++;
      }
    } else if (isName(t) && GROUPING.has(t)) {
      if (tokens[i + 1] !== '(') continue;
      for (i += 2; tokens[i] !== ')'; i++) {
        if (!isName(tokens[i]) && tokens[i] !== ',') throw new Error(`bad ${t} (...) in ${expr}`);
        if (tokens[i] !== ',') grouping.push(tokens[i] as string);
      }
    } else if (isName(t) && (tokens[i + 1] === '(' || tokens[i + 1] === 'by' || tokens[i + 1] === 'without')) {
      // A call, or an aggregation with its grouping first (`sum by (x) (...)`).
      if (!FUNCTIONS.has(t)) throw new Error(`unknown function ${t} in ${expr}`);
    } else if (isName(t) && !KEYWORDS.has(t.toLowerCase())) {
      selectors.push({ name: t, matchers: [] });
    } else if (t.startsWith('$')) {
      throw new Error(`a Grafana variable outside a string or range in ${expr}`);
    }
  }
  return { selectors, grouping };
}

/** The node's samples by metric name (histograms by their _bucket, _sum and _count names): their label sets. */
function exportedSeries(text: string): Map<string, Record<string, string>[]> {
  const series = new Map<string, Record<string, string>[]>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (m === null) throw new Error(`not a sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[k as string] = v as string;
    const name = m[1] as string;
    series.set(name, [...(series.get(name) ?? []), labels]);
  }
  return series;
}

/** Everything wrong with `expr` against what the node exports (empty: nothing). */
function problems(expr: string, series: Map<string, Record<string, string>[]>): string[] {
  const out: string[] = [];
  const { selectors, grouping } = parsePromQL(expr);
  if (selectors.length === 0) out.push(`no metric in ${expr}`);
  const known = new Set(TARGET_LABELS);
  for (const { name, matchers } of selectors) {
    const samples = series.get(name);
    if (samples === undefined) {
      if (!SYNTHETIC.has(name)) out.push(`${name} is not exported (in ${expr})`);
      continue;
    }
    for (const s of samples) for (const k of Object.keys(s)) known.add(k);
    for (const { label, op, value } of matchers) {
      if (TARGET_LABELS.has(label)) continue;
      if (!samples.some((s) => label in s)) out.push(`${name} has no label ${label} (in ${expr})`);
      else if (op === '=' && !samples.some((s) => s[label] === value)) out.push(`${name} has no ${label}="${value}" (in ${expr})`);
    }
  }
  for (const label of grouping) if (!known.has(label)) out.push(`no metric of ${expr} has the label ${label}`);
  return out;
}

interface Rule {
  alert: string;
  expr?: string;
  for?: string;
  severity?: string;
  summary?: string;
  description?: string;
}

/**
 * The alerting rules of alerts.yml, read without a YAML library (none is a dependency): `- alert:` starts a
 * rule, and expr, for, severity, summary and description are plain or quoted scalars or `|`/`>` blocks.
 */
function readRules(text: string): Rule[] {
  const lines = text.split('\n');
  const rules: Rule[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const alert = /^\s*- alert: (\S+)\s*$/.exec(line);
    if (alert !== null) {
      rules.push({ alert: alert[1] as string });
      continue;
    }
    const m = /^(\s*)(expr|for|severity|summary|description):\s*(.*)$/.exec(line);
    if (m === null) continue;
    const rule = rules.at(-1);
    if (rule === undefined) throw new Error(`${m[2]} outside a rule: ${line}`);
    let value = (m[3] as string).trim();
    if (/^[|>][-+]?$/.test(value)) {
      const block: string[] = [];
      while (i + 1 < lines.length && (/^\s*$/.test(lines[i + 1] as string) || (/^\s*/.exec(lines[i + 1] as string)?.[0].length ?? 0) > (m[1] as string).length)) {
        block.push((lines[++i] as string).trim());
      }
      value = block.join(value.startsWith('|') ? '\n' : ' ').trim();
    } else if (/^'.*'$/.test(value)) value = value.slice(1, -1).replaceAll("''", "'");
    else if (/^".*"$/.test(value)) value = JSON.parse(value) as string;
    rule[m[2] as 'expr' | 'for' | 'severity' | 'summary' | 'description'] = value;
  }
  return rules;
}

interface Target {
  expr?: string;
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string | { query?: string } }[] };
}

const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
/** Every panel, those inside rows included. */
const panelsOf = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);

/** Every PromQL expression of the dashboard: the panels' targets and the query variables. */
function dashboardExprs(d: Dashboard): string[] {
  const exprs = panelsOf(d).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
  for (const v of d.templating.list.filter((v) => v.type === 'query')) {
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    // Grafana's label_values([series, ]label): the series is PromQL; the label must be one of its labels.
    const lv = /^label_values\((?:(.+),\s*)?([a-zA-Z_]\w*)\)$/.exec(q);
    if (lv === null) throw new Error(`variable ${v.name}: not a label_values query: ${q}`);
    exprs.push(`count by (${lv[2] as string}) (${lv[1] ?? 'up'})`);
  }
  return exprs;
}

/** What Grafana substitutes for its variables, so that a dashboard expression is plain PromQL. */
const substituted = (expr: string): string => expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*');

describe('alerting rules and dashboard', () => {
  it('name only metrics, labels and label values the node exports', async () => {
    const { node } = await startReplicatedNode('monitored', {
      'mqtt.embedded.enabled': 'true',
      'mqtt.embedded.port': '0',
      'metrics.enabled': 'true',
      'metrics.port': '0',
    });
    await waitFor('connected to its broker', () => node.replicator?.stats.connected === true);
    const c = await LineClient.connect(node.address.port);
    for (const line of ['SET a 1', 'GET a', 'BOGUS']) await c.call(line);
    // A failed exchange: the anti-entropy families get their peer, result and direction labels.
    expect(await c.call(`SYNC 127.0.0.1 ${await freePort()}`)).toMatch(/^ERROR /);
    const res = await fetch(`http://127.0.0.1:${node.metricsAddress?.port as number}/metrics`);
    const series = exportedSeries(await res.text());

    const rules = readRules(readFileSync(ALERTS, 'utf8'));
    const exprs = [...rules.map((r) => r.expr ?? ''), ...dashboardExprs(dashboard()).map(substituted)];
    expect(rules.length).toBeGreaterThanOrEqual(8);
    expect(exprs.flatMap((expr) => problems(expr, series))).toEqual([]);
    // The checker itself: what it must refuse.
    expect(problems('rate(merklekv_request_total[5m])', series)).toEqual(['merklekv_request_total is not exported (in rate(merklekv_request_total[5m]))']);
    expect(problems('merklekv_antientropy_syncs_total{result="failed"}', series)).toHaveLength(1);
    expect(problems('sum by (comand) (merklekv_requests_total)', series)).toHaveLength(1);
    expect(() => parsePromQL('rates(merklekv_keys[5m])')).toThrow(/unknown function rates/);
  });

  it('alerts.yml: every rule has an expr, a for, a severity, a summary and a description', () => {
    const text = readFileSync(ALERTS, 'utf8');
    const rules = readRules(text);
    // Every expr of the file belongs to a rule that readRules saw.
    expect(rules.filter((r) => r.expr !== undefined)).toHaveLength(text.match(/^\s*expr:/gm)?.length ?? 0);
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    for (const r of rules) {
      expect(r.expr, r.alert).toMatch(/\S/);
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning'], r.alert).toContain(r.severity);
      expect(r.summary, r.alert).toMatch(/\S/);
      expect(r.description, r.alert).toMatch(/README\.md/);
    }
  });

  it('promtool accepts alerts.yml, and the dashboard expressions as PromQL', (ctx) => {
    // .ci/run installs promtool (Debian package prometheus); with CI=true this must run.
    ctx.skip(!hasPromtool && process.env.CI !== 'true', 'promtool is not on PATH (apt-get install prometheus)');
    expect(hasPromtool, 'promtool on PATH (CI=true)').toBe(true);
    const rules = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
    expect(rules.status, rules.stdout + rules.stderr).toBe(0);
    expect(rules.stdout).toMatch(/SUCCESS: \d+ rules found/);
    // promtool parses PromQL only in rule files: the dashboard's expressions as recording rules.
    const exprs = dashboardExprs(dashboard()).map(substituted);
    const file = join(tempDir(), 'dashboard.yml');
    const recorded = exprs.map((e, i) => `      - record: dashboard_expr_${i}\n        expr: ${JSON.stringify(e)}\n`).join('');
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${recorded}`);
    const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
  });

  it('the dashboard: titled panels with unique ids, each with a query', () => {
    const d = dashboard();
    const panels = panelsOf(d);
    expect(panels.length).toBeGreaterThan(10);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) {
      expect(p.id, p.title).toBeTypeOf('number');
      expect(p.title, `panel ${p.id}`).toMatch(/\S/);
      // A row only groups the panels below it.
      if (p.type === 'row') continue;
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.expr, p.title).toMatch(/\S/);
    }
    expect(d.templating.list.map((v) => [v.name, v.type])).toEqual([
      ['datasource', 'datasource'],
      ['instance', 'query'],
    ]);
  });
});
