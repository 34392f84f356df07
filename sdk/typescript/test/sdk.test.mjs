// Tests of the TypeScript SDK: the golden soul-chain vectors offline, and
// a live `calnet up` (as root) for spawn, list, watch and revoke.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { verifyChain, ChainError, Calnet, CalnetError } from '../dist/index.js';

const repo = new URL('../../../', import.meta.url).pathname;

test('golden soul-chain vectors', () => {
  const vf = JSON.parse(readFileSync(join(repo, 'testdata/vectors/soul-chains.json'), 'utf8'));
  assert.ok(vf.cases.length >= 10);
  assert.ok(vf.other_networks.length >= 1);
  const sets = [[vf.root_keys, vf.cases], ...vf.other_networks.map((n) => [n.root_keys, n.cases])];
  for (const [rootKeys, cases] of sets) {
    for (const c of cases) {
      const at = new Date(c.verify_at);
      if (c.expect.valid) {
        const v = verifyChain(rootKeys, c.chain, at, c.revocations);
        assert.equal(v.cal, c.expect.cal, c.name);
        assert.deepEqual(v.permissions, c.expect.permissions, c.name);
      } else {
        assert.throws(() => verifyChain(rootKeys, c.chain, at, c.revocations), (e) => {
          assert.ok(e instanceof ChainError, `${c.name}: ${e}`);
          assert.equal(e.reason, c.expect.reason, `${c.name}: ${e.message}`);
          assert.equal(e.link, c.expect.link, `${c.name}: ${e.message}`);
          return true;
        });
      }
    }
  }
});

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

const root = process.getuid?.() === 0;

