/**
 * @peculiar/x509, loaded after its reflect-metadata polyfill and wired to Node's WebCrypto.
 * Import X.509 classes from here, never from the package directly, so the order is always right.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export * from '@peculiar/x509';
