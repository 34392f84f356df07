// Offline verification of calnet soul chains: the same rules as the Go
// verifier (see docs/formats.md), so any holder of a network's root keys
// can check a Cal without asking anyone.
import { ed25519ctx } from '@noble/curves/ed25519.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { strictParse, checkKeys } from './strictjson.js';

export type Reason =
  | 'malformed' | 'bad-signature' | 'escalation' | 'expired' | 'not-yet-valid'
  | 'depth-exceeded' | 'children-exceeded' | 'wrong-network' | 'revoked' | 'revoked-ancestor';

/** A failed verification: the failing link (0 is the Master Cal) and why. */
export class ChainError extends Error {
  constructor(public link: number, public reason: Reason, detail: string) {
    super(`link ${link}: ${reason}: ${detail}`);
  }
}

export interface RootKeys { ed25519: string; mldsa65: string }

const PERMS = ['spawn', 'revoke', 'read', 'talk', 'share', 'admin'];
const MAX_DEPTH = 32;
/** The disk quota a version 1 blessing (made before disk quotas) reads as. */
const MAX_DISK_BYTES = 1n << 50n;
const enc = new TextEncoder();
const b64 = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "base64"));
const ALPHA = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(s: string): Uint8Array {
  if (s.length !== 32 || !/^[a-z2-7]+$/.test(s)) throw new Error(`malformed ID ${s}`);
  const out = new Uint8Array(20);
  let bits = 0, acc = 0, o = 0;
  for (const ch of s) {
    acc = (acc << 5) | ALPHA.indexOf(ch); bits += 5;
    if (bits >= 8) { out[o++] = (acc >> (bits - 8)) & 0xff; bits -= 8; }
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n); let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

class Canon {
  parts: Uint8Array[] = [];
  constructor(tag: string) { this.parts.push(enc.encode(tag)); }
  u8(v: number) { this.parts.push(Uint8Array.of(v)); }
  u32(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v); this.parts.push(b); }
  i64(v: bigint) { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, v); this.parts.push(b); }
  raw(b: Uint8Array) { this.parts.push(b); }
  bytes(b: Uint8Array) { this.u32(b.length); this.raw(b); }
  done() { return concat(...this.parts); }
}

function seconds(field: string, s: string): bigint {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(s)) throw new Error(`${field}: not an RFC 3339 UTC time with whole seconds`);
  return BigInt(Date.parse(s) / 1000);
}

function idOf(tag: string, ed: Uint8Array, ml: Uint8Array) {
  return sha256(concat(enc.encode(tag), ed, ml)).slice(0, 20);
}

const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Checks a hybrid signature: both halves must verify under the purpose. */
function hybridOK(purpose: string, msg: Uint8Array, ed: Uint8Array, ml: Uint8Array, sig: { ed25519: string; mldsa65: string }) {
  const ctx = enc.encode(purpose);
  try {
    return ed25519ctx.verify(b64(sig.ed25519), msg, ed, { context: ctx }) &&
      ml_dsa65.verify(b64(sig.mldsa65), msg, ml, { context: ctx });
  } catch { return false; }
}

interface Link {
  network: Uint8Array; genesis: boolean; parent: Uint8Array; child: Uint8Array; childId: string;
  ed: Uint8Array; ml: Uint8Array; depth: number; serial: number; perms: number;
  maxDepth: number; maxChildren: number; cpu: bigint; mem: bigint; pids: bigint; disk: bigint;
  notBefore: bigint; notAfter: bigint; canonical: Uint8Array; sig: any; digest: Uint8Array;
}

// The keys of each object of soul-chain.sig, exactly (docs/formats.md).
const CHAIN_KEYS = ['version', 'network', 'blessings', 'attestation'];
const ATTESTATION_KEYS = ['signer', 'signature'];
const KEY_PAIR_KEYS = ['ed25519', 'mldsa65'];
const BLESSING_KEYS = ['version', 'network', 'parent', 'child', 'child_keys', 'depth', 'serial', 'permissions',
  'constraints', 'can_propagate', 'nonce', 'issued_at', 'signature'];
const CONSTRAINTS_KEYS = ['max_depth', 'max_children', 'quota', 'not_before', 'not_after'];
const QUOTA_KEYS = ['cpu_millis', 'memory_bytes', 'pids', 'disk_bytes']; // disk_bytes from version 2 on

