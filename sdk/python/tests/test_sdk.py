"""Tests of the Python SDK: the golden soul-chain vectors offline, and a
live `calnet up` (as root) for spawn, list, watch, restart and revoke."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from calnet import Calnet, CalnetError, ChainError, verify_chain  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[3]


class GoldenVectors(unittest.TestCase):
    def test_vectors(self):
        vf = json.loads((REPO / "testdata/vectors/soul-chains.json").read_text())
        self.assertGreaterEqual(len(vf["cases"]), 10)
        self.assertGreaterEqual(len(vf["other_networks"]), 1)
        sets = [(vf["root_keys"], vf["cases"])] + [(n["root_keys"], n["cases"]) for n in vf["other_networks"]]
        for root_keys, cases in sets:
            for c in cases:
                with self.subTest(c["name"]):
                    at = datetime.strptime(c["verify_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                    if c["expect"]["valid"]:
                        v = verify_chain(root_keys, c["chain"], at, c["revocations"])
                        self.assertEqual(v["cal"], c["expect"]["cal"])
                        self.assertEqual(v["permissions"], c["expect"]["permissions"])
                    else:
                        with self.assertRaises(ChainError) as cm:
                            verify_chain(root_keys, c["chain"], at, c["revocations"])
                        self.assertEqual((cm.exception.link, cm.exception.reason), (c["expect"]["link"], c["expect"]["reason"]))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0, "isolated Cals need root")
class LiveNetwork(unittest.TestCase):
    def test_spawn_list_watch_restart_revoke(self):
        d = tempfile.mkdtemp(prefix="calnet-py-")
        binary = os.path.join(d, "calnet")
        subprocess.run(["go", "build", "-o", binary, "./cmd/calnet"], cwd=REPO, env={**os.environ, "CGO_ENABLED": "0"}, check=True)
        api, router, dns = free_port(), free_port(), free_port()
        up = subprocess.Popen([binary, "up", "--data", os.path.join(d, "data"), "--addr", f"127.0.0.1:{api}",
                               "--router", f"127.0.0.1:{router}", "--dns", f"127.0.0.1:{dns}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            c = None
            for _ in range(300):
                try:
                    c = Calnet(f"127.0.0.1:{api}", pathlib.Path(d, "data/admin.token").read_text().strip())
                    if c.status()["cals"].get("running", 0) >= 1:
                        break
                except (OSError, CalnetError):
                    pass
                time.sleep(0.1)
            events = []
            t = threading.Thread(target=lambda: [events.append(e) for e in c.watch(timeout=30)], daemon=True)
            t.start()
            time.sleep(0.3)
            sp = c.spawn(permissions=["read"], name="py-child")
            self.assertEqual(sp["state"], "running")
            self.assertTrue(any(x["id"] == sp["cal"] and x["namespace"] == "py-child.master" for x in c.list()))
            with self.assertRaises(CalnetError) as cm:
                c.spawn(permissions=["fly"])
            self.assertEqual(cm.exception.status, 400)
            # Rules, policies and recommendations.
            rule = {"name": "grow", "when": "children < 1", "cooldown": "1m", "action": {"kind": "spawn", "count": 1, "template": "default"}}
            with self.assertRaises(CalnetError) as cm:
                c.set_rules(sp["cal"], [dict(rule, when="kids < 1")])
            self.assertIn("rules[0].when: 1:1: undeclared reference to 'kids'", str(cm.exception))
            c.set_rules(sp["cal"], [rule])
            self.assertEqual(c.rules(sp["cal"])["rules"][0]["name"], "grow")
            self.assertIn("counts", c.preview_rule(sp["cal"], rule))
            c.set_rules(sp["cal"], [])
            with self.assertRaises(CalnetError) as cm:
                c.set_policies([{"name": "all", "deny": "true", "message": "no"}])
            self.assertIn("denies every request", str(cm.exception))
            c.set_policies([{"name": "no-admin-deep", "deny": 'depth > 2 && "admin" in request_permissions', "message": "admin only near the root"}])
            self.assertEqual(len(c.policies()["policies"]), 1)
            c.set_policies([])
            self.assertEqual(len(c.recommendations(sp["cal"])["resources"]), 2)
            self.assertEqual(c.template_recommendations("default")["template"], "default")
            # Approvals: a second administrator approves what the root asked.
            self.assertTrue(c.whoami()["root"])
            table = {(e["surface"], e["route"]): e for e in c.authz()}
            self.assertEqual(table[("operator", "POST /v1/admins")]["who"], ["root"])
            alice = Calnet(f"127.0.0.1:{api}", c.add_admin("py-alice")["token"])
            self.assertEqual(alice.whoami()["name"], "py-alice")
            c.set_policies([{"name": "held", "require_approval": 'request_name == "py-held"', "message": "held for the test"}])
            held = c.spawn(permissions=["read"], name="py-held")
            self.assertEqual(held["state"], "awaiting_approval")
            self.assertEqual(len(alice.approvals("pending")), 1)
            with self.assertRaises(CalnetError) as cm:
                c.approve(held["approval"])
            self.assertEqual(cm.exception.status, 403)
            self.assertEqual(alice.approve(held["approval"], "ok")["state"], "approved")
            c.set_policies([])
            # Logs, traffic, the permission matrix, the simulator.
            logs = c.logs(q="blessed a child", lines=50)
            self.assertTrue(logs["entries"] and logs["cursor"])
            self.assertTrue(any(p["kind"] == "spawn" and p["to"] == sp["cal"] for p in c.traffic()["pairs"]))
            self.assertEqual(c.matrix(sp["cal"])["rows"][0]["cal"], sp["cal"])
            with self.assertRaises(CalnetError) as cm:
                c.set_matrix(sp["cal"], [{"cal": sp["cal"], "grantable": ["admin"]}])
            self.assertIn("rows[0].grantable", str(cm.exception))
            sim = c.simulate([{"name": "up", "when": "gauges.utilization > 93.0", "cooldown": "10s", "action": {"kind": "spawn", "count": 1, "template": "default"}}], pools=2, duration="1h")
            self.assertEqual(sim["total"]["decisions"], 2 * 720)
            # Restart: a new process for a running Cal; a revoked one is refused.
            before = c.get(sp["cal"])
            re = c.restart(sp["cal"])
            self.assertEqual(re["state"], "running")
            self.assertNotEqual(re["pid"], before["pid"])
            rv = c.revoke(sp["cal"], "python test")
            self.assertEqual(rv["subtree"], [sp["cal"]])
            with self.assertRaises(CalnetError) as cm:
                c.restart(sp["cal"])
            self.assertEqual(cm.exception.status, 409)
            self.assertIn("never runs again", str(cm.exception))
            for _ in range(50):
                if any(e["type"] == "cal.revoked" for e in events):
                    break
                time.sleep(0.1)
            # The audit trail has the revocation, with who and why, in its hash chain.
            trail = c.audit(cal=sp["cal"], type="cal.", since=datetime.now(timezone.utc).replace(microsecond=0).replace(hour=0, minute=0, second=0))
            rec = [r for r in trail["records"] if r["type"] == "cal.revoked"]
            self.assertTrue(rec and rec[0]["reason"] == "python test" and rec[0]["actor"] == "admin" and len(rec[0]["hash"]) == 64)
            with self.assertRaises(CalnetError) as cm:
                c.audit(limit=5000)
            self.assertEqual(cm.exception.status, 400)
            self.assertTrue(any(e["type"] == "spawn.running" and e.get("cal") == sp["cal"] for e in events))
            self.assertTrue(any(e["type"] == "cal.revoked" and e.get("cal") == sp["cal"] for e in events))
        finally:
            up.terminate()
            up.wait(30)


if __name__ == "__main__":
    unittest.main()
