/**
 * A small, careful reader of nginx configuration files, and the one edit anvil makes to them:
 * pointing a server block's `ssl_certificate` and `ssl_certificate_key` at a lineage's live files.
 *
 * The tokenizer follows nginx's own (ngx_conf_read_token): words end at whitespace, `;` or `{`
 * (but `${` belongs to a variable); `#` starts a comment only where a token could start; '…' and
 * "…" are strings with backslash escapes. Every token keeps its offsets, so an edit replaces only
 * the arguments it changes or inserts whole lines: comments, blank lines, indentation and every
 * untouched byte stay as they were.
 */
import { AcmeClientError } from '../errors.js';

export interface NginxToken {
  /** The value nginx sees (quotes removed, escapes applied). */
  value: string;
  start: number;
  end: number;
  quoted: boolean;
}

export interface NginxDirective {
  name: string;
  nameToken: NginxToken;
  args: NginxToken[];
  /** Offset of the name, and just past the `;` or the block's `}`. */
  start: number;
  end: number;
  /** 1-based line of the name, for messages. */
  line: number;
  block?: { open: number; close: number; children: NginxDirective[] };
  parent: NginxDirective | null;
}

type Lexeme = { kind: 'word'; token: NginxToken } | { kind: ';' | '{' | '}'; start: number; end: number };

function lineOf(text: string, offset: number): number {
  let n = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

function syntaxError(text: string, file: string, offset: number, msg: string): AcmeClientError {
  return new AcmeClientError('BAD_INPUT', `${file}:${lineOf(text, offset)}: ${msg} (anvil reads nginx configuration as nginx does; fix the file, or check it with nginx -t)`);
}

const SPACE = new Set([' ', '\t', '\r', '\n']);

function lex(text: string, file: string): Lexeme[] {
  const out: Lexeme[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (SPACE.has(c)) {
      i++;
    } else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === ';' || c === '{' || c === '}') {
      out.push({ kind: c, start: i, end: i + 1 });
      i++;
    } else if (c === '"' || c === "'") {
      let value = '';
      let j = i + 1;
      for (;;) {
        if (j >= text.length) throw syntaxError(text, file, i, `a ${c === '"' ? 'double' : 'single'} quote is not closed`);
        const d = text[j]!;
        if (d === c) break;
        if (d === '\\' && j + 1 < text.length) {
          const e = text[j + 1]!;
          value += e === '"' || e === "'" || e === '\\' ? e : e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : `\\${e}`;
          j += 2;
        } else {
          value += d;
          j++;
        }
      }
      const end = j + 1;
      const next = text[end];
      if (next !== undefined && !SPACE.has(next) && next !== ';' && next !== '{' && next !== ')') {
        throw syntaxError(text, file, end, `unexpected "${next}" right after a quoted string`);
      }
      out.push({ kind: 'word', token: { value, start: i, end, quoted: true } });
      i = end;
    } else {
      let value = '';
      let j = i;
      let variable = false;
      while (j < text.length) {
        const d = text[j]!;
        if (d === '{' && variable) {
          // ${name}: a variable, not a block.
          const close = text.indexOf('}', j);
          if (close < 0) throw syntaxError(text, file, j, 'a "${" variable is not closed');
          value += text.slice(j, close + 1);
          j = close + 1;
          variable = false;
          continue;
        }
        variable = d === '$';
        if (SPACE.has(d) || d === ';' || d === '{') break;
        if (d === '\\' && j + 1 < text.length) {
          value += text[j + 1];
          j += 2;
          continue;
        }
        value += d;
        j++;
      }
      out.push({ kind: 'word', token: { value, start: i, end: j, quoted: false } });
      i = j;
    }
  }
  return out;
}

/** Parses a whole file into directives (top level first, blocks with their children). */
export function parseNginxConf(text: string, file = 'nginx.conf'): NginxDirective[] {
  const lexemes = lex(text, file);
  const top: NginxDirective[] = [];
  const stack: NginxDirective[] = [];
  let words: NginxToken[] = [];
  const siblings = () => (stack.length ? stack[stack.length - 1]!.block!.children : top);
  for (const l of lexemes) {
    if (l.kind === 'word') {
      words.push(l.token);
      continue;
    }
    if (l.kind === '}') {
      if (words.length) throw syntaxError(text, file, words[0]!.start, `"${words[0]!.value}" is not ended with ";"`);
      const open = stack.pop();
      if (!open) throw syntaxError(text, file, l.start, 'unexpected "}"');
      open.block!.close = l.start;
      open.end = l.end;
      continue;
    }
    const [name, ...args] = words;
    if (!name) throw syntaxError(text, file, l.start, `unexpected "${l.kind}"`);
    const d: NginxDirective = {
      name: name.value,
      nameToken: name,
      args,
      start: name.start,
      end: l.end,
      line: lineOf(text, name.start),
      parent: stack[stack.length - 1] ?? null,
    };
    if (l.kind === '{') {
      if (/_by_lua_block$/.test(d.name)) throw syntaxError(text, file, name.start, `"${d.name}" holds Lua code, which anvil does not read; move it to a file of its own`);
      d.block = { open: l.start, close: -1, children: [] };
    }
    siblings().push(d);
    if (d.block) stack.push(d);
    words = [];
  }
  if (words.length) throw syntaxError(text, file, words[0]!.start, `"${words[0]!.value}" is not ended with ";"`);
  if (stack.length) throw syntaxError(text, file, stack[stack.length - 1]!.start, `the "${stack[stack.length - 1]!.name}" block is not closed with "}"`);
  return top;
}

