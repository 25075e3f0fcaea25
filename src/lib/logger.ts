import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Paths redacted wherever they appear in a log record: keys and secrets never reach a log. */
export const REDACT_PATHS = [
  'key', '*.key', 'privateKey', '*.privateKey', 'hmacKey', '*.hmacKey', 'secret', '*.secret',
  'password', '*.password', 'authorization', '*.authorization', 'req.headers.authorization',
  'token', '*.token', 'cookie', '*.cookie', 'req.headers.cookie',
];

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: undefined },
    // Logs go to stderr, so that stdout carries only what a command prints for its user.
    opts.destination ?? pino.destination(2),
  );
}

/** A logger that discards everything, for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
