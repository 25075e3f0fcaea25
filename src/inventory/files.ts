/**
 * File discovery for the certificate inventory (`anvil inventory scan-files PATH...`): finds the
 * X.509 certificates held in PEM, DER and PKCS#12 files. Pure library code: no CLI, no storage.
 *
 * Contract:
 * - `findCertificateFiles` walks each path (a file, or a directory walked recursively in sorted
 *   name order) and returns one `FoundFile` per certificate file, in walk order. It never throws
 *   for a bad file or directory: problems are reported per file with a stable `error.code`. Each
 *   file (by device and inode) is reported at most once per call, whatever path reaches it.
 * - Files are recognised by content: PEM with a CERTIFICATE, TRUSTED CERTIFICATE or X509
 *   CERTIFICATE block; a file that is exactly one DER X.509 certificate; a PKCS#12 PFX. Anything
 *   else is not reported at all, except that a file with a certificate extension (.pem .crt .cer
 *   .der .p12 .pfx) that is broken is reported with an error. A file without such an extension
 *   is reported only if some certificate in it reads (documentation quoting a placeholder block is
 *   not a certificate file). PEM files holding only other labels (keys, CSRs, CRLs, PKCS7) are not
 *   certificate files. PEM quoted with `\n` escapes (JSON, YAML) is read.
 * - `format` is set whenever the content was recognised, even when `error` is set too (a PEM file
 *   with one bad block of three, a PFX whose certificates are only partly readable); it is
 *   undefined for unreadable, too-large and unrecognisable files. `certificates` holds what could
 *   be read, DER, in file order.
 * - Private keys are never decoded beyond PEM framing, never decrypted (PKCS#12 key bags are
 *   skipped unopened), never copied into results or messages. Messages never contain passwords.
 * - Symbolic links inside directories are skipped unless `followSymlinks`; paths given by the
 *   caller are always followed. Sockets, FIFOs and devices are never opened.
 */