function* walk(ds: NginxDirective[]): Generator<NginxDirective> {
  for (const d of ds) {
    yield d;
    if (d.block) yield* walk(d.block.children);
  }
}

export interface ServerBlock {
  directive: NginxDirective;
  serverNames: string[];
  /** Arguments of each `listen` directive. */
  listens: string[][];
  tls: boolean;
}

/** Every `server { ... }` block (http, stream and mail alike; `upstream`'s `server` lines have no block). */
export function serverBlocks(top: NginxDirective[]): ServerBlock[] {
  const out: ServerBlock[] = [];
  for (const d of walk(top)) {
    if (d.name !== 'server' || !d.block) continue;
    const kids = d.block.children;
    const listens = kids.filter((k) => k.name === 'listen').map((k) => k.args.map((a) => a.value));
    const serverNames = kids.filter((k) => k.name === 'server_name').flatMap((k) => k.args.map((a) => a.value));
    const tls =
      listens.some((l) => l.slice(1).includes('ssl')) ||
      kids.some((k) => k.name === 'ssl_certificate' || (k.name === 'ssl' && k.args[0]?.value === 'on'));
    out.push({ directive: d, serverNames, listens, tls });
  }
  return out;
}

function nameMatches(serverName: string, want: string): boolean {
  const s = serverName.toLowerCase();
  const w = want.toLowerCase();
  return s === w || s === `.${w}`;
}

function describeBlocks(bs: ServerBlock[]): string {
  return bs.map((b) => `line ${b.directive.line} (${b.serverNames.join(' ') || 'no server_name'}${b.tls ? ', TLS' : ''})`).join('; ');
}

/** The block to edit: the one whose server_name is `serverName` (preferring TLS ones), or the only TLS block. */
export function pickServerBlock(top: NginxDirective[], file: string, serverName?: string): ServerBlock {
  const all = serverBlocks(top);
  if (all.length === 0) throw new AcmeClientError('BAD_INPUT', `${file} has no server block; give --conf the file that holds the server { ... } for the site`);
  if (serverName) {
    const named = all.filter((b) => b.serverNames.some((n) => nameMatches(n, serverName)));
    if (named.length === 0) throw new AcmeClientError('BAD_INPUT', `${file} has no server block with server_name ${serverName}; its blocks: ${describeBlocks(all)}`);
    const tls = named.filter((b) => b.tls);
    if (tls.length === 1) return tls[0]!;
    if (tls.length > 1) throw new AcmeClientError('BAD_INPUT', `${file} has ${tls.length} TLS server blocks with server_name ${serverName} (${describeBlocks(tls)}); keep one, or put them in separate files`);
    throw new AcmeClientError('BAD_INPUT', `the server block for ${serverName} in ${file} (line ${named[0]!.directive.line}) does not listen with TLS; add "listen 443 ssl;" to it first`);
  }
  const tls = all.filter((b) => b.tls);
  if (tls.length === 1) return tls[0]!;
  if (tls.length === 0) throw new AcmeClientError('BAD_INPUT', `${file} has no TLS server block (one with "listen ... ssl"); add "listen 443 ssl;" to the site's block, or pick it with --server-name`);
  throw new AcmeClientError('BAD_INPUT', `${file} has ${tls.length} TLS server blocks (${describeBlocks(tls)}); choose one with --server-name`);
}

