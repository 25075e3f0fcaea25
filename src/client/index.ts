/**
 * `anvil/client`: a typed ACME (RFC 8555) client library for any CA.
 *
 * Layers, lowest first: `AcmeHttp` (JWS signing, nonces, retries, size caps, origin checks),
 * `AcmeApi` (one method per RFC 8555 resource), flows (`openAccount`, `obtainCertificate`,
 * `issueToLineage`), solvers (http-01, tls-alpn-01, dns-01 through a `DnsProvider`), the
 * on-disk store (`AccountStore`, `LineageStore`), and renewal (`decide`, `RenewalRunner`,
 * `runDaemon`, RFC 9773 ARI helpers; docs/renewal.md). Every failure is an `AcmeClientError` with a
 * stable `code`; a server's problem document arrives as `AcmeProblemError` with its `type`.
 *
 * @example
 * ```ts
 * import { AcmeHttp, AcmeApi, accountSigner, generateAccountKey, generateCertKey, createCsr,
 *   spkiOf, obtainCertificate, StandaloneHttp01 } from 'anvil/client';
 *
 * const http = new AcmeHttp('https://acme-staging-v02.api.letsencrypt.org/directory');
 * const api = new AcmeApi(http, accountSigner(await generateAccountKey('ES256')));
 * await api.register({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.com'] });
 * const key = await generateCertKey('ecdsa-p256');
 * const identifiers = [{ type: 'dns' as const, value: 'www.example.com' }];
 * const { chainPem } = await obtainCertificate(api, {
 *   identifiers,
 *   solvers: [new StandaloneHttp01({ port: 80 })],
 *   csrDer: await createCsr(key, identifiers),
 *   keySpki: spkiOf(key),
 * });
 * ```
 */
export { AcmeHttp, parseLinks, parseRetryAfter, type AccountSigner, type AcmeResponse, type HttpOptions } from './http.js';
export { AcmeApi, signerSpki, type Account, type ExternalAccountBinding, type NewOrderOptions, type Order } from './api.js';
export { AcmeClientError, AcmeProblemError, type ClientErrorCode } from './errors.js';
export {
  ACCOUNT_KEY_ALGS,
  CERT_KEY_TYPES,
  accountSigner,
  createCsr,
  generateAccountKey,
  generateCertKey,
  keyTypeOf,
  parseCertKeyType,
  privateKeyPem,
  readCsr,
  readPrivateKey,
  spkiOf,
  type AccountKeyAlg,
  type CertKeyType,
  type CsrInfo,
} from './keys.js';
export { KNOWN_CAS } from './directories.js';
export {
  AccountStore,
  LineageStore,
  checkName,
  defaultLineageName,
  defaultStoreRoot,
  type LineageConfig,
  type LineageFiles,
  type SolverConfig,
  type StoredAccount,
} from './store.js';
export { checkChain, isReplacesRefusal, obtainCertificate, type ObtainOptions, type Obtained } from './flows/issue.js';
export { openAccount, rolloverAccount, type OpenAccountOptions, type OpenedAccount } from './flows/account.js';
export { issueToLineage, type IssueToLineageOptions, type IssuedLineage } from './flows/lineage.js';
export {
  AriError,
  certIdOf,
  clampRetryAfter,
  fetchRenewalInfo,
  parseRenewalInfo,
  type RenewalInfo,
  type UnauthenticatedGet,
} from './renewal/ari.js';
export { applyRenewalInfo, decide, type CertFacts, type DecideInput, type DecideOptions, type Decision, type DecisionRule } from './renewal/decide.js';
export { RenewalStateStore, type RenewalState } from './renewal/state.js';
export {
  RenewalRunner,
  caList,
  certFacts,
  summaryLine,
  type CaConnection,
  type CaRef,
  type LineageResult,
  type LineageStatus,
  type RunnerDeps,
  type RunOptions,
  type RunSummary,
} from './renewal/runner.js';
export { runDaemon, type DaemonOptions, type DaemonResult } from './renewal/daemon.js';
export {
  checkRevocation,
  createRevocationChecker,
  isPrivateUrl,
  type RevocationCheckerOptions,
  type RevocationCheckOptions,
  type RevocationCheckResult,
} from './revocation.js';
export { hookEnv, parseHookCommand, runHooks, type HookContext } from './hooks.js';
export { InstallError, installNginx, verifyAfterRenewal, verifyInstallers, type InstallResult, type InstallStep } from './install/nginx.js';
export { StandaloneHttp01, WebrootHttp01 } from './solvers/http01.js';
export { StandaloneTlsAlpn01, acmeTlsCertificate } from './solvers/tls-alpn01.js';
export { Dns01Solver, type Dns01Options } from './solvers/dns01.js';
export type { ChallengeInput, Solver } from './solvers/types.js';
export { DnsProviderError, type DnsProvider, type DnsProviderErrorCode, type TxtRecord } from '../dns/provider.js';
export { createDnsProvider, listDnsProviders, type DnsProviderFactory } from '../dns/registry.js';