import { X509Certificate, createDecipheriv, createHash, createHmac, getCiphers, pbkdf2Sync, timingSafeEqual } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, readFile, readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { Attribute, EncryptedContentInfo, id_data, id_encryptedData, id_envelopedData, id_signedData } from '@peculiar/asn1-cms';
import {
  AuthenticatedSafe,
  CertBag,
  id_certBag,
  id_pbeWithSHAAnd128BitRC4,
  id_pbeWithSHAAnd2_KeyTripleDES_CBC,
  id_pbeWithSHAAnd3_KeyTripleDES_CBC,
  id_pbeWithSHAAnd128BitRC2_CBC,
  id_pbeWithSHAAnd40BitRC4,
  id_pbewithSHAAnd40BitRC2_CBC,
  id_SafeContents,
  id_x509Certificate,
  PFX,
  SafeContents,
} from '@peculiar/asn1-pfx';
import { AsnConvert, AsnProp, AsnPropTypes, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { readDer, readTlv } from '../lib/der.js';
import { parsePem } from '../lib/pem.js';

export type FileFormat = 'pem' | 'der' | 'pkcs12';

export type FileErrorCode = 'unreadable' | 'too-large' | 'bad-pem' | 'bad-der' | 'pkcs12-password' | 'pkcs12-unsupported' | 'bad-pkcs12';

export interface FoundFile {
  /** Absolute path, as reached by the walk (not resolved through symbolic links). */
  path: string;
  /** Set when the content was recognised, even if `error` is set too. */
  format?: FileFormat;
  /** DER X.509 certificates found, in file order. */
  certificates: Buffer[];
  error?: { code: FileErrorCode; message: string };
}

export interface FileScanOptions {
  /** Default 1 MiB. Larger files are reported as 'too-large' if they have a certificate extension, else skipped. */
  maxFileBytes?: number;
  /** Tried in order after the empty password, which is always tried first. */
  pkcs12Passwords?: string[];
  /** Default false. When true, loops are cut by tracking the directories already visited. */
  followSymlinks?: boolean;
  /** Default 32: how many directory levels below a given directory are entered. */
  maxDepth?: number;
  /** Called for each reported file as soon as it is read, in the order of the result. */
  onFile?: (f: FoundFile) => void;
}

const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;
const DEFAULT_MAX_DEPTH = 32;
const CERT_EXTENSIONS = new Set(['.pem', '.crt', '.cer', '.der', '.p12', '.pfx']);
const CERT_LABELS = new Set(['CERTIFICATE', 'TRUSTED CERTIFICATE', 'X509 CERTIFICATE']);
const CERT_BEGIN = /-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----/;

// ------------------------------------------------------------------ walking

export async function findCertificateFiles(paths: string[], opts: FileScanOptions = {}): Promise<FoundFile[]> {
  const maxFileBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  const passwords = opts.pkcs12Passwords ?? [];
  const follow = opts.followSymlinks ?? false;
  const out: FoundFile[] = [];
  // Device and inode of every file and directory visited: ends symlink loops, and reports a file
  // reached by two paths (overlapping arguments, hard links, followed links) once.
  const seen = new Set<string>();

  const report = (f: FoundFile): void => {
    out.push(f);
    opts.onFile?.(f);
  };

  const scanFile = async (path: string, st: BigIntStats, given: boolean): Promise<void> => {
    if (!firstVisit(seen, st)) return;
    const certExt = hasCertExtension(path);
    if (st.size > BigInt(maxFileBytes)) {
      if (certExt) report(failure(path, 'too-large', `${st.size} bytes, above the limit of ${maxFileBytes}`));
      return;
    }
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (e) {
      if (certExt || given) report(failure(path, 'unreadable', `cannot read: ${errorText(e)}`));
      return;
    }
    if (data.length > maxFileBytes) {
      if (certExt) report(failure(path, 'too-large', `more than ${maxFileBytes} bytes`));
      return;
    }
    const f = readCertificates(path, data, passwords);
    if (f.format !== undefined || f.error !== undefined) report(f);
  };

  const walk = async (dir: string, st: BigIntStats, depth: number): Promise<void> => {
    if (!firstVisit(seen, st)) return;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      report(failure(dir, 'unreadable', `cannot list directory: ${errorText(e)}`));
      return;
    }
    // Code-unit order, not locale order, so the result does not depend on the environment.
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const path = join(dir, name);
      let entry: BigIntStats;
      try {
        entry = await lstat(path, { bigint: true });
        if (entry.isSymbolicLink()) {
          if (!follow) continue;
          entry = await stat(path, { bigint: true });
        }
      } catch (e) {
        // A dangling link, or an entry removed while walking: only worth a line if it looked like a certificate.
        if (hasCertExtension(path)) report(failure(path, 'unreadable', `cannot read: ${errorText(e)}`));
        continue;
      }
      if (entry.isDirectory()) {
        if (depth < maxDepth) await walk(path, entry, depth + 1);
      } else if (entry.isFile()) {
        await scanFile(path, entry, false);
      }
      // Sockets, FIFOs and devices are skipped: reading a FIFO would block the walk.
    }
  };

  for (const given of paths) {
    const path = resolve(given);
    let st: BigIntStats;
    try {
      st = await stat(path, { bigint: true });
    } catch (e) {
      report(failure(path, 'unreadable', `cannot read ${path}: ${errorText(e)}`));
      continue;
    }
    if (st.isDirectory()) await walk(path, st, 0);
    else if (st.isFile()) await scanFile(path, st, true);
    else report(failure(path, 'unreadable', `${path} is neither a regular file nor a directory`));
  }
  return out;
}

function firstVisit(seen: Set<string>, st: BigIntStats): boolean {
  const key = `${st.dev}:${st.ino}`;
  if (seen.has(key)) return false;
  seen.add(key);
  return true;
}

