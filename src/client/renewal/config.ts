/**
 * renewal/NAME.json, checked before a renewal uses it (STYLE.md rule 9): one zod schema for
 * LineageConfig whose errors name the file and the field ("renewal/www.json: identifiers[0].value:
 * ..."), so that one hand-edited file fails its own lineage, clearly, and no other. Fields the
 * schema does not know are kept (a newer anvil may have written them); fields anvil added later
 * than the first version stay optional with the defaults the renewal has always applied.
 */
import { z } from 'zod';
import { AcmeClientError } from '../errors.js';
import { CERT_KEY_TYPES } from '../keys.js';
import type { LineageConfig } from '../store.js';

const text = z.string().min(1, 'must not be empty');
const url = text.refine((u) => URL.canParse(u), 'must be an absolute URL');
const port = z.number().int().min(1).max(65_535);
/** Argument vectors (never shell strings): [["systemctl", "reload", "nginx"], ...]. */
const commands = z.array(z.array(z.string()).min(1, 'a command needs at least the program'));

const identifier = z.object({
  type: z.enum(['dns', 'ip']),
  value: text.max(253),
});

const solver = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('http'), host: z.string().optional(), port: port.optional() }),
  z.looseObject({ type: z.literal('webroot'), path: text }),
  z.looseObject({ type: z.literal('tls-alpn'), host: z.string().optional(), port: port.optional() }),
  z.looseObject({
    type: z.literal('dns'),
    provider: text,
    configFile: text.optional(),
    resolvers: z.array(text).optional(),
    propagationTimeoutMs: z.number().nonnegative().optional(),
    nameserverPort: port.optional(),
    authoritative: z.record(z.string(), z.array(z.string())).optional(),
    skipPropagationCheck: z.boolean().optional(),
  }),
]);

const fallback = z.looseObject({
  server: url,
  account: text,
  caBundle: text.optional(),
  profile: text.optional(),
});

/** Installers belong to src/client/install, which checks them itself; here only their shape. */
const installer = z.looseObject({ type: text, conf: text });

export const lineageConfigSchema = z.looseObject({
  version: z.literal(1).optional(),
  name: text,
  server: url,
  account: text,
  identifiers: z.array(identifier).min(1, 'must name at least one identifier'),
  keyType: z.enum(CERT_KEY_TYPES).nullable().optional(),
  reuseKey: z.boolean().optional(),
  csrFile: text.optional(),
  solver,
  hooks: z.looseObject({ pre: commands.optional(), post: commands.optional(), deploy: commands.optional() }).optional(),
  profile: text.optional(),
  fallback: z.array(fallback).optional(),
  installers: z.array(installer).optional(),
  notify: commands.optional(),
  caBundle: text.optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});

/** "identifiers[0].value" from a zod issue path. */
function fieldOf(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : `${out ? '.' : ''}${String(k)}`;
  return out || '(the whole file)';
}

/**
 * The config of lineage `name` as read from renewal/NAME.json, checked. Throws BAD_INPUT naming
 * the file and each bad field. Defaults: `keyType` ecdsa-p256 when absent (null in a lineage from
 * the user's CSR), `reuseKey` false.
 */
export function parseLineageConfig(raw: unknown, name: string): LineageConfig {
  const where = `renewal/${name}.json`;
  const r = lineageConfigSchema.safeParse(raw);
  if (!r.success) {
    const problems = r.error.issues.slice(0, 5).map((i) => `${fieldOf(i.path)}: ${i.message}`);
    const more = r.error.issues.length > 5 ? `; and ${r.error.issues.length - 5} more` : '';
    throw new AcmeClientError('BAD_INPUT', `${where}: ${problems.join(`; ${where}: `)}${more}`);
  }
  const c = r.data;
  if (c.name !== name) throw new AcmeClientError('BAD_INPUT', `${where}: name: is ${JSON.stringify(c.name)}, not ${JSON.stringify(name)} as the file name says`);
  return {
    ...c,
    version: 1,
    keyType: c.keyType === undefined ? (c.csrFile ? null : 'ecdsa-p256') : c.keyType,
    reuseKey: c.reuseKey ?? false,
    createdAt: c.createdAt ?? '',
    updatedAt: c.updatedAt ?? '',
  } as LineageConfig;
}
