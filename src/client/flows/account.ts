/**
 * Accounts kept in the client's store: load or register (RFC 8555 §7.3, terms of service, EAB
 * §7.3.4), key rollover (§7.3.5) that survives a crash half-way, deactivation (§7.3.6).
 */
import { AcmeApi, type ExternalAccountBinding } from '../api.js';
import { AcmeClientError, AcmeProblemError } from '../errors.js';
import type { AcmeHttp } from '../http.js';
import { accountSigner, generateAccountKey, privateKeyPem, readPrivateKey, type AccountKeyAlg } from '../keys.js';
import type { AccountStore, StoredAccount } from '../store.js';

export interface OpenAccountOptions {
  store: AccountStore;
  http: AcmeHttp;
  /** Account name in the store (default "default"). */
  name?: string;
  /** Register when the store has no account for this server. */
  create?: {
    contact?: string[];
    agreeTos?: boolean;
    eab?: ExternalAccountBinding;
    alg?: AccountKeyAlg;
  };
  sleep?: (ms: number) => Promise<void>;
  onStep?: (msg: string) => void;
}

export interface OpenedAccount {
  api: AcmeApi;
  account: StoredAccount;
  /** True when this call registered it. */
  created: boolean;
}

async function withKey(http: AcmeHttp, keyPem: string, sleep?: (ms: number) => Promise<void>): Promise<AcmeApi> {
  return new AcmeApi(http, accountSigner(readPrivateKey(keyPem, 'the stored account key')), sleep);
}

function isNoAccount(e: unknown): boolean {
  return e instanceof AcmeProblemError && (e.type === 'accountDoesNotExist' || e.type === 'unauthorized');
}

/**
 * An interrupted rollover leaves key.next.pem beside key.pem; whichever key the server knows wins
 * and the other is dropped.
 */
async function finishRollover(o: OpenAccountOptions, name: string, dirUrl: string, keyPem: string, nextKeyPem: string): Promise<string> {
  const next = await withKey(o.http, nextKeyPem, o.sleep);
  try {
    await next.find();
    await o.store.promoteNextKey(dirUrl, name);
    o.onStep?.('finished an interrupted key rollover');
    return nextKeyPem;
  } catch (e) {
    if (!isNoAccount(e)) throw e;
    await o.store.dropNextKey(dirUrl, name);
    return keyPem;
  }
}

export async function openAccount(o: OpenAccountOptions): Promise<OpenedAccount> {
  const name = o.name ?? 'default';
  const dirUrl = o.http.directoryUrl;
  const { account, keyPem: storedKey, nextKeyPem } = await o.store.load(dirUrl, name);
  let keyPem = storedKey;
  if (account && keyPem) {
    if (nextKeyPem) keyPem = await finishRollover(o, name, dirUrl, keyPem, nextKeyPem);
    const api = await withKey(o.http, keyPem, o.sleep);
    api.useAccount(account.url);
    return { api, account, created: false };
  }
  if (!o.create) {
    throw new AcmeClientError('BAD_INPUT', `no account "${name}" for ${dirUrl} in ${o.store.root}; create one with "anvil account register"`);
  }
  const d = await o.http.directory();
  const meta = d.meta ?? {};
  if (meta.termsOfService && !o.create.agreeTos) {
    throw new AcmeClientError('BAD_INPUT', `the CA asks you to agree to its terms of service (${meta.termsOfService}); read them, then pass --agree-tos`);
  }
  if (meta.externalAccountRequired && !o.create.eab) {
    throw new AcmeClientError('BAD_INPUT', `the CA requires External Account Binding: pass --eab-kid and --eab-hmac-key (the CA hands them out)`);
  }
  // A key left by a registration that crashed before account.json was written is used again, so
  // the server's existing account is found instead of a second one being made.
  const key = keyPem ? readPrivateKey(keyPem, 'the stored account key') : await generateAccountKey(o.create.alg ?? 'ES256');
  const pem = keyPem ?? privateKeyPem(key);
  const stored: StoredAccount = {
    name,
    directoryUrl: dirUrl,
    url: '',
    alg: accountSigner(key).alg,
    contact: o.create.contact ?? [],
    termsOfServiceAgreed: Boolean(o.create.agreeTos),
    ...(o.create.eab ? { eabKid: o.create.eab.kid } : {}),
    createdAt: new Date().toISOString(),
  };
  if (!keyPem) await o.store.save(stored, pem).catch((e: unknown) => {
    throw new AcmeClientError('STORE', `cannot write the account key under ${o.store.root}: ${(e as Error).message}`);
  });
  const api = new AcmeApi(o.http, accountSigner(key), o.sleep);
  o.onStep?.('registering an account');
  const acc = await api.register({
    ...(o.create.contact?.length ? { contact: o.create.contact } : {}),
    termsOfServiceAgreed: Boolean(o.create.agreeTos),
    ...(o.create.eab ? { eab: o.create.eab } : {}),
  });
  stored.url = acc.url;
  if (Array.isArray(acc.body.contact)) stored.contact = acc.body.contact;
  await o.store.save(stored);
  return { api, account: stored, created: true };
}

/** RFC 8555 §7.3.5, with the new key on disk before the server hears of it. */
export async function rolloverAccount(o: { store: AccountStore; api: AcmeApi; account: StoredAccount; alg?: AccountKeyAlg }): Promise<StoredAccount> {
  const key = await generateAccountKey(o.alg ?? (o.account.alg === 'ES512' ? 'ES384' : o.account.alg));
  await o.store.stageNextKey(o.account.directoryUrl, o.account.name, privateKeyPem(key));
  try {
    await o.api.rollover(accountSigner(key));
  } catch (e) {
    await o.store.dropNextKey(o.account.directoryUrl, o.account.name);
    throw e;
  }
  await o.store.promoteNextKey(o.account.directoryUrl, o.account.name);
  const updated = { ...o.account, alg: accountSigner(key).alg };
  await o.store.save(updated);
  return updated;
}
