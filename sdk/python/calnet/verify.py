"""Offline verification of calnet soul chains, with the Go verifier's rules
(docs/formats.md): any holder of a network's root keys can check a Cal."""

import base64
import hashlib
import json
import re
import struct
from datetime import datetime, timezone

from .pq import ed25519ctx_verify, mldsa65_verify

PERMS = ["spawn", "revoke", "read", "talk", "share", "admin"]
MAX_DEPTH = 32
# MAX_DISK_BYTES is the disk quota a version 1 blessing (before disk quotas) reads as.
MAX_DISK_BYTES = 1 << 50
_ALPHA = "abcdefghijklmnopqrstuvwxyz234567"


class ChainError(Exception):
    """A failed verification: the failing link (0 is the Master Cal) and why."""

    def __init__(self, link, reason, detail):
        super().__init__(f"link {link}: {reason}: {detail}")
        self.link, self.reason, self.detail = link, reason, detail


def _b64(s):
    return base64.b64decode(s, validate=True)


def _id(s):
    if len(s) != 32 or not re.fullmatch(r"[a-z2-7]+", s):
        raise ValueError(f"malformed ID {s!r}")
    bits = "".join(f"{_ALPHA.index(c):05b}" for c in s)
    return int(bits[:160], 2).to_bytes(20, "big")


def _seconds(field, s):
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s):
        raise ValueError(f"{field}: not an RFC 3339 UTC time with whole seconds")
    return int(datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def _id_of(tag, ed, ml):
    return hashlib.sha256(tag + ed + ml).digest()[:20]


def _hybrid(purpose, msg, ed, ml, sig):
    ctx = purpose.encode()
    try:
        return ed25519ctx_verify(ed, msg, _b64(sig["ed25519"]), ctx) and mldsa65_verify(ml, msg, _b64(sig["mldsa65"]), ctx)
    except (ValueError, KeyError, TypeError):
        return False


# The deepest object/array nesting a calnet document may use.
MAX_NESTING = 16

# The keys of each object of soul-chain.sig, exactly (docs/formats.md).
_CHAIN_KEYS = {"version", "network", "blessings", "attestation"}
_ATTESTATION_KEYS = {"signer", "signature"}
_KEY_PAIR_KEYS = {"ed25519", "mldsa65"}
_BLESSING_KEYS = {"version", "network", "parent", "child", "child_keys", "depth", "serial", "permissions",
                  "constraints", "can_propagate", "nonce", "issued_at", "signature"}
_CONSTRAINTS_KEYS = {"max_depth", "max_children", "quota", "not_before", "not_after"}
_QUOTA_KEYS = {"cpu_millis", "memory_bytes", "pids", "disk_bytes"}  # disk_bytes from version 2 on


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"invalid JSON: duplicated field {k!r}")
        obj[k] = v
    return obj


def _no_constant(name):
    raise ValueError(f"invalid JSON: {name} is not JSON")


def strict_loads(text):
    """Parse one JSON document as calnet's Go decoder does: no key repeated
    inside an object, nothing after the document (json.loads refuses that
    already), no NaN or Infinity, nesting at most MAX_NESTING deep."""
    v = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    _check_depth(v, 0)
    return v


def _check_depth(v, depth):
    if isinstance(v, (dict, list)):
        if depth >= MAX_NESTING:
            raise ValueError(f"invalid JSON: nesting deeper than {MAX_NESTING}")
        for x in v.values() if isinstance(v, dict) else v:
            _check_depth(x, depth + 1)


