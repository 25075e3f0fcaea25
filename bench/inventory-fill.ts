/**
 * A large, realistic inventory for the benchmarks (bench/inventory-metrics.ts, bench/inventory-views.ts):
 * the facts and DER of a few real certificates (made with src/inventory/test-certs.ts: P-256 and
 * RSA-2048, CA-issued and self-signed), with varied fingerprints, names, issuers, sources, profiles
 * and validity (a tenth expired, a tenth renewed by a newer certificate for the same names, a few
 * revoked), 60 % deployed at an endpoint or a file (some missing), lineages with renewal failures,
 * and renewal events.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { describeCertificate } from '../src/inventory/certificate.js';
import { installationId, namesKey } from '../src/inventory/store.js';
import { testCa, testLeaf } from '../src/inventory/test-certs.js';
import type { Database as Schema, InvCertificatesTable, InvInstallationsTable } from '../src/storage/schema.js';

const DAY = 86_400_000;

/** Templates: real certificates whose facts and DER the rows reuse. */
async function templates() {
  const root = await testCa('Bench Root CA');
  const inter = await testCa('Bench Issuing CA 1', root);
  const out = [];
  for (const [key, ca] of [['ec256', inter], ['rsa2048', inter], ['ec256', root], ['ec256', undefined]] as const) {
    const leaf = await testLeaf({ key, ca, names: ['template.bench.example'] });
    out.push({ der: leaf.der, facts: describeCertificate(leaf.der) });
  }
  return out;
}

export async function fillInventory(db: Kysely<Schema>, n: number): Promise<void> {
  const tpl = await templates();
  const now = Date.now();
  const sources = ['ca', 'ca', 'ca', 'network', 'file', 'lineage', 'import'];
  const issuers = ['CN=Bench Issuing CA 1', 'CN=Bench Issuing CA 2, O=Example', "CN=R10, O=Let's Encrypt, C=US", 'CN=Internal "Legacy" CA\\, Ops'];
  const certs: InvCertificatesTable[] = [];
  const installs: InvInstallationsTable[] = [];
  const events: Schema['inv_events'][] = [];
  let seq = 0;
  const eventId = (t: number) => `${t.toString(16).padStart(12, '0')}${(seq++).toString(16).padStart(8, '0')}${randomBytes(8).toString('hex')}`;
  for (let i = 0; i < n; i++) {
    const t = tpl[i % tpl.length]!;
    // A tenth of the names come twice: an older certificate and its renewal.
    const host = i % 10 === 9 ? `host-${i - 1}.bench.example` : `host-${i}.bench.example`;
    const names = i % 3 === 0 ? [host, `www.${host}`] : [host];
    const lifetime = [90, 47, 7, 397, 30][i % 5]! * DAY;
    const renewal = i % 10 === 9;
    // Spread over the lifetimes: a tenth expired, the renewals the newest of their names.
    const notBefore = renewal ? now - 2 * DAY : i % 10 === 0 ? now - lifetime - ((i % 30) + 1) * DAY : now - Math.floor(((i * 7919) % 1000) / 1000 * lifetime * 0.9);
    const fp = createHash('sha256').update(`bench-${i}`).digest('hex');
    certs.push({
      fingerprint: fp,
      subject: i % 17 === 0 ? '' : `CN=${host}${i % 5 === 0 ? ', O=Example Corp, C=DE' : ''}`,
      issuer: t.facts.selfSigned ? `CN=${host}` : issuers[i % issuers.length]!,
      serial: randomBytes(16).toString('hex').toUpperCase(),
      names: JSON.stringify(names),
      names_key: namesKey(names),
      key_type: t.facts.keyType,
      key_bits: t.facts.keyBits,
      key_detail: t.facts.keyDetail,
      spki_sha256: randomBytes(32).toString('hex'),
      signature_algorithm: t.facts.signatureAlgorithm,
      not_before: notBefore,
      not_after: notBefore + lifetime,
      is_ca: 0,
      self_signed: t.facts.selfSigned ? 1 : 0,
      known_weak_key: null,
      der: t.der,
      source: sources[i % sources.length]!,
      profile: i % 4 === 0 ? 'classic' : i % 4 === 1 ? 'shortlived' : null,
      revoked_at: i % 97 === 0 ? now - DAY : null,
      revocation_reason: i % 97 === 0 ? 1 : null,
      first_seen: notBefore,
      last_seen: now,
    });
    if (renewal) events.push({ id: eventId(now), at: now, type: 'renewed', fingerprint: fp, installation_id: null, detail: JSON.stringify({ source: 'ca', previous: createHash('sha256').update(`bench-${i - 1}`).digest('hex') }) });
    // 60 % deployed: endpoints (some with SNI, some missing), files and lineages.
    const where = i % 10;
    if (where < 6) {
      const kind = where < 4 ? 'endpoint' : where === 4 ? 'file' : 'lineage';
      const location = kind === 'endpoint' ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:443` : kind === 'file' ? `/etc/ssl/bench/${host}.pem` : `/etc/anvil/live/${host}`;
      const sni = kind === 'endpoint' && i % 2 === 0 ? host : '';
      const id = installationId({ kind, location, sni: sni || null });
      installs.push({ id, kind, location, sni, fingerprint: fp, status: i % 50 === 0 ? 'missing' : 'present', chain_error: i % 41 === 0 ? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' : null, hostname_error: null, error: null, first_seen: notBefore, last_seen: now - (i % 3600) * 1000, last_checked: now });
      if (kind === 'lineage' && i % 7 === 0) {
        events.push({ id: eventId(now), at: now, type: 'renewal-failed', fingerprint: fp, installation_id: id, detail: JSON.stringify({ lineage: host, attempt: new Date(now - 3_600_000).toISOString(), error: 'rateLimited', failures: 1 }) });
      }
    }
  }
  const insert = async <T extends 'inv_certificates' | 'inv_installations' | 'inv_events'>(table: T, rows: Array<Schema[T]>, per: number) => {
    await db.transaction().execute(async (tx) => {
      for (let i = 0; i < rows.length; i += per) await tx.insertInto(table).values(rows.slice(i, i + per) as never).execute();
    });
  };
  await insert('inv_certificates', certs, 40);
  await insert('inv_installations', installs, 60);
  await insert('inv_events', events, 100);
}