function parseLink(j: any): Link {
  checkKeys(j, BLESSING_KEYS, 'blessing');
  checkKeys(j.child_keys, KEY_PAIR_KEYS, 'child_keys');
  checkKeys(j.constraints, CONSTRAINTS_KEYS, 'constraints');
  checkKeys(j.constraints.quota, QUOTA_KEYS, 'constraints.quota');
  checkKeys(j.signature, KEY_PAIR_KEYS, 'signature');
  let perms = 0;
  for (const p of j.permissions) {
    const i = PERMS.indexOf(p);
    if (i < 0) throw new Error(`unknown permission ${p}`);
    if (perms & (1 << i)) throw new Error(`permission ${p} listed twice`);
    perms |= 1 << i;
  }
  const ed = b64(j.child_keys.ed25519), ml = b64(j.child_keys.mldsa65);
  if (ed.length !== 32 || ml.length !== 1952) throw new Error('child_keys: wrong key size');
  // Version 2 added quota.disk_bytes; a version 1 blessing has none.
  if (j.version !== 1 && j.version !== 2) throw new Error(`version ${j.version} is not supported`);
  const q = j.constraints.quota;
  if ((j.version === 1) === ('disk_bytes' in q)) throw new Error('constraints.quota.disk_bytes: required from version 2 on, absent before');
  const genesis = j.parent === 'genesis';
  if (genesis !== (j.depth === 1)) throw new Error('parent: genesis exactly at depth 1');
  const l: Link = {
    network: base32(j.network), genesis, parent: genesis ? new Uint8Array(20) : base32(j.parent), child: base32(j.child),
    childId: j.child, ed, ml, depth: j.depth, serial: j.serial, perms,
    maxDepth: j.constraints.max_depth, maxChildren: j.constraints.max_children,
    cpu: BigInt(j.constraints.quota.cpu_millis), mem: BigInt(j.constraints.quota.memory_bytes), pids: BigInt(j.constraints.quota.pids),
    disk: j.version === 2 ? BigInt(q.disk_bytes) : MAX_DISK_BYTES,
    notBefore: seconds('not_before', j.constraints.not_before), notAfter: seconds('not_after', j.constraints.not_after),
    canonical: new Uint8Array(), sig: j.signature, digest: new Uint8Array(),
  };
  if (!eq(idOf('calnet/cal-id/v1\0', ed, ml), l.child)) throw new Error('child is not the ID of child_keys');
  if (j.can_propagate !== ((perms & 1) === 1)) throw new Error('can_propagate must be true exactly when spawn is granted');
  const nonce = b64(j.nonce);
  const c = new Canon(`calnet/blessing/v${j.version}\n`);
  c.u8(j.version); c.raw(l.network); c.u8(genesis ? 1 : 0); c.raw(l.parent); c.raw(l.child);
  c.bytes(ed); c.bytes(ml); c.u32(l.depth); c.u32(l.serial); c.u32(perms);
  c.u32(l.maxDepth); c.u32(l.maxChildren); c.i64(l.cpu); c.i64(l.mem); c.i64(l.pids);
  if (j.version === 2) c.i64(l.disk);
  c.i64(l.notBefore); c.i64(l.notAfter); c.u8(j.can_propagate ? 1 : 0); c.bytes(nonce); c.i64(seconds('issued_at', j.issued_at));
  l.canonical = c.done();
  l.digest = sha256(concat(l.canonical, b64(j.signature.ed25519), b64(j.signature.mldsa65)));
  return l;
}

/** A revocation as recorded in the ledger or handed out with a vector. */
export interface RevocationJSON {
  network: string; target: string; issuer: string; reason: string; issued_at: string; nonce: string;
  signature: { ed25519: string; mldsa65: string };
}

export interface Verified { cal: string; depth: number; permissions: string[] }

/**
 * Verifies a soul chain (the JSON text of soul-chain.sig) against the
 * network's root keys at time `at`, applying revocations whose issuer is
 * the network authority or an ancestor in this chain holding revoke.
 * Throws a ChainError naming the failing link and reason.
 */
