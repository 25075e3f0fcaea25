/**
 * `npm run bench:pg-queries`: database work per issuance on PostgreSQL, counted at the driver: SQL
 * statements, transactions (BEGIN) and ACME requests, over N issuances by one account against an
 * in-process `anvil server` on a fresh database (validation answered by a fake, so only the CA's
 * own work is counted; authorizations are not reused, so every issuance validates). Prints one
 * JSON line. Needs the PostgreSQL of these machines (127.0.0.1:5432).
 *
 *   npm run bench:pg-queries -- [--issuances 50]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { issue } from '../test/helpers/flow.js';
import { startTestServer } from '../test/helpers/in-process.js';
import { createDatabase, dropDatabases, pgUnreachable } from '../test/helpers/postgres.js';
import { RawAcme } from '../test/helpers/raw-acme.js';
import { intOption } from './common.js';

const { values } = parseArgs({ options: { issuances: { type: 'string', default: '50' } } });
const N = intOption('issuances', values.issuances, 1, 1000);
if (pgUnreachable) {
  console.error(`PostgreSQL not reachable: ${pgUnreachable}`);
  process.exit(1);
}

// Count what reaches the database: every query the pool's clients send.
let statements = 0;
let transactions = 0;
const query = pg.Client.prototype.query as (...a: unknown[]) => unknown;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const text = typeof args[0] === 'string' ? args[0] : ((args[0] as { text?: string })?.text ?? '');
  statements++;
  if (/^\s*(begin|start transaction)/i.test(text)) transactions++;
  return query.apply(this, args);
} as typeof pg.Client.prototype.query;

const url = await createDatabase();
const ts = await startTestServer({ storage: { type: 'postgres', url }, acme: { authzReuseDays: 0, maxPendingOrdersPerAccount: 100_000 } });
try {
  const acme = await new RawAcme(ts.directoryUrl).init();
  await acme.register();
  let requests = 0;
  const send = acme.send.bind(acme);
  acme.send = async (u, body, ct) => {
    requests++;
    return send(u, body, ct);
  };
  const fetchNonce = acme.nonce.bind(acme);
  acme.nonce = async () => {
    requests++;
    return fetchNonce();
  };
  const s0 = statements;
  const t0 = transactions;
  for (let i = 0; i < N; i++) await issue(acme, [`q${i}.example.com`]);
  const perIssuance = (x: number) => Number((x / N).toFixed(1));
  console.log(
    JSON.stringify({
      bench: 'pg-queries',
      machine: `${os.cpus().length}x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      issuances: N,
      statementsPerIssuance: perIssuance(statements - s0),
      transactionsPerIssuance: perIssuance(transactions - t0),
      requestsPerIssuance: perIssuance(requests),
      statementsPerRequest: Number(((statements - s0) / requests).toFixed(2)),
      note: 'requests include a HEAD newNonce per signed request and the client polling (50 ms) until authorizations and orders are done',
    }),
  );
} finally {
  await ts.stop();
  await dropDatabases();
}
