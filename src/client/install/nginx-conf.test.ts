/** Reading nginx configuration and pointing a server block at a lineage: only the changed bytes change. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AcmeClientError } from '../errors.js';
import { listenTarget, nginxArg, parseNginxConf, pickServerBlock, serverBlocks, setCertificatePaths } from './nginx-conf.js';

const FC = '/etc/anvil/live/example.com/fullchain.pem';
const PK = '/etc/anvil/live/example.com/privkey.pem';
const edit = (text: string, serverName?: string) => setCertificatePaths(text, { file: 'site.conf', fullchain: FC, privkey: PK, ...(serverName ? { serverName } : {}) });

const isBadInput = (re: RegExp) => (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT' && re.test(e.message);

describe('parseNginxConf', () => {
  test('directives, blocks, comments and quoted strings are read as nginx reads them', () => {
    const text = [
      '# a comment { not a block',
      'events { worker_connections 64; }',
      'http {',
      '  log_format main \'$remote_addr "$request"\'; # trailing comment ;',
      '  server {',
      '    listen 443 ssl;',
      '    server_name a.example "b.example";',
      '    location ~ "^/x{2}$" { return 200 "a;b}c"; }',
      '    set $v "${host}x";',
      '    add_header X-A a#b;',
      '  }',
      '}',
    ].join('\n');
    const top = parseNginxConf(text);
    assert.deepEqual(top.map((d) => d.name), ['events', 'http']);
    const http = top[1]!;
    assert.deepEqual(http.block!.children.map((d) => d.name), ['log_format', 'server']);
    assert.deepEqual(http.block!.children[0]!.args.map((a) => a.value), ['main', '$remote_addr "$request"']);
    const server = http.block!.children[1]!;
    assert.equal(server.line, 5);
    const kids = server.block!.children;
    assert.deepEqual(kids.map((d) => d.name), ['listen', 'server_name', 'location', 'set', 'add_header']);
    assert.deepEqual(kids[1]!.args.map((a) => a.value), ['a.example', 'b.example']);
    assert.deepEqual(kids[2]!.args.map((a) => a.value), ['~', '^/x{2}$']);
    assert.deepEqual(kids[2]!.block!.children[0]!.args.map((a) => a.value), ['200', 'a;b}c']);
    assert.deepEqual(kids[3]!.args.map((a) => a.value), ['$v', '${host}x']);
    assert.deepEqual(kids[4]!.args.map((a) => a.value), ['X-A', 'a#b']);
  });

  const broken: Array<[string, string, RegExp]> = [
    ['an unclosed block', 'http {\n server {\n', /:2: the "server" block is not closed/],
    ['a stray }', 'events {}\n}\n', /:2: unexpected "}"/],
    ['a directive without ;', 'http {\n listen 80\n}', /:2: "listen" is not ended with ";"/],
    ['an unclosed quote', 'http { return 200 "abc; }', /double quote is not closed/],
    ['a lone ;', 'http { ; }', /unexpected ";"/],
    ['text glued to a quoted string', 'a "b"c;', /right after a quoted string/],
    ['Lua code', 'http { content_by_lua_block { ngx.say("}") } }', /Lua code/],
  ];
  for (const [what, text, re] of broken) {
    test(`${what} is a BAD_INPUT error with the line`, () => assert.throws(() => parseNginxConf(text, 'x.conf'), isBadInput(re)));
  }
});

describe('pickServerBlock', () => {
  const conf = `
http {
  upstream app { server 127.0.0.1:8080; }
  server { listen 80; server_name example.com www.example.com; return 301 https://$host$request_uri; }
  server { listen 443 ssl; server_name example.com www.example.com; }
  server { listen 8443 ssl; server_name .other.example; }
}`;
  const top = parseNginxConf(conf);

  test('upstream server lines are not server blocks', () => assert.equal(serverBlocks(top).length, 3));
  test('by server_name, the TLS block wins over the port 80 one', () => assert.equal(pickServerBlock(top, 'f', 'www.example.com').listens[0]![0], '443'));
  test('a leading-dot server_name matches the bare name', () => assert.equal(pickServerBlock(top, 'f', 'other.example').listens[0]![0], '8443'));
  test('without a name and with two TLS blocks, the error lists them and asks for --server-name', () => {
    assert.throws(() => pickServerBlock(top, 'f'), isBadInput(/2 TLS server blocks .*line 5 \(example\.com www\.example\.com, TLS\).*--server-name/));
  });
  test('an unknown name is an error that lists the blocks', () => assert.throws(() => pickServerBlock(top, 'f', 'nope.example'), isBadInput(/no server block with server_name nope\.example/)));
  test('a block without TLS is not given a certificate', () => {
    const t = parseNginxConf('server { listen 80; server_name plain.example; }');
    assert.throws(() => pickServerBlock(t, 'f', 'plain.example'), isBadInput(/does not listen with TLS; add "listen 443 ssl;"/));
    assert.throws(() => pickServerBlock(t, 'f'), isBadInput(/no TLS server block/));
  });
  test('a file without server blocks says which file to give', () => assert.throws(() => pickServerBlock(parseNginxConf('events {}'), 'f'), isBadInput(/no server block/)));
});

describe('setCertificatePaths', () => {
  test('existing directives get the live paths; every other byte stays', () => {
    const text = [
      'server {',
      '\tlisten 443 ssl http2;   # main site',
      '\tserver_name example.com;',
      '',
      '\t# the certificate',
      '\tssl_certificate     "/etc/ssl/old cert.pem" ;  # old',
      '\tssl_certificate_key /etc/ssl/old.key;',
      '\tssl_protocols TLSv1.2 TLSv1.3;',
      '}',
      '',
    ].join('\n');
    const r = edit(text);
    assert.equal(r.changed, true);
    assert.equal(r.text, text.replace('"/etc/ssl/old cert.pem"', FC).replace('/etc/ssl/old.key', PK));
  });

  test('missing directives are inserted after the last listen, with its indentation', () => {
    const text = 'http {\n    server {\n        listen 443 ssl; # tls\n        listen [::]:443 ssl;\n        server_name example.com;\n        root /srv;\n    }\n}\n';
    const r = edit(text);
    assert.equal(
      r.text,
      `http {\n    server {\n        listen 443 ssl; # tls\n        listen [::]:443 ssl;\n        ssl_certificate ${FC};\n        ssl_certificate_key ${PK};\n        server_name example.com;\n        root /srv;\n    }\n}\n`,
    );
  });

  test('a missing key is inserted after the certificate line', () => {
    const r = edit('server {\n  listen 443 ssl;\n  ssl_certificate /old.pem;\n  root /srv;\n}\n');
    assert.equal(r.text, `server {\n  listen 443 ssl;\n  ssl_certificate ${FC};\n  ssl_certificate_key ${PK};\n  root /srv;\n}\n`);
  });

  test('a one-line block gets the directives on the same line', () => {
    const r = edit('server { listen 443 ssl; server_name example.com; }');
    assert.equal(r.text, `server { listen 443 ssl; ssl_certificate ${FC}; ssl_certificate_key ${PK}; server_name example.com; }`);
    assert.doesNotThrow(() => parseNginxConf(r.text));
  });

  test('CRLF files get CRLF lines', () => {
    const r = edit('server {\r\n  listen 443 ssl;\r\n}\r\n');
    assert.equal(r.text, `server {\r\n  listen 443 ssl;\r\n  ssl_certificate ${FC};\r\n  ssl_certificate_key ${PK};\r\n}\r\n`);
  });

  test('a block already pointing at the live files is unchanged', () => {
    const text = `server {\n  listen 443 ssl;\n  ssl_certificate ${FC};\n  ssl_certificate_key "${PK}";\n}\n`;
    const r = edit(text);
    assert.equal(r.changed, false);
    assert.equal(r.text, text);
  });

  test('only the chosen block changes', () => {
    const a = 'server {\n  listen 443 ssl;\n  server_name a.example;\n  ssl_certificate /a.pem;\n  ssl_certificate_key /a.key;\n}\n';
    const b = 'server {\n  listen 443 ssl;\n  server_name b.example;\n  ssl_certificate /b.pem;\n  ssl_certificate_key /b.key;\n}\n';
    const r = edit(a + b, 'b.example');
    assert.equal(r.text, a + b.replace('/b.pem', FC).replace('/b.key', PK));
  });

  test('two ssl_certificate directives (dual certificates) are refused, not half-edited', () => {
    assert.throws(() => edit('server { listen 443 ssl; ssl_certificate /rsa.pem; ssl_certificate /ec.pem; }'), isBadInput(/2 ssl_certificate directives/));
  });

  test('includes inside the block are reported', () => {
    assert.deepEqual(edit('server {\n listen 443 ssl;\n include snippets/tls.conf;\n}\n').includes, [3]);
  });
});

describe('nginxArg and listenTarget', () => {
  test('plain paths stay bare, paths with spaces are quoted, $ and quotes are refused', () => {
    assert.equal(nginxArg('/a/b-c_d.pem'), '/a/b-c_d.pem');
    assert.equal(nginxArg('/my certs/a.pem'), '"/my certs/a.pem"');
    assert.throws(() => nginxArg('/a/$host.pem'), isBadInput(/misread/));
    assert.throws(() => nginxArg('/a/"b'), isBadInput(/misread/));
  });

  const cases: Array<[string, { host: string; port: number } | null]> = [
    ['listen 443 ssl;', { host: '127.0.0.1', port: 443 }],
    ['listen 127.0.0.2:8443 ssl;', { host: '127.0.0.2', port: 8443 }],
    ['listen *:443 ssl;', { host: '127.0.0.1', port: 443 }],
    ['listen [::]:443 ssl;', { host: '::1', port: 443 }],
    ['listen localhost ssl;', { host: 'localhost', port: 443 }],
    ['listen unix:/run/x.sock ssl;', null],
  ];
  for (const [listen, want] of cases) {
    test(`"${listen}" is reached at ${want ? `${want.host}:${want.port}` : 'no address'}`, () => {
      assert.deepEqual(listenTarget(pickServerBlock(parseNginxConf(`server { ${listen} }`), 'f')), want);
    });
  }
});
