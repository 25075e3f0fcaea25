/** The validator: dispatches by challenge type, bounds the whole attempt in time, never throws. */
import type { Logger } from '../../lib/logger.js';
import { AcmeProblem } from '../../protocol/problems.js';
import { validateDns01 } from './dns01.js';
import { validateHttp01 } from './http01.js';
import { createDnsLookup, type DnsLookup } from './resolver.js';
import { validateTlsAlpn01 } from './tls-alpn01.js';
import { checkCaa } from './caa.js';
import type { CaaCheck, ValidationConfig, ValidationRequest, ValidationResult, Validator } from './types.js';

export function createValidator(cfg: ValidationConfig, deps: { dns?: DnsLookup; logger?: Logger } = {}): Validator {
  const dns = deps.dns ?? createDnsLookup({ servers: [...cfg.resolvers], timeoutMs: cfg.dnsTimeoutMs });
  const caa = cfg.caa;
  return {
    ...(caa
      ? {
          async checkCaa(req: CaaCheck) {
            return checkCaa(req, caa.identities, dns);
          },
        }
      : {}),
    async validate(req: ValidationRequest): Promise<ValidationResult> {
      const signal = AbortSignal.timeout(cfg.totalTimeoutMs);
      const work = (async (): Promise<ValidationResult> => {
        switch (req.type) {
          case 'http-01':
            return validateHttp01(req.identifier, req.token, req.keyAuthorization, cfg, dns, signal);
          case 'dns-01':
            return validateDns01(req.identifier, req.keyAuthorization, dns);
          case 'tls-alpn-01':
            return validateTlsAlpn01(req.identifier, req.keyAuthorization, cfg, dns, signal);
        }
      })();
      const timeout = new Promise<ValidationResult>((resolve) => {
        signal.addEventListener('abort', () =>
          resolve({ ok: false, problem: new AcmeProblem('connection', `validation timed out after ${cfg.totalTimeoutMs} ms`), records: [] }),
        );
      });
      try {
        return await Promise.race([work, timeout]);
      } catch (e) {
        // Never leak internals into a challenge error; the operator finds the details in the log.
        deps.logger?.error({ err: e, type: req.type, identifier: req.identifier.value }, 'validator error');
        return { ok: false, problem: new AcmeProblem('connection', `${req.type} validation of ${req.identifier.value} failed`), records: [] };
      }
    },
  };
}