/** A path as an nginx argument: bare when plain, double-quoted otherwise; refuses what nginx would misread. */
export function nginxArg(p: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(p)) return p;
  // nginx expands $variables even inside quotes; backslashes and quotes would need escapes nginx
  // versions read differently.
  if (/[$"\\\x00-\x1f\x7f]/.test(p)) throw new AcmeClientError('BAD_INPUT', `the path ${JSON.stringify(p)} holds characters nginx would misread ($, quotes, backslashes or control characters); use a store directory without them (--store)`);
  return `"${p}"`;
}

/** Where a block's TLS listener can be reached from this host: the first `listen ... ssl`. */
export function listenTarget(b: ServerBlock): { host: string; port: number } | null {
  const l = b.listens.find((a) => a.slice(1).includes('ssl')) ?? (b.tls ? b.listens[0] : undefined);
  const addr = l?.[0];
  if (!addr || addr.startsWith('unix:')) return null;
  let host = '127.0.0.1';
  let portText = addr;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr);
  if (v6) {
    host = v6[1] === '::' ? '::1' : v6[1]!;
    portText = v6[2] ?? '443';
  } else if (addr.includes(':')) {
    const i = addr.lastIndexOf(':');
    const h = addr.slice(0, i);
    host = h === '*' || h === '0.0.0.0' ? '127.0.0.1' : h;
    portText = addr.slice(i + 1);
  } else if (!/^\d+$/.test(addr)) {
    host = addr === '*' ? '127.0.0.1' : addr;
    portText = '443';
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

export interface CertificateEdit {
  text: string;
  changed: boolean;
  block: ServerBlock;
  /** Lines of the block that include other files (they might set certificates too). */
  includes: number[];
}

/**
 * Points the chosen server block's `ssl_certificate` at `fullchain` and `ssl_certificate_key` at
 * `privkey`: the arguments of existing directives are replaced in place; missing ones are inserted
 * as new lines after the block's last `listen` (or `server_name`, or at its start), indented like
 * their neighbours.
 */
export function setCertificatePaths(text: string, o: { file: string; serverName?: string; fullchain: string; privkey: string }): CertificateEdit {
  const top = parseNginxConf(text, o.file);
  const block = pickServerBlock(top, o.file, o.serverName);
  const kids = block.directive.block!.children;
  const want: Array<[string, string]> = [
    ['ssl_certificate', nginxArg(o.fullchain)],
    ['ssl_certificate_key', nginxArg(o.privkey)],
  ];
  const edits: Array<{ at: number; to: number; insert: string }> = [];
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const missing: Array<[string, string]> = [];
  for (const [name, value] of want) {
    const found = kids.filter((k) => k.name === name);
    if (found.length > 1) {
      throw new AcmeClientError('BAD_INPUT', `the server block at ${o.file}:${block.directive.line} has ${found.length} ${name} directives (lines ${found.map((f) => f.line).join(', ')}); anvil manages one certificate per block: remove the others`);
    }
    const d = found[0];
    if (!d) {
      missing.push([name, value]);
      continue;
    }
    const same = d.args.length === 1 && d.args[0]!.value === (value.startsWith('"') ? value.slice(1, -1) : value);
    if (same) continue;
    if (d.args.length) edits.push({ at: d.args[0]!.start, to: d.args[d.args.length - 1]!.end, insert: value });
    else edits.push({ at: d.nameToken.end, to: d.nameToken.end, insert: ` ${value}` });
  }
  if (missing.length) {
    const anchor =
      [...kids].reverse().find((k) => k.name === 'ssl_certificate') ??
      [...kids].reverse().find((k) => k.name === 'listen') ??
      [...kids].reverse().find((k) => k.name === 'server_name') ??
      null;
    const lineStart = (off: number) => text.lastIndexOf('\n', off - 1) + 1;
    const indentAt = (off: number): string | null => {
      const pre = text.slice(lineStart(off), off);
      return /^[ \t]*$/.test(pre) ? pre : null;
    };
    const after = anchor ? anchor.end : block.directive.block!.open + 1;
    let indent = anchor ? indentAt(anchor.start) : kids[0] ? indentAt(kids[0].start) : null;
    if (indent === null) {
      const outer = indentAt(block.directive.start) ?? '';
      indent = `${outer}${outer.includes('\t') ? '\t' : '    '}`;
    }
    const nl = text.indexOf('\n', after);
    const rest = nl < 0 ? text.slice(after) : text.slice(after, nl);
    const lines = missing.map(([n, v]) => `${n} ${v};`);
    if (nl >= 0 && /^[ \t\r]*(#.*)?$/.test(rest)) {
      // The anchor ends its line (maybe with a comment): whole new lines after it.
      edits.push({ at: nl + 1, to: nl + 1, insert: lines.map((l) => `${indent}${l}${eol}`).join('') });
    } else {
      edits.push({ at: after, to: after, insert: lines.map((l) => ` ${l}`).join('') });
    }
  }
  let out = text;
  for (const e of edits.sort((a, b) => b.at - a.at)) out = out.slice(0, e.at) + e.insert + out.slice(e.to);
  const includes = kids.filter((k) => k.name === 'include').map((k) => k.line);
  return { text: out, changed: out !== text, block, includes };
}
