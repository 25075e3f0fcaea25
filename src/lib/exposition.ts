/**
 * The Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/), written by hand where building
 * one prom-client label set per sample would cost too much (the inventory's 100,000 certificates).
 *
 * Escaping, as the format says: in a label value a backslash is `\\`, a double quote `\"` and a
 * line feed `\n`; in HELP text a backslash is `\\` and a line feed `\n`. Nothing else is escaped
 * (label values are UTF-8).
 */

import { createHash } from 'node:crypto';

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NEEDS_ESCAPE = /[\\"\n]/;

export function escapeLabelValue(v: string): string {
  if (!NEEDS_ESCAPE.test(v)) return v;
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The longest label value written from outside data (names, paths), in UTF-16 code units. */
export const MAX_LABEL_VALUE = 256;

/**
 * A label value from outside data (a certificate's names, a file path), cut to `max` code units:
 * the start, an ellipsis and 8 hex digits of the whole value's SHA-256, so that two long values
 * that share their start stay two series. Prometheus servers may refuse a whole scrape over one
 * value longer than their `label_value_length_limit`.
 */
export function boundedLabelValue(v: string, max = MAX_LABEL_VALUE): string {
  if (v.length <= max) return v;
  let head = v.slice(0, max - 10);
  // Never half a surrogate pair.
  if (/[\ud800-\udbff]$/.test(head)) head = head.slice(0, -1);
  return `${head}\u2026${createHash('sha256').update(v).digest('hex').slice(0, 8)}`;
}

export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value: integers as integers, NaN and infinities as the format spells them. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Milliseconds since the epoch as seconds (the unit of every Anvil timestamp metric). */
export const seconds = (ms: number): string => formatValue(ms / 1000);

export type MetricType = 'gauge' | 'counter' | 'untyped';

/** `{a="x",b="y"}` from a flat list of names and values (values escaped); '' for none. */
export function labelSet(labels: readonly string[]): string {
  if (labels.length === 0) return '';
  let out = '{';
  for (let i = 0; i < labels.length; i += 2) {
    if (i) out += ',';
    out += `${labels[i]}="${escapeLabelValue(labels[i + 1]!)}"`;
  }
  return `${out}}`;
}

/**
 * Collects one exposition as UTF-8 bytes: families in the order they are begun, each with its HELP
 * and TYPE lines once, then its samples. Lines gather in a short string that is written into one
 * growing Buffer every 64 KiB, so that an exposition of many megabytes never becomes one huge JS
 * string, nor thousands of small Buffers (both cost more in garbage collection than the writing).
 */
export class ExpositionWriter {
  #buf: Buffer;
  #used = 0;
  #pending = '';

  /** `sizeHint`: the expected size in bytes (the buffer grows as needed). */
  constructor(sizeHint = 16_384) {
    // Never from Node's shared pool: the buffer may be transferred to another thread.
    this.#buf = Buffer.allocUnsafeSlow(Math.max(1024, sizeHint));
  }

  family(name: string, type: MetricType, help: string): this {
    return this.raw(`# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`);
  }

  /** One sample; `labels` is a flat list: name, value, name, value, ... */
  sample(name: string, labels: readonly string[], value: number | string): this {
    return this.raw(`${name}${labelSet(labels)} ${typeof value === 'number' ? formatValue(value) : value}\n`);
  }

  /** One sample with a label set made by labelSet() (reused across the families of one series). */
  sampleWith(name: string, labels: string, value: number | string): this {
    return this.raw(`${name}${labels} ${typeof value === 'number' ? formatValue(value) : value}\n`);
  }

  /** Text already in the format (whole lines). */
  raw(text: string): this {
    this.#pending += text;
    if (this.#pending.length >= 65_536) this.#flush();
    return this;
  }

  #flush(): void {
    const need = this.#used + Buffer.byteLength(this.#pending, 'utf8');
    if (need > this.#buf.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(need, this.#buf.length * 2));
      this.#buf.copy(bigger, 0, 0, this.#used);
      this.#buf = bigger;
    }
    this.#used += this.#buf.write(this.#pending, this.#used, 'utf8');
    this.#pending = '';
  }

  /** The exposition so far (a view of the writer's buffer: write no more after taking it). */
  buffer(): Buffer {
    if (this.#pending) this.#flush();
    return this.#buf.subarray(0, this.#used);
  }

  text(): string {
    return this.buffer().toString('utf8');
  }
}