test('live network: spawn, list, watch, restart, revoke', { skip: !root && 'needs root for isolated Cals', timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'calnet-ts-'));
  const bin = join(dir, 'calnet');
  execFileSync('go', ['build', '-o', bin, './cmd/calnet'], { cwd: repo, env: { ...process.env, CGO_ENABLED: '0' }, stdio: 'inherit' });
  const [api, router, dns] = [await freePort(), await freePort(), await freePort()];
  const up = spawn(bin, ['up', '--data', join(dir, 'data'), '--addr', `127.0.0.1:${api}`, '--router', `127.0.0.1:${router}`, '--dns', `127.0.0.1:${dns}`], { stdio: 'ignore' });
  try {
    let c;
    for (let i = 0; i < 300; i++) {
      try {
        c = new Calnet(`127.0.0.1:${api}`, readFileSync(join(dir, 'data/admin.token'), 'utf8').trim());
        const st = await c.status();
        if (st.cals?.running >= 1) break;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    const events = [];
    const stop = c.watch((e) => events.push(e));
    const sp = await c.spawn({ name: 'ts-child', permissions: ['read'] });
    assert.equal(sp.state, 'running');
    const cals = await c.list();
    assert.ok(cals.some((x) => x.id === sp.cal && x.namespace === 'ts-child.master'));
    await assert.rejects(c.spawn({ permissions: ['fly'] }), (e) => e instanceof CalnetError && e.status === 400);
    // Rules, policies and recommendations.
    const rule = { name: 'grow', when: 'children < 1', cooldown: '1m', action: { kind: 'spawn', count: 1, template: 'default' } };
    await assert.rejects(c.setRules(sp.cal, [{ ...rule, when: 'kids < 1' }]), (e) => e instanceof CalnetError && e.status === 400 && e.message.includes("rules[0].when: 1:1: undeclared reference to 'kids'"));
    await c.setRules(sp.cal, [rule]);
    assert.equal((await c.rules(sp.cal)).rules[0].name, 'grow');
    assert.ok((await c.previewRule(sp.cal, rule)).counts);
    await c.setRules(sp.cal, []);
    await assert.rejects(c.setPolicies([{ name: 'all', deny: 'true', message: 'no' }]), (e) => e instanceof CalnetError && e.message.includes('denies every request'));
    await c.setPolicies([{ name: 'no-admin-deep', deny: 'depth > 2 && "admin" in request_permissions', message: 'admin only near the root' }]);
    assert.equal((await c.policies()).policies.length, 1);
    await c.setPolicies([]);
    assert.equal((await c.recommendations(sp.cal)).resources.length, 2);
    assert.equal((await c.templateRecommendations('default')).template, 'default');
    // Approvals: a second administrator approves what the root asked.
    assert.equal((await c.whoami()).root, true);
    const table = await c.authz();
    assert.deepEqual(table.find((e) => e.surface === 'operator' && e.route === 'POST /v1/admins').who, ['root']);
    const alice = new Calnet(`127.0.0.1:${api}`, (await c.addAdmin('ts-alice')).token);
    assert.equal((await alice.whoami()).name, 'ts-alice');
    await c.setPolicies([{ name: 'held', require_approval: 'request_name == "ts-held"', message: 'held for the test' }]);
    const held = await c.spawn({ name: 'ts-held', permissions: ['read'] });
    assert.equal(held.state, 'awaiting_approval');
    assert.equal((await alice.approvals('pending')).length, 1);
    await assert.rejects(c.approve(held.approval), (e) => e instanceof CalnetError && e.status === 403);
    const ap = await alice.approve(held.approval, 'ok');
    assert.equal(ap.state, 'approved');
    await c.setPolicies([]);
    // Logs, traffic, the permission matrix, the simulator.
    const logs = await c.logs({ q: 'blessed a child', lines: 50 });
    assert.ok(logs.entries.length >= 1 && logs.cursor);
    assert.ok((await c.traffic()).pairs.some((p) => p.kind === 'spawn' && p.to === sp.cal));
    const m = await c.matrix(sp.cal);
    assert.equal(m.rows[0].cal, sp.cal);
    await assert.rejects(c.setMatrix(sp.cal, [{ cal: sp.cal, grantable: ['admin'] }]), (e) => e instanceof CalnetError && e.status === 400 && e.message.includes('rows[0].grantable'));
    const sim = await c.simulate({ rules: [{ name: 'up', when: 'gauges.utilization > 93.0', cooldown: '10s', action: { kind: 'spawn', count: 1, template: 'default' } }], pools: 2, duration: '1h' });
    assert.equal(sim.total.decisions, 2 * 720);
    // Restart: a new process for a running Cal; a revoked one is refused.
    const before = await c.get(sp.cal);
    const re = await c.restart(sp.cal);
    assert.equal(re.state, 'running');
    assert.notEqual(re.pid, before.pid);
    const rv = await c.revoke(sp.cal, 'ts test');
    assert.deepEqual(rv.subtree, [sp.cal]);
    await assert.rejects(c.restart(sp.cal), (e) => e instanceof CalnetError && e.status === 409 && e.message.includes('never runs again'));
    for (let i = 0; i < 50 && !events.some((e) => e.type === 'cal.revoked'); i++) await new Promise((r) => setTimeout(r, 100));
    // The audit trail has the revocation, with who and why, in its hash chain.
    const trail = await c.audit({ cal: sp.cal, type: 'cal.', since: new Date(Date.now() - 3600_000) });
    const rec = trail.records.find((r) => r.type === 'cal.revoked');
    assert.ok(rec && rec.reason === 'ts test' && rec.actor === 'admin' && rec.hash.length === 64 && trail.head_seq >= rec.seq, 'revocation in the audit trail');
    await assert.rejects(c.audit({ limit: 5000 }), (e) => e instanceof CalnetError && e.status === 400 && e.message.includes('limit'));
    stop();
    assert.ok(events.some((e) => e.type === 'spawn.running' && e.cal === sp.cal), 'spawn event seen');
    assert.ok(events.some((e) => e.type === 'cal.revoked' && e.cal === sp.cal), 'revocation event seen');
  } finally {
    up.kill('SIGTERM');
    await new Promise((r) => up.on('exit', r));
  }
});
