/**
 * Known-weak key families that the key's size alone does not reveal.
 */
/** The odd primes below 1450, in order. */
const ODD_PRIMES = (() => {
  const out: number[] = [];
  for (let n = 3; n < 1450; n += 2) if (out.every((q) => q * q > n || n % q !== 0)) out.push(n);
  return out;
})();

/** For each odd prime: the residues that 65537 generates modulo it (its powers). */
const SUBGROUPS = ODD_PRIMES.map((p) => {
  const residues = new Set<number>();
  for (let x = 1; !residues.has(x); x = (x * (65537 % p)) % p) residues.add(x);
  return { p: BigInt(p), residues };
});

/**
 * Why an RSA modulus is known to be weak, or null: the fingerprint of the Infineon library of
 * CVE-2017-15361 ("ROCA"). Its primes are k·M + (65537^a mod M), with M the product of the first
 * 39, 71, 126 or 225 primes for keys of up to 960, 1952, 3936 and 4096 bits, so the modulus, modulo
 * each of those primes, lies in the subgroup that 65537 generates. A random 2048-bit modulus passes
 * the test for all 125 odd ones with a probability of about 2^-166 (2^-28 for a 512-bit one).
 */
export function knownWeakModulus(modulus: bigint): string | null {
  const bits = modulus.toString(2).length;
  const primes = bits <= 960 ? 38 : bits <= 1952 ? 70 : bits <= 3936 ? 125 : 224;
  for (const { p, residues } of SUBGROUPS.slice(0, primes)) {
    if (!residues.has(Number(modulus % p))) return null;
  }
  return 'RSA key made by the Infineon library of CVE-2017-15361 (ROCA): its private key can be computed from the public key';
}
