/**
 * What every program's config has in common (STYLE.md rule 9): a JSON file whose relative paths
 * are relative to the file, command-line overrides merged over it, one zod schema whose errors name
 * each bad field, and a frozen result. `anvil server` and `anvil dns` both use it.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Validates `raw` against `schema`; a failure lists every bad field ("validation.httpPort: ..."). */
export function parseConfig<S extends z.ZodType>(schema: S, raw: unknown, source = 'config'): z.output<S> {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`);
  }
  return r.data;
}

/**
 * Reads a JSON object from `file` (nothing when undefined), resolves the string fields named by
 * `relativePaths` ("dataDir", "apiTls.cert") against the file's directory, and merges `overrides`
 * over it.
 */
export async function readConfigFile(file: string | undefined, overrides: Record<string, unknown>, relativePaths: string[] = ['dataDir']): Promise<Record<string, unknown>> {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`config file ${file} must hold a JSON object`);
    for (const p of relativePaths) {
      const keys = p.split('.');
      const parent = keys.slice(0, -1).reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), raw);
      const last = keys[keys.length - 1]!;
      if (parent && typeof parent === 'object') {
        const v = (parent as Record<string, unknown>)[last];
        if (typeof v === 'string' && !path.isAbsolute(v)) (parent as Record<string, unknown>)[last] = path.resolve(path.dirname(file), v);
      }
    }
  }
  return mergeDeep(raw, overrides);
}

function mergeDeep(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? mergeDeep(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
