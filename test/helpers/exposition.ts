/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests: it refuses what
 * Prometheus would refuse or misread (bad names, bad escapes, a TYPE after the family's samples,
 * a family split in two, the same series twice, a sample of a family without TYPE), so that a test
 * that parses a scrape also proves the scrape is well formed.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string | null;
  samples: Sample[];
}

export class Exposition {
  constructor(
    readonly families: Map<string, Family>,
    readonly samples: Sample[],
  ) {}

  /** Samples of `name` whose labels include `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample of `name` with (at least) these labels; throws if there is none or several. */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.find(name, labels);
    if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
    return found[0]!.value;
  }

  /** The sum over the samples of `name` with these labels (0 when none). */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.find(name, labels).reduce((a, s) => a + s.value, 0);
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** As Prometheus reads values (Go's strconv.ParseFloat: NaN and Inf in any case; prom-client writes "Nan"). */
function parseValue(v: string, line: number): number {
  if (/^nan$/i.test(v)) return NaN;
  if (/^\+?inf(inity)?$/i.test(v)) return Infinity;
  if (/^-inf(inity)?$/i.test(v)) return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`line ${line}: "${v}" is not a value`);
  return Number(v);
}

/** The family a sample name belongs to, given the families declared so far. */
function familyOf(name: string, families: Map<string, Family>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || f.type === 'summary')) return base;
    }
  }
  return name;
}

export function parseExposition(text: string): Exposition {
  if (text !== '' && !text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const families = new Map<string, Family>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const closed = new Set<string>();
  let current: string | null = null;
  const lines = text.split('\n');
  lines.pop();
  for (const [i, raw] of lines.entries()) {
    const n = i + 1;
    if (raw === '') continue;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) continue; // another comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`line ${n}: bad metric name ${name}`);
      if (closed.has(name) || (families.get(name)?.samples.length ?? 0) > 0) throw new Error(`line ${n}: ${kind} of ${name} after its samples`);
      const f = families.get(name) ?? { name, type: 'untyped', help: null, samples: [] };
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`line ${n}: bad type ${rest}`);
        if (families.has(name) && f.type !== 'untyped') throw new Error(`line ${n}: second TYPE for ${name}`);
        f.type = rest;
      } else {
        if (f.help !== null) throw new Error(`line ${n}: second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`line ${n}: bad escape in HELP`);
        f.help = rest.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
      }
      families.set(name, f);
      continue;
    }
    // name{labels} value [timestamp]
    let p = 0;
    while (p < raw.length && raw[p] !== '{' && raw[p] !== ' ') p++;
    const name = raw.slice(0, p);
    if (!METRIC_NAME.test(name)) throw new Error(`line ${n}: bad metric name "${name}"`);
    const labels: Record<string, string> = {};
    if (raw[p] === '{') {
      p++;
      while (raw[p] !== '}') {
        const eq = raw.indexOf('=', p);
        if (eq < 0) throw new Error(`line ${n}: a label without "="`);
        const ln = raw.slice(p, eq);
        if (!LABEL_NAME.test(ln)) throw new Error(`line ${n}: bad label name "${ln}"`);
        if (ln in labels) throw new Error(`line ${n}: label ${ln} twice`);
        if (raw[eq + 1] !== '"') throw new Error(`line ${n}: label value not quoted`);
        let v = '';
        let q = eq + 2;
        for (;;) {
          if (q >= raw.length) throw new Error(`line ${n}: unterminated label value`);
          const ch = raw[q]!;
          if (ch === '"') break;
          if (ch === '\\') {
            const e = raw[q + 1];
            if (e === '\\') v += '\\';
            else if (e === '"') v += '"';
            else if (e === 'n') v += '\n';
            else throw new Error(`line ${n}: bad escape \\${e ?? ''} in a label value`);
            q += 2;
            continue;
          }
          v += ch;
          q++;
        }
        labels[ln] = v;
        p = q + 1;
        if (raw[p] === ',') p++;
        else if (raw[p] !== '}') throw new Error(`line ${n}: expected "," or "}" after a label`);
      }
      p++;
    }
    if (raw[p] !== ' ') throw new Error(`line ${n}: expected a space before the value`);
    const parts = raw.slice(p + 1).split(' ');
    if (parts.length < 1 || parts.length > 2) throw new Error(`line ${n}: expected a value and an optional timestamp`);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`line ${n}: bad timestamp`);
    const value = parseValue(parts[0]!, n);
    const fam = familyOf(name, families);
    const f = families.get(fam);
    if (!f) throw new Error(`line ${n}: ${name} has no TYPE`);
    if (current !== fam) {
      if (closed.has(fam)) throw new Error(`line ${n}: the samples of ${fam} are not together`);
      if (current) closed.add(current);
      current = fam;
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`line ${n}: the series ${name}${JSON.stringify(labels)} twice`);
    seen.add(key);
    const s = { name, labels, value };
    f.samples.push(s);
    samples.push(s);
  }
  return new Exposition(families, samples);
}