def check_keys(obj, keys, where):
    """Refuse any key of obj outside keys: keys are case-sensitive, as in the
    Go decoder ("Permissions" is not "permissions")."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: want an object")
    for k in obj:
        if k not in keys:
            raise ValueError(f"{where}: unknown field {k!r}")


class _Link:
    def __init__(self, j):
        check_keys(j, _BLESSING_KEYS, "blessing")
        check_keys(j.get("child_keys"), _KEY_PAIR_KEYS, "child_keys")
        check_keys(j.get("constraints"), _CONSTRAINTS_KEYS, "constraints")
        check_keys(j["constraints"].get("quota"), _QUOTA_KEYS, "constraints.quota")
        check_keys(j.get("signature"), _KEY_PAIR_KEYS, "signature")
        perms = 0
        for p in j["permissions"]:
            if p not in PERMS:
                raise ValueError(f"unknown permission {p!r}")
            bit = 1 << PERMS.index(p)
            if perms & bit:
                raise ValueError(f"permission {p!r} listed twice")
            perms |= bit
        self.ed, self.ml = _b64(j["child_keys"]["ed25519"]), _b64(j["child_keys"]["mldsa65"])
        if len(self.ed) != 32 or len(self.ml) != 1952:
            raise ValueError("child_keys: wrong key size")
        self.genesis = j["parent"] == "genesis"
        if self.genesis != (j["depth"] == 1):
            raise ValueError("parent: genesis exactly at depth 1")
        self.network = _id(j["network"])
        self.parent = bytes(20) if self.genesis else _id(j["parent"])
        self.child_id = j["child"]
        self.child = _id(j["child"])
        if _id_of(b"calnet/cal-id/v1\x00", self.ed, self.ml) != self.child:
            raise ValueError("child is not the ID of child_keys")
        if j["can_propagate"] != bool(perms & 1):
            raise ValueError("can_propagate must be true exactly when spawn is granted")
        c = j["constraints"]
        q = c["quota"]
        self.depth, self.serial, self.perms = j["depth"], j["serial"], perms
        self.max_depth, self.max_children = c["max_depth"], c["max_children"]
        self.cpu, self.mem, self.pids = q["cpu_millis"], q["memory_bytes"], q["pids"]
        # Version 2 added disk_bytes; a version 1 blessing has none and
        # reads as the largest disk quota (2^50).
        version = j["version"]
        if version not in (1, 2):
            raise ValueError(f"version {version} is not supported")
        if (version == 1) == ("disk_bytes" in q):
            raise ValueError("constraints.quota.disk_bytes: required from version 2 on, absent before")
        self.disk = q["disk_bytes"] if version == 2 else MAX_DISK_BYTES
        self.not_before = _seconds("not_before", c["not_before"])
        self.not_after = _seconds("not_after", c["not_after"])
        nonce = _b64(j["nonce"])
        self.canonical = b"".join([
            b"calnet/blessing/v%d\n" % version, bytes([version]), self.network, bytes([1 if self.genesis else 0]),
            self.parent, self.child, struct.pack(">I", len(self.ed)), self.ed, struct.pack(">I", len(self.ml)), self.ml,
            struct.pack(">IIIII", self.depth, self.serial, perms, self.max_depth, self.max_children),
            struct.pack(">qqq", self.cpu, self.mem, self.pids),
            struct.pack(">q", self.disk) if version == 2 else b"",
            struct.pack(">qq", self.not_before, self.not_after),
            bytes([1 if j["can_propagate"] else 0]), struct.pack(">I", len(nonce)), nonce,
            struct.pack(">q", _seconds("issued_at", j["issued_at"])),
        ])
        self.sig = j["signature"]
        self.digest = hashlib.sha256(self.canonical + _b64(self.sig["ed25519"]) + _b64(self.sig["mldsa65"])).digest()


def verify_chain(root_keys, chain_text, at, revocations=()):
    """Verify a soul chain (the text of soul-chain.sig) at datetime `at`.

    Revocations count when signed by the network authority or by an
    ancestor in this chain holding revoke. Returns {"cal", "depth",
    "permissions"}; raises ChainError naming the failing link and reason.
    """
    root_ed, root_ml = _b64(root_keys["ed25519"]), _b64(root_keys["mldsa65"])
    network = _id_of(b"calnet/network-id/v1\x00", root_ed, root_ml)
    try:
        j = strict_loads(chain_text)
        check_keys(j, _CHAIN_KEYS, "soul chain")
        if j.get("attestation") is not None:
            check_keys(j["attestation"], _ATTESTATION_KEYS, "attestation")
            check_keys(j["attestation"].get("signature"), _KEY_PAIR_KEYS, "attestation.signature")
        if j.get("version") != 1:
            raise ValueError("version")
        if not isinstance(j.get("blessings"), list) or not j["blessings"]:
            raise ValueError("blessings: empty")
        if len(j["blessings"]) > MAX_DEPTH:
            raise ChainError(MAX_DEPTH, "depth-exceeded", "too many links")
        chain_net = _id(j["network"])
    except ChainError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise ChainError(0, "malformed", str(e)) from None
    # A link that does not parse is named, as the Go verifier names it.
    links = []
    for i, b in enumerate(j["blessings"]):
        try:
            links.append(_Link(b))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ChainError(i, "malformed", str(e)) from None
    if chain_net != network:
        raise ChainError(0, "wrong-network", "the chain is for another network")
    revoked = set()
    for r in revocations:
        authority = r["issuer"] == "authority"
        reason = r["reason"].encode()
        nonce = _b64(r["nonce"])
        msg = b"".join([b"calnet/revocation/v1\n", b"\x01", _id(r["network"]), _id(r["target"]),
                        bytes([1 if authority else 0]), bytes(20) if authority else _id(r["issuer"]),
                        struct.pack(">I", len(reason)), reason, struct.pack(">q", _seconds("issued_at", r["issued_at"])),
                        struct.pack(">I", len(nonce)), nonce])
        ed, ml = root_ed, root_ml
        if not authority:
            ids = [l.child_id for l in links]
            if r["issuer"] not in ids or r["target"] not in ids:
                continue
            ii, ti = ids.index(r["issuer"]), ids.index(r["target"])
            if ti <= ii or not links[ii].perms & 2:
                continue
            ed, ml = links[ii].ed, links[ii].ml
        if _hybrid("calnet-revocation-v1", msg, ed, ml, r["signature"]):
            revoked.add(r["target"])
    t = int(at.timestamp())
    for i, b in enumerate(links):
        def fail(reason, detail):
            raise ChainError(i, reason, detail)
        if b.network != network:
            fail("wrong-network", "blessing for another network")
        if b.depth != i + 1:
            fail("malformed", f"depth is {b.depth}, want {i + 1}")
        p = links[i - 1] if i > 0 else None
        if p and b.parent != p.child:
            fail("malformed", "parent is not the previous link")
        ed, ml = (p.ed, p.ml) if p else (root_ed, root_ml)
        if not _hybrid("calnet-blessing-v1", b.canonical, ed, ml, b.sig):
            fail("bad-signature", "signature does not verify")
        if p:
            if not p.perms & 1:
                fail("escalation", "parent does not hold spawn")
            if b.perms & ~p.perms:
                fail("escalation", "grants permissions the parent does not hold")
            if b.depth > p.max_depth:
                fail("depth-exceeded", "depth exceeds the parent's max_depth")
            if b.max_depth > p.max_depth:
                fail("escalation", "max_depth exceeds the parent's")
            if b.serial > p.max_children:
                fail("children-exceeded", "serial exceeds the parent's max_children")
            if b.max_children > p.max_children:
                fail("escalation", "max_children exceeds the parent's")
            if b.cpu > p.cpu or b.mem > p.mem or b.pids > p.pids or b.disk > p.disk:
                fail("escalation", "quota exceeds the parent's")
            if b.not_before < p.not_before or b.not_after > p.not_after:
                fail("escalation", "validity outside the parent's")
        if b.depth > b.max_depth:
            fail("depth-exceeded", "depth exceeds its own max_depth")
        if t < b.not_before:
            fail("not-yet-valid", "not valid yet")
        if t >= b.not_after:
            fail("expired", "expired")
        if b.child_id in revoked:
            fail("revoked" if i == len(links) - 1 else "revoked-ancestor", f"{b.child_id} is revoked")
    last = len(links) - 1
    digest = hashlib.sha256(b"calnet/soul-chain/v1\n" + network + struct.pack(">I", len(links)) + b"".join(l.digest for l in links)).digest()
    aed, aml = (links[last - 1].ed, links[last - 1].ml) if last > 0 else (root_ed, root_ml)
    att = j.get("attestation") or {}
    if not _hybrid("calnet-soul-chain-v1", digest, aed, aml, att.get("signature") or {}):
        raise ChainError(last, "bad-signature", "attestation does not verify")
    leaf = links[last]
    return {"cal": leaf.child_id, "depth": leaf.depth, "permissions": [p for k, p in enumerate(PERMS) if leaf.perms & (1 << k)]}