function hasCertExtension(path: string): boolean {
  return CERT_EXTENSIONS.has(extname(path).toLowerCase());
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function failure(path: string, code: FileErrorCode, message: string, format?: FileFormat, certificates: Buffer[] = []): FoundFile {
  const f: FoundFile = { path, certificates, error: { code, message } };
  if (format) f.format = format;
  return f;
}

// ------------------------------------------------------------------ one file

/** A problem that ends the reading of one file; becomes `FoundFile.error`. */
class FileProblem extends Error {
  constructor(
    readonly code: FileErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'FileProblem';
  }
}

/**
 * The certificates in one file's bytes. A file that is not a certificate file comes back with
 * neither `format` nor `error` (and no certificates); `findCertificateFiles` does not report it.
 * Never throws.
 */
export function readCertificates(path: string, data: Buffer, passwords: string[] = []): FoundFile {
  const ext = extname(path).toLowerCase();
  const certExt = CERT_EXTENSIONS.has(ext);
  try {
    // latin1 maps every byte to one character, so binary files cannot break the search.
    const text = data.toString('latin1');
    if (CERT_BEGIN.test(text)) {
      const pem = readPem(path, text);
      // Documentation quoting a placeholder block is not a certificate file; a .pem that fails is.
      return pem.certificates.length || certExt ? pem : { path, certificates: [] };
    }
    if (isDerCertificate(data)) return { path, format: 'der', certificates: [Buffer.from(data)] };
    if (ext === '.p12' || ext === '.pfx' || looksLikePfx(data)) return readPkcs12(path, data, passwords);
    if (!certExt) return { path, certificates: [] };
    if (/-----BEGIN [A-Z0-9 ]+-----/.test(text)) return { path, certificates: [] }; // a key, CSR, CRL... in PEM
    if (ext === '.pem') return failure(path, 'bad-pem', 'no PEM certificate block in the file');
    return failure(path, 'bad-der', 'neither a PEM certificate nor one DER X.509 certificate');
  } catch (e) {
    // Not expected: the readers report problems themselves. Keep the caller's walk going, and keep
    // the message generic, since an unexpected error's text could quote the file.
    const code: FileErrorCode = ext === '.p12' || ext === '.pfx' ? 'bad-pkcs12' : ext === '.pem' ? 'bad-pem' : 'bad-der';
    const name = e instanceof Error ? e.name : typeof e;
    return certExt ? failure(path, code, `could not be read (unexpected ${name})`) : { path, certificates: [] };
  }
}

/** True if `der` is exactly one DER element that node:crypto accepts as an X.509 certificate. */
function isDerCertificate(der: Buffer): boolean {
  try {
    if (readDer(der).tag !== 0x30) return false;
    new X509Certificate(der);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ PEM

function readPem(path: string, text: string): FoundFile {
  const certificates: Buffer[] = [];
  const problems: string[] = [];
  let blockNumber = 0;
  let certBlocks = 0;
  // Base64 has no backslash, so a literal "\n" can only be an escape: PEM quoted in JSON or YAML reads too.
  for (const block of parsePem(text.replace(/\\r\\n|\\n/g, '\n'))) {
    blockNumber++;
    if (!CERT_LABELS.has(block.label)) continue; // keys and the rest: dropped here, never copied
    certBlocks++;
    const der = block.label === 'TRUSTED CERTIFICATE' ? firstElement(block.der) : block.der;
    if (der && isDerCertificate(der)) certificates.push(der);
    else problems.push(`PEM block ${blockNumber} (${block.label}) is not a valid X.509 certificate`);
  }
  const begun = text.match(new RegExp(CERT_BEGIN.source, 'g'))?.length ?? 0;
  if (begun > certBlocks) problems.push(`${begun - certBlocks} certificate block(s) without a matching END line`);
  if (problems.length) return failure(path, 'bad-pem', problems.join('; '), 'pem', certificates);
  return { path, format: 'pem', certificates };
}

/**
 * OpenSSL's TRUSTED CERTIFICATE is the certificate followed by its trust settings (X509_AUX):
 * keep only the first element.
 */
function firstElement(der: Buffer): Buffer | undefined {
  try {
    return der.subarray(0, readTlv(der, 0).end);
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------ PKCS#12 (RFC 7292)

// Schemas the @peculiar packages do not provide.

/** RFC 5652 §8: EncryptedData ::= SEQUENCE { version, encryptedContentInfo, unprotectedAttrs [1] IMPLICIT OPTIONAL } */
class EncryptedData {
  @AsnProp({ type: AsnPropTypes.Integer })
  version = 0;

  @AsnProp({ type: EncryptedContentInfo })
  encryptedContentInfo = new EncryptedContentInfo();

  @AsnProp({ type: Attribute, repeated: 'set', context: 1, implicit: true, optional: true })
  unprotectedAttrs?: Attribute[];
}

/** RFC 8018 §A.4: PBES2-params ::= SEQUENCE { keyDerivationFunc, encryptionScheme } */
class Pbes2Params {
  @AsnProp({ type: AlgorithmIdentifier })
  keyDerivationFunc = new AlgorithmIdentifier();

  @AsnProp({ type: AlgorithmIdentifier })
  encryptionScheme = new AlgorithmIdentifier();
}

/**
 * RFC 8018 §A.2: PBKDF2-params ::= SEQUENCE { salt CHOICE { specified OCTET STRING, otherSource },
 * iterationCount, keyLength OPTIONAL, prf DEFAULT hmacWithSHA1 }. Only the `specified` salt
 * exists in practice; the other choice fails to parse and is reported as bad-pkcs12.
 */
class Pbkdf2Params {
  @AsnProp({ type: OctetString })
  salt = new OctetString();

  @AsnProp({ type: AsnPropTypes.Integer })
  iterationCount = 0;

  @AsnProp({ type: AsnPropTypes.Integer, optional: true })
  keyLength?: number;

  @AsnProp({ type: AlgorithmIdentifier, optional: true })
  prf?: AlgorithmIdentifier;
}

/** RFC 7292 §C: pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER } */
class Pkcs12PbeParams {
  @AsnProp({ type: OctetString })
  salt = new OctetString();

  @AsnProp({ type: AsnPropTypes.Integer })
  iterations = 0;
}

interface HashSpec {
  name: string;
  /** Output length (RFC 7292 §B.2 `u`). */
  u: number;
  /** Block length (RFC 7292 §B.2 `v`). */
  v: number;
}

const SHA1: HashSpec = { name: 'sha1', u: 20, v: 64 };

/** MacData digest algorithms, by OID. */
const MAC_DIGESTS = new Map<string, HashSpec>([
  ['1.3.14.3.2.26', SHA1],
  ['2.16.840.1.101.3.4.2.4', { name: 'sha224', u: 28, v: 64 }],
  ['2.16.840.1.101.3.4.2.1', { name: 'sha256', u: 32, v: 64 }],
  ['2.16.840.1.101.3.4.2.2', { name: 'sha384', u: 48, v: 128 }],
  ['2.16.840.1.101.3.4.2.3', { name: 'sha512', u: 64, v: 128 }],
]);

/** RFC 7292 §C: the PKCS#12 password-based encryption schemes, all keyed through the §B KDF with SHA-1. */
const PKCS12_PBE = new Map<string, { name: string; cipher: string; keyLength: number; ivLength: number }>([
  [id_pbeWithSHAAnd3_KeyTripleDES_CBC, { name: 'pbeWithSHAAnd3-KeyTripleDES-CBC', cipher: 'des-ede3-cbc', keyLength: 24, ivLength: 8 }],
  [id_pbeWithSHAAnd2_KeyTripleDES_CBC, { name: 'pbeWithSHAAnd2-KeyTripleDES-CBC', cipher: 'des-ede-cbc', keyLength: 16, ivLength: 8 }],
  [id_pbeWithSHAAnd128BitRC2_CBC, { name: 'pbeWithSHAAnd128BitRC2-CBC', cipher: 'rc2-cbc', keyLength: 16, ivLength: 8 }],
  [id_pbewithSHAAnd40BitRC2_CBC, { name: 'pbeWithSHAAnd40BitRC2-CBC', cipher: 'rc2-40-cbc', keyLength: 5, ivLength: 8 }],
  [id_pbeWithSHAAnd128BitRC4, { name: 'pbeWithSHAAnd128BitRC4', cipher: 'rc4', keyLength: 16, ivLength: 0 }],
  [id_pbeWithSHAAnd40BitRC4, { name: 'pbeWithSHAAnd40BitRC4', cipher: 'rc4-40', keyLength: 5, ivLength: 0 }],
]);

const ID_PBES2 = '1.2.840.113549.1.5.13';
const ID_PBKDF2 = '1.2.840.113549.1.5.12';
const ID_HMAC_WITH_SHA1 = '1.2.840.113549.2.7';

/** RFC 8018 §B.1.1: PBKDF2 pseudo-random functions, by OID. */
const PBKDF2_PRFS = new Map<string, string>([
  [ID_HMAC_WITH_SHA1, 'sha1'],
  ['1.2.840.113549.2.8', 'sha224'],
  ['1.2.840.113549.2.9', 'sha256'],
  ['1.2.840.113549.2.10', 'sha384'],
  ['1.2.840.113549.2.11', 'sha512'],
]);

/** RFC 8018 §B.2 and NIST CSOR: PBES2 encryption schemes (CBC, IV as OCTET STRING parameters), by OID. */
const PBES2_CIPHERS = new Map<string, { cipher: string; keyLength: number }>([
  ['2.16.840.1.101.3.4.1.2', { cipher: 'aes-128-cbc', keyLength: 16 }],
  ['2.16.840.1.101.3.4.1.22', { cipher: 'aes-192-cbc', keyLength: 24 }],
  ['2.16.840.1.101.3.4.1.42', { cipher: 'aes-256-cbc', keyLength: 32 }],
  ['1.2.840.113549.3.7', { cipher: 'des-ede3-cbc', keyLength: 24 }],
]);

/** Key-derivation iterations one file may cost, summed over every password tried. */
const MAX_KDF_ITERATIONS_PER_FILE = 4_000_000;
/** Nested safeContentsBag levels followed. */
const MAX_SAFE_CONTENTS_DEPTH = 8;

const UNSUPPORTED_HINT = 'convert it with `openssl pkcs12 -in FILE -nokeys -out FILE.pem` (add -legacy on OpenSSL 3), or run Node with --openssl-legacy-provider';

/** One candidate password in the encodings the two key-derivation families want. */
interface Secret {
  /** PBES2/PBKDF2: the password bytes as OpenSSL passes them, UTF-8. */
  utf8: Buffer;
  /**
   * RFC 7292 §B.1: BMPString with a two-zero-octet terminator. For the empty password OpenSSL
   * also accepts no bytes at all (a NULL password), so both are tried.
   */
  bmp: Buffer[];
}

function secretOf(password: string): Secret {
  const utf16be = Buffer.from(password, 'utf16le').swap16();
  const bmp = Buffer.concat([utf16be, Buffer.alloc(2)]);
  return { utf8: Buffer.from(password, 'utf8'), bmp: password === '' ? [bmp, Buffer.alloc(0)] : [bmp] };
}

/** Caps the key-derivation work one file may cause, so a hostile file cannot stall the scan. */
class KdfBudget {
  private left = MAX_KDF_ITERATIONS_PER_FILE;

  spend(iterations: number): void {
    if (!Number.isSafeInteger(iterations) || iterations < 1) throw new FileProblem('bad-pkcs12', `bad iteration count ${iterations}`);
    this.left -= iterations;
    if (this.left < 0) {
      throw new FileProblem('pkcs12-unsupported', `key derivation would need more than ${MAX_KDF_ITERATIONS_PER_FILE} iterations in total (iteration count ${iterations})`);
    }
  }
}

/**
 * RFC 7292 §B.2: the PKCS#12 key-derivation function. `id` is 1 for an encryption key, 2 for an
 * IV, 3 for a MAC key.
 */
function pkcs12Kdf(hash: HashSpec, password: Buffer, salt: Buffer, id: 1 | 2 | 3, iterations: number, n: number, budget: KdfBudget): Buffer {
  budget.spend(iterations);
  const { name, u, v } = hash;
  // §B.2 steps 1-3: D is v copies of ID; S and P are the salt and password repeated to a multiple of v.
  const repeatToBlocks = (b: Buffer): Buffer => {
    const out = Buffer.alloc(b.length === 0 ? 0 : v * Math.ceil(b.length / v));
    for (let i = 0; i < out.length; i++) out[i] = b[i % b.length]!;
    return out;
  };
  const d = Buffer.alloc(v, id);
  const iBuf = Buffer.concat([repeatToBlocks(salt), repeatToBlocks(password)]);
  const c = Math.ceil(n / u);
  const out = Buffer.alloc(c * u);
  for (let i = 0; i < c; i++) {
    // §B.2 step 6a: A_i = H^r(D || I).
    let a = createHash(name).update(d).update(iBuf).digest();
    for (let r = 1; r < iterations; r++) a = createHash(name).update(a).digest();
    a.copy(out, i * u);
    if (i + 1 === c) break;
    // §B.2 steps 6b-6c: B is A_i repeated to v octets; each v-octet block I_j becomes (I_j + B + 1) mod 2^(8v).
    const b = repeatToBlocks(a).subarray(0, v);
    for (let j = 0; j < iBuf.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = iBuf[j + k]! + b[k]! + carry;
        iBuf[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return out.subarray(0, n);
}

/**
 * The value of an OCTET STRING given with its header, in BER: primitive, or constructed from
 * segments with a definite or indefinite length (X.690 §8.7.3). asn1-schema's OctetString returns
 * nothing for the constructed form, which some PKCS#12 writers use.
 */
function octetStringValue(encoded: ArrayBuffer | Uint8Array): Buffer {
  const buf = Buffer.from(encoded instanceof ArrayBuffer ? new Uint8Array(encoded) : encoded);
  const parts: Buffer[] = [];
  const end = readOctetString(buf, 0, buf.length, parts, 0);
  if (end !== buf.length) throw new FileProblem('bad-pkcs12', 'trailing bytes after an OCTET STRING');
  return Buffer.concat(parts);
}

function readOctetString(buf: Buffer, at: number, limit: number, parts: Buffer[], depth: number): number {
  const bad = (why: string): FileProblem => new FileProblem('bad-pkcs12', `malformed OCTET STRING: ${why}`);
  if (depth > 16) throw bad('nested too deeply');
  if (at + 2 > limit) throw bad('truncated');
  const tag = buf[at]!;
  let len = buf[at + 1]!;
  let p = at + 2;
  let indefinite = false;
  if (len === 0x80) indefinite = true;
  else if (len & 0x80) {
    const k = len & 0x7f;
    if (k > 4 || p + k > limit) throw bad('bad length');
    len = 0;
    for (let i = 0; i < k; i++) len = len * 256 + buf[p + i]!;
    p += k;
  }
  if (tag === 0x04 && !indefinite) {
    if (p + len > limit) throw bad('truncated');
    parts.push(buf.subarray(p, p + len));
    return p + len;
  }
  if (tag !== 0x24) throw bad(`unexpected tag 0x${tag.toString(16)}`);
  const end = indefinite ? limit : p + len;
  if (end > limit) throw bad('truncated');
  while (p < end) {
    if (indefinite && buf[p] === 0 && buf[p + 1] === 0) return p + 2;
    p = readOctetString(buf, p, end, parts, depth + 1);
  }
  if (indefinite) throw bad('no end-of-contents octets');
  return p;
}

function looksLikePfx(data: Buffer): boolean {
  if (data[0] !== 0x30) return false;
  try {
    const pfx = AsnConvert.parse(data, PFX);
    return pfx.version === 3 && (pfx.authSafe.contentType === id_data || pfx.authSafe.contentType === id_signedData);
  } catch {
    return false;
  }
}

/** What reading a PKCS#12 file found, and what went wrong along the way. */
interface Pkcs12State {
  certificates: Buffer[];
  problems: FileProblem[];
  budget: KdfBudget;
}

function readPkcs12(path: string, data: Buffer, passwords: string[]): FoundFile {
  const state: Pkcs12State = { certificates: [], problems: [], budget: new KdfBudget() };
  let format: FileFormat | undefined;
  try {
    const pfx = parseOr(data, PFX, 'not a PKCS#12 (PFX) structure');
    // RFC 7292 §4: version v3; authSafe is data (password integrity) or signedData (public-key integrity).
    if (pfx.version !== 3) throw new FileProblem('bad-pkcs12', `PFX version ${pfx.version}, expected 3`);
    format = 'pkcs12';
    if (pfx.authSafe.contentType === id_signedData) {
      throw new FileProblem('pkcs12-unsupported', 'public-key integrity mode (signedData authSafe) is not supported');
    }
    if (pfx.authSafe.contentType !== id_data) throw new FileProblem('bad-pkcs12', `authSafe content type ${pfx.authSafe.contentType}`);
    const authSafeOctets = octetStringValue(pfx.authSafe.content);

    const candidates = ['', ...passwords.filter((p) => p !== '')].map(secretOf);
    // asn1-schema leaves its default MacData in place when the field is absent: an empty OID means "no MAC".
    const macPresent = pfx.macData.mac.digestAlgorithm.algorithm !== '';
    let secrets = candidates;
    let macFailed = false;
    if (macPresent) {
      const verified = verifyMac(pfx, authSafeOctets, candidates, state.budget);
      if (verified) {
        secrets = [verified, ...candidates.filter((c) => !c.utf8.equals(verified.utf8))];
      } else {
        macFailed = true;
        state.problems.push(
          new FileProblem('pkcs12-password', `the MAC does not verify with the empty password${passwords.length ? ` or any of the ${passwords.length} password(s) given` : ''}`),
        );
      }
    }

    const authSafe = parseOr(authSafeOctets, AuthenticatedSafe, 'the AuthenticatedSafe does not parse');
    authSafe.forEach((contentInfo, index) => {
      const where = `AuthenticatedSafe entry ${index + 1}`;
      try {
        if (contentInfo.contentType === id_data) {
          readSafeContents(octetStringValue(contentInfo.content), state, where);
        } else if (contentInfo.contentType === id_encryptedData) {
          // Without the MAC password there is nothing to decrypt with; the problem is already recorded.
          if (macFailed) return;
          readSafeContents(decryptSafeContents(contentInfo.content, secrets, !macPresent, state.budget), state, where);
        } else if (contentInfo.contentType === id_envelopedData) {
          throw new FileProblem('pkcs12-unsupported', 'public-key privacy mode (envelopedData) is not supported');
        } else {
          throw new FileProblem('bad-pkcs12', `unknown content type ${contentInfo.contentType}`);
        }
      } catch (e) {
        if (!(e instanceof FileProblem)) throw e;
        state.problems.push(new FileProblem(e.code, `${where}: ${e.message}`));
      }
    });
  } catch (e) {
    if (!(e instanceof FileProblem)) throw e;
    state.problems.push(e);
  }
  const first = state.problems[0];
  if (first) return failure(path, first.code, state.problems.map((p) => p.message).join('; '), format, state.certificates);
  return { path, format: 'pkcs12', certificates: state.certificates };
}

/** RFC 7292 §5.1 and §B.4: the candidate whose §B KDF MAC key makes the HMAC match, with the matching BMP encoding first. */
function verifyMac(pfx: PFX, authSafeOctets: Buffer, candidates: Secret[], budget: KdfBudget): Secret | undefined {
  const macData = pfx.macData;
  const oid = macData.mac.digestAlgorithm.algorithm;
  const hash = MAC_DIGESTS.get(oid);
  if (!hash) throw new FileProblem('pkcs12-unsupported', `MAC digest algorithm ${oid} is not supported`);
  const expected = Buffer.from(macData.mac.digest.buffer);
  const salt = Buffer.from(macData.macSalt.buffer);
  for (const candidate of candidates) {
    for (const bmp of candidate.bmp) {
      const key = pkcs12Kdf(hash, bmp, salt, 3, macData.iterations, hash.u, budget);
      const mac = createHmac(hash.name, key).update(authSafeOctets).digest();
      if (mac.length === expected.length && timingSafeEqual(mac, expected)) {
        return { utf8: candidate.utf8, bmp: [bmp, ...candidate.bmp.filter((b) => b !== bmp)] };
      }
    }
  }
  return undefined;
}

/**
 * The plaintext SafeContents of an encryptedData ContentInfo. The first candidate that decrypts to
 * something that parses wins; after a verified MAC that is the MAC's password, tried first.
 */
function decryptSafeContents(content: ArrayBuffer, secrets: Secret[], noMac: boolean, budget: KdfBudget): Buffer {
  const encrypted = parseOr(content, EncryptedData, 'encryptedData does not parse');
  const info = encrypted.encryptedContentInfo;
  const ec = info.encryptedContent;
  const ciphertext = ec?.value ? Buffer.from(ec.value.buffer) : Buffer.concat((ec?.constructedValue ?? []).map((o) => Buffer.from(o.buffer)));
  const alg = info.contentEncryptionAlgorithm;
  for (const secret of secrets) {
    for (const attempt of decryptionAttempts(alg, secret, budget)) {
      let plain: Buffer;
      try {
        plain = attempt(ciphertext);
        AsnConvert.parse(plain, SafeContents);
      } catch {
        continue; // wrong password: bad padding, or garbage that does not parse
      }
      return plain;
    }
  }
  if (noMac) throw new FileProblem('pkcs12-password', 'no MAC, and the SafeContents does not decrypt with any password tried');
  throw new FileProblem('bad-pkcs12', 'the SafeContents does not decrypt with the password that verified the MAC');
}

/**
 * Decryption functions for one password: one for each encoding of it that the algorithm might use.
 * Throws FileProblem for algorithms not supported here or on this Node.
 */
function decryptionAttempts(alg: AlgorithmIdentifier, secret: Secret, budget: KdfBudget): Array<(ciphertext: Buffer) => Buffer> {
  const pbe = PKCS12_PBE.get(alg.algorithm);
  if (pbe) {
    if (!cipherAvailable(pbe)) {
      throw new FileProblem('pkcs12-unsupported', `encrypted with ${pbe.name}, which this Node's OpenSSL does not offer (legacy provider not loaded); ${UNSUPPORTED_HINT}`);
    }
    const params = parseParams(alg, Pkcs12PbeParams, pbe.name);
    const salt = Buffer.from(params.salt.buffer);
    // RFC 7292 §B.2 with SHA-1 (§C): ID 1 derives the key, ID 2 the IV; the password is a BMPString.
    return secret.bmp.map((bmp) => (ciphertext: Buffer) => {
      const key = pkcs12Kdf(SHA1, bmp, salt, 1, params.iterations, pbe.keyLength, budget);
      const iv = pbe.ivLength ? pkcs12Kdf(SHA1, bmp, salt, 2, params.iterations, pbe.ivLength, budget) : null;
      return decipher(pbe.cipher, key, iv, ciphertext);
    });
  }
  if (alg.algorithm === ID_PBES2) {
    // RFC 8018 §6.2: PBES2 = PBKDF2 for the key, then a block cipher; OpenSSL feeds PBKDF2 the password bytes as given (UTF-8).
    const params = parseParams(alg, Pbes2Params, 'PBES2');
    const kdf = params.keyDerivationFunc;
    if (kdf.algorithm !== ID_PBKDF2) throw new FileProblem('pkcs12-unsupported', `PBES2 key derivation ${kdf.algorithm} is not supported (only PBKDF2)`);
    const pbkdf2 = parseParams(kdf, Pbkdf2Params, 'PBKDF2');
    const prfOid = pbkdf2.prf?.algorithm ?? ID_HMAC_WITH_SHA1;
    const digest = PBKDF2_PRFS.get(prfOid);
    if (!digest) throw new FileProblem('pkcs12-unsupported', `PBKDF2 PRF ${prfOid} is not supported`);
    const scheme = PBES2_CIPHERS.get(params.encryptionScheme.algorithm);
    if (!scheme) throw new FileProblem('pkcs12-unsupported', `PBES2 encryption scheme ${params.encryptionScheme.algorithm} is not supported`);
    if (pbkdf2.keyLength !== undefined && pbkdf2.keyLength !== scheme.keyLength) {
      throw new FileProblem('bad-pkcs12', `PBKDF2 key length ${pbkdf2.keyLength} does not fit ${scheme.cipher}`);
    }
    const iv = Buffer.from(parseParams(params.encryptionScheme, OctetString, scheme.cipher).buffer);
    const salt = Buffer.from(pbkdf2.salt.buffer);
    return [
      (ciphertext: Buffer) => {
        budget.spend(pbkdf2.iterationCount);
        const key = pbkdf2Sync(secret.utf8, salt, pbkdf2.iterationCount, scheme.keyLength, digest);
        return decipher(scheme.cipher, key, iv, ciphertext);
      },
    ];
  }
  throw new FileProblem('pkcs12-unsupported', `encryption algorithm ${alg.algorithm} is not supported`);
}

function parseParams<T>(alg: AlgorithmIdentifier, type: new () => T, what: string): T {
  try {
    if (!alg.parameters) throw new Error('missing');
    return AsnConvert.parse(alg.parameters, type);
  } catch {
    throw new FileProblem('bad-pkcs12', `${what} parameters do not parse`);
  }
}

let ciphers: Set<string> | undefined;

function cipherAvailable(pbe: { cipher: string; keyLength: number; ivLength: number }): boolean {
  ciphers ??= new Set(getCiphers());
  if (!ciphers.has(pbe.cipher)) return false;
  try {
    // Listed is not always usable: with OpenSSL 3 a legacy cipher may be named yet have no provider.
    createDecipheriv(pbe.cipher, Buffer.alloc(pbe.keyLength), pbe.ivLength ? Buffer.alloc(pbe.ivLength) : null);
    return true;
  } catch {
    return false;
  }
}

/** Parses `data` as `type`, or fails the file as bad-pkcs12 with `what`. */
function parseOr<T>(data: ArrayBuffer | ArrayBufferView, type: new () => T, what: string): T {
  try {
    return AsnConvert.parse(data, type);
  } catch {
    throw new FileProblem('bad-pkcs12', what);
  }
}

function decipher(cipher: string, key: Buffer, iv: Buffer | null, ciphertext: Buffer): Buffer {
  const d = createDecipheriv(cipher, key, iv);
  return Buffer.concat([d.update(ciphertext), d.final()]);
}

/** RFC 7292 §4.2: collects the certBags holding X.509 certificates; key bags are skipped unopened. */
function readSafeContents(octets: Buffer, state: Pkcs12State, where: string, depth = 0): void {
  const bags = parseOr(octets, SafeContents, 'SafeContents does not parse');
  bags.forEach((bag, index) => {
    if (bag.bagId === id_certBag) {
      let der: Buffer | undefined;
      try {
        const certBag = AsnConvert.parse(bag.bagValue, CertBag);
        if (certBag.certId !== id_x509Certificate) return; // SDSI certificates: not X.509
        der = octetStringValue(certBag.certValue);
      } catch {
        // der stays undefined
      }
      if (der && isDerCertificate(der)) state.certificates.push(der);
      else state.problems.push(new FileProblem('bad-pkcs12', `${where}: safe bag ${index + 1} is a certBag without a valid X.509 certificate`));
    } else if (bag.bagId === id_SafeContents) {
      if (depth >= MAX_SAFE_CONTENTS_DEPTH) throw new FileProblem('bad-pkcs12', `safeContentsBag nested more than ${MAX_SAFE_CONTENTS_DEPTH} deep`);
      readSafeContents(Buffer.from(bag.bagValue), state, `${where}, safeContentsBag ${index + 1}`, depth + 1);
    }
    // keyBag, pkcs8ShroudedKeyBag, crlBag, secretBag: not certificates, left alone.
  });
}
