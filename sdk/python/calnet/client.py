"""A client of calnet's REST API and WebSocket event stream, built on the
standard library only."""

import base64
import json
import os
import socket
import struct
import urllib.error
import urllib.parse
import urllib.request


class CalnetError(Exception):
    """An error answer of the API: the HTTP status and a message naming the
    field or limit; retry_after is set on 429 answers."""

    def __init__(self, status, message, retry_after=None):
        super().__init__(f"{message} (HTTP {status})")
        self.status, self.message, self.retry_after = status, message, retry_after


class Calnet:
    """A client of one control plane (`calnet up`)."""

    def __init__(self, addr, token, timeout=60):
        self.base = addr if "://" in addr else "http://" + addr
        self.base = self.base.rstrip("/")
        self.token, self.timeout = token, timeout

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("error", e.reason)
            except ValueError:
                msg = e.reason
            ra = e.headers.get("Retry-After")
            raise CalnetError(e.code, msg, int(ra) if ra else None) from None

    def status(self):
        return self._call("GET", "/v1/status")

    def list(self):
        return self._call("GET", "/v1/cals")

    def get(self, cal):
        return self._call("GET", "/v1/cals/" + urllib.parse.quote(cal, safe=""))

    def spawn(self, permissions=None, parent=None, name=None, wait=True, **extra):
        """Spawn a Cal (its parent's SpawnController signs its blessing).

        extra takes the other fields of a spawn request: cpu_millis,
        memory_bytes, pids, disk_bytes (what the Cal may store in /data),
        template, idempotency_key, ...
        """
        body = {k: v for k, v in dict(permissions=permissions, parent=parent, name=name, **extra).items() if v is not None}
        return self._call("POST", "/v1/cals" + ("?wait=true" if wait else ""), body)

    def revoke(self, cal, reason=""):
        """Revoke a Cal and its whole subtree."""
        return self._call("POST", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/revoke", {"reason": reason})

    def restart(self, cal, wait=True, reason=""):
        """Run a Cal again: a failed or stopped one (the Master Cal included) with a fresh
        restart budget, a running one as a new process; a revoked Cal is refused (409).
        With wait it returns once the Cal runs or has failed again; the reason goes with
        the event."""
        return self._call("POST", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/restart" + ("?wait=true" if wait else ""), {"reason": reason})

    def rules(self, cal):
        """A Cal's spawn criteria, their state and recent decisions."""
        return self._call("GET", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/rules")

    def set_rules(self, cal, rules):
        """Replace a Cal's spawn criteria (a list of rule dicts, see docs/guide.md)."""
        return self._call("PUT", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/rules", {"rules": list(rules)})

    def preview_rule(self, cal, rule):
        """Replay a rule over a Cal's recorded metrics without storing or acting on it."""
        return self._call("POST", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/rules/preview", {"rule": rule})

    def policies(self):
        """The network's admission policies."""
        return self._call("GET", "/v1/policies")

    def set_policies(self, policies):
        """Replace the admission policies (admin). A named administrator's change while a
        require_approval policy is in force is held: the answer is then the approval request."""
        return self._call("PUT", "/v1/policies", {"policies": list(policies)})

    def whoami(self):
        """Who this client's credential is."""
        return self._call("GET", "/v1/whoami")

    def authz(self):
        """The authorization table: every route, who may call it, and how its target is scoped."""
        return self._call("GET", "/v1/authz")

    def spiffe_bundle(self):
        """The network's SPIFFE trust bundle (JWKS): its X.509 root, whose key is the genesis key's Ed25519 half."""
        return self._call("GET", "/v1/spiffe/bundle")

    def verify_svid(self, chain):
        """Verify an X.509-SVID chain (base64 DER strings, leaf first) against the bundle and the revocations.

        The answer says valid, or the reason: malformed, expired, not-yet-valid,
        wrong-trust-domain, unknown-authority, revoked."""
        return self._call("POST", "/v1/spiffe/verify", {"chain": list(chain)})

    def add_admin(self, name):
        """Add a named administrator (root only); its credential is returned once."""
        return self._call("POST", "/v1/admins", {"name": name})

    def approvals(self, state=""):
        """Approval requests held by require_approval policies, pending first."""
        return self._call("GET", "/v1/approvals?state=" + urllib.parse.quote(state))

    def approve(self, approval, comment=""):
        """Approve a held request as this administrator (not one it made, nor one
        it is behind: its "behind" field names the creator of the token, the
        author of the rules or the spawner of the Cal that made it)."""
        return self._call("POST", "/v1/approvals/" + urllib.parse.quote(approval, safe="") + "/approve", {"comment": comment})

    def reject(self, approval, comment=""):
        """Reject a held request (a held spawn is rejected with it)."""
        return self._call("POST", "/v1/approvals/" + urllib.parse.quote(approval, safe="") + "/reject", {"comment": comment})

    def logs(self, q="", level="", cals=(), lines=0, cursor=""):
        """Every Cal's log merged by time, filtered; pass the returned cursor back to follow."""
        params = {k: v for k, v in dict(q=q, level=level, cals=",".join(cals), lines=lines or "", cursor=cursor).items() if v}
        return self._call("GET", "/v1/logs?" + urllib.parse.urlencode(params))

    def audit(self, since="", until="", actor="", type="", cal="", after=0, before=0, limit=0):
        """A page of the audit trail (administrators), oldest first: {"records", "more", "head_seq"}.

        since/until are RFC 3339 strings or datetimes; type ending in "." is a
        prefix; after pages forward from a sequence number, before back."""
        def ts(v):
            return v.isoformat().replace("+00:00", "Z") if hasattr(v, "isoformat") else v
        params = {k: v for k, v in dict(since=ts(since), until=ts(until), actor=actor, type=type, cal=cal,
                                         after=after or "", before=before or "", limit=limit or "").items() if v}
        return self._call("GET", "/v1/audit?" + urllib.parse.urlencode(params))

    def traffic(self):
        """The traffic matrix, busiest pairs first."""
        return self._call("GET", "/v1/traffic")

    def matrix(self, cal):
        """The permission matrix of the subtree rooted at cal."""
        return self._call("GET", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/matrix")

    def set_matrix(self, cal, rows):
        """Set what Cals of the subtree may grant to new children (admin); grantable None lifts the limit."""
        return self._call("PUT", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/matrix", {"rows": list(rows)})

    def simulate(self, rules, workloads=None, pools=0, duration="", seed=0):
        """Preview a rule set in the control plane's simulator (at most 50 pools for a day)."""
        body = {k: v for k, v in dict(rules=list(rules), workloads=workloads, pools=pools, duration=duration, seed=seed).items() if v}
        return self._call("POST", "/v1/sim", body)

    def template_recommendations(self, template):
        """What the Cals of a template used and how its spawns went."""
        return self._call("GET", "/v1/templates/" + urllib.parse.quote(template, safe="") + "/recommendations")

    def recommendations(self, cal):
        """Quota recommendations from a Cal's usage over the last hour."""
        return self._call("GET", "/v1/cals/" + urllib.parse.quote(cal, safe="") + "/recommendations")

    def watch(self, after=0, timeout=None):
        """Yield events from the WebSocket stream after sequence `after`."""
        u = urllib.parse.urlsplit(self.base)
        sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /v1/events?after={after} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        f = sock.makefile("rb")
        status = f.readline()
        if b" 101 " not in status:
            raise CalnetError(int(status.split()[1]), "event stream refused")
        while f.readline() not in (b"\r\n", b""):
            pass
        try:
            while True:
                b0, b1 = f.read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", f.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", f.read(8))[0]
                payload = f.read(n)
                op = b0 & 0x0F
                if op == 0x8:  # close
                    return
                if op == 0x9:  # ping: answer with a masked pong
                    mask = os.urandom(4)
                    sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
                    continue
                if op == 0x1:
                    yield json.loads(payload)
        finally:
            sock.close()
