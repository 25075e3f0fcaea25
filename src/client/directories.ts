/** Directory URLs of well-known public ACME CAs, by the short names `--server` accepts. */
export const KNOWN_CAS: Readonly<Record<string, string>> = Object.freeze({
  letsencrypt: 'https://acme-v02.api.letsencrypt.org/directory',
  'letsencrypt-staging': 'https://acme-staging-v02.api.letsencrypt.org/directory',
  // ZeroSSL, Google Trust Services and SSL.com require External Account Binding.
  zerossl: 'https://acme.zerossl.com/v2/DV90',
  google: 'https://dv.acme-v02.api.pki.goog/directory',
  'google-staging': 'https://dv.acme-v02.test-api.pki.goog/directory',
  sslcom: 'https://acme.ssl.com/sslcom-dv-ecc',
  buypass: 'https://api.buypass.com/acme/directory',
});