export function verifyChain(root: RootKeys, chainText: string, at: Date, revocations: RevocationJSON[] = []): Verified {
  const rootEd = b64(root.ed25519), rootMl = b64(root.mldsa65);
  const network = idOf('calnet/network-id/v1\0', rootEd, rootMl);
  let j: any, chainNet: Uint8Array;
  try {
    j = strictParse(chainText);
    checkKeys(j, CHAIN_KEYS, 'soul chain');
    if (j.attestation != null) {
      checkKeys(j.attestation, ATTESTATION_KEYS, 'attestation');
      checkKeys(j.attestation.signature, KEY_PAIR_KEYS, 'attestation.signature');
    }
    if (j.version !== 1) throw new Error('version');
    if (!Array.isArray(j.blessings) || j.blessings.length === 0) throw new Error('blessings: empty');
    if (j.blessings.length > MAX_DEPTH) throw new ChainError(MAX_DEPTH, 'depth-exceeded', 'too many links');
    chainNet = base32(j.network);
  } catch (e) {
    if (e instanceof ChainError) throw e;
    throw new ChainError(0, 'malformed', String((e as Error).message));
  }
  // A link that does not parse is named, as the Go verifier names it.
  const links: Link[] = j.blessings.map((b: any, i: number) => {
    try { return parseLink(b); } catch (e) { throw new ChainError(i, 'malformed', String((e as Error).message)); }
  });
  if (!eq(chainNet, network)) throw new ChainError(0, 'wrong-network', 'the chain is for another network');
  // Revocations that hold: by the authority, or by an ancestor with revoke.
  const revoked = new Set<string>();
  for (const r of revocations) {
    const c = new Canon('calnet/revocation/v1\n');
    const authority = r.issuer === 'authority';
    c.u8(1); c.raw(base32(r.network)); c.raw(base32(r.target)); c.u8(authority ? 1 : 0);
    c.raw(authority ? new Uint8Array(20) : base32(r.issuer)); c.bytes(enc.encode(r.reason));
    c.i64(seconds('issued_at', r.issued_at)); c.bytes(b64(r.nonce));
    const msg = c.done();
    let ed: Uint8Array = rootEd, ml: Uint8Array = rootMl;
    if (!authority) {
      const ti = links.findIndex(l => l.childId === r.target), ii = links.findIndex(l => l.childId === r.issuer);
      if (ii < 0 || ti <= ii || !(links[ii].perms & 2)) continue;
      ed = links[ii].ed; ml = links[ii].ml;
    }
    if (hybridOK('calnet-revocation-v1', msg, ed, ml, r.signature)) revoked.add(r.target);
  }
  const t = BigInt(Math.floor(at.getTime() / 1000));
  links.forEach((b, i) => {
    const fail = (reason: Reason, d: string) => { throw new ChainError(i, reason, d); };
    if (!eq(b.network, network)) fail('wrong-network', 'blessing for another network');
    if (b.depth !== i + 1) fail('malformed', `depth is ${b.depth}, want ${i + 1}`);
    const p = i > 0 ? links[i - 1] : undefined;
    if (p && !eq(b.parent, p.child)) fail('malformed', 'parent is not the previous link');
    const [ed, ml] = p ? [p.ed, p.ml] : [rootEd, rootMl];
    if (!hybridOK('calnet-blessing-v1', b.canonical, ed, ml, b.sig)) fail('bad-signature', 'signature does not verify');
    if (p) {
      if (!(p.perms & 1)) fail('escalation', 'parent does not hold spawn');
      if (b.perms & ~p.perms) fail('escalation', 'grants permissions the parent does not hold');
      if (b.depth > p.maxDepth) fail('depth-exceeded', "depth exceeds the parent's max_depth");
      if (b.maxDepth > p.maxDepth) fail('escalation', 'max_depth exceeds the parent\'s');
      if (b.serial > p.maxChildren) fail('children-exceeded', "serial exceeds the parent's max_children");
      if (b.maxChildren > p.maxChildren) fail('escalation', "max_children exceeds the parent's");
      if (b.cpu > p.cpu || b.mem > p.mem || b.pids > p.pids || b.disk > p.disk) fail('escalation', "quota exceeds the parent's");
      if (b.notBefore < p.notBefore || b.notAfter > p.notAfter) fail('escalation', "validity outside the parent's");
    }
    if (b.depth > b.maxDepth) fail('depth-exceeded', 'depth exceeds its own max_depth');
    if (t < b.notBefore) fail('not-yet-valid', 'not valid yet');
    if (t >= b.notAfter) fail('expired', 'expired');
    if (revoked.has(b.childId)) fail(i === links.length - 1 ? 'revoked' : 'revoked-ancestor', `${b.childId} is revoked`);
  });
  const last = links.length - 1;
  const d = new Canon('calnet/soul-chain/v1\n');
  d.raw(network); d.u32(links.length); links.forEach(l => d.raw(l.digest));
  const [aed, aml] = last > 0 ? [links[last - 1].ed, links[last - 1].ml] : [rootEd, rootMl];
  if (!j.attestation || !hybridOK('calnet-soul-chain-v1', sha256(d.done()), aed, aml, j.attestation.signature)) {
    throw new ChainError(last, 'bad-signature', 'attestation does not verify');
  }
  const leaf = links[last];
  return { cal: leaf.childId, depth: leaf.depth, permissions: PERMS.filter((_, i) => leaf.perms & (1 << i)) };
}
