// Browser tests of the dashboard in headless Chromium (Debian's chromium,
// driven by playwright-core): sign in, spawn from the UI and see the Cal
// appear live, restart it, see a failed Master Cal said loudly and run it
// again, revoke a Cal and see it go, and the chain validator explaining
// a tampered chain. Screenshots are kept in web/test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';

const repo = new URL('../../', import.meta.url).pathname;
const artifacts = join(repo, 'web/test-artifacts');
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

const skip = process.getuid?.() !== 0 ? 'needs root for isolated Cals' : !existsSync(browserPath) ? `no browser at ${browserPath}` : false;

test('dashboard in a real browser', { skip, timeout: 180_000 }, async () => {
  mkdirSync(artifacts, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'calnet-ui-'));
  const bin = join(dir, 'calnet');
  execFileSync('go', ['build', '-o', bin, './cmd/calnet'], { cwd: repo, env: { ...process.env, CGO_ENABLED: '0' }, stdio: 'inherit' });
  const [api, router, dns] = [await freePort(), await freePort(), await freePort()];
  // --max-cpu-pressure 101: other work on a shared machine must not refuse
  // the test's spawns (the refusal has its own tests).
  const args = ['up', '--data', join(dir, 'data'), '--addr', `127.0.0.1:${api}`, '--router', `127.0.0.1:${router}`, '--dns', `127.0.0.1:${dns}`, '--max-cpu-pressure', '101'];
  // The control plane's output goes to a file, shown if the test fails.
  const upLog = join(dir, 'up.log');
  const startUp = () => { const fd = openSync(upLog, 'a'); return spawn(bin, args, { stdio: ['ignore', fd, fd] }); };
  const exited = (p) => (p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.on('exit', r)));
  let up = startUp();
  const base = `http://127.0.0.1:${api}`;
  let token = '';
  for (let i = 0; i < 300 && !token; i++) {
    try { token = readFileSync(join(dir, 'data/admin.token'), 'utf8').trim(); await fetch(`${base}/v1/status`, { headers: { authorization: `Bearer ${token}` } }).then((r) => { if (!r.ok) throw new Error(); }); }
    catch { token = ''; await new Promise((r) => setTimeout(r, 100)); }
  }
  const browser = await chromium.launch({
    executablePath: browserPath, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // Layout problems a first-time user found are collected here and
  // reported together at the end, each with its screenshot.
  const problems = [];
  const check = (what, ok) => { if (!ok) problems.push(what); };
  const noSidewaysScroll = () => page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
  let page;
  try {
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('dialog', (d) => d.accept());
    await page.goto(base + '/');
    // The sign-in page is a styled card in the middle of the page.
    await page.screenshot({ path: join(artifacts, '0-signin.png') });
    const card = await page.evaluate(() => { const r = document.querySelector('#signin-form').getBoundingClientRect(); return { left: r.left, width: r.width, shadow: getComputedStyle(document.querySelector('#signin-form')).boxShadow }; });
    check(`the sign-in form is a centred card (left ${card.left}, width ${card.width}, shadow ${card.shadow})`, card.width <= 480 && card.left > 300 && card.shadow !== 'none');
    // A wrong credential is refused next to the form.
    await page.fill('#token', 'wrong');
    await page.click('#signin-form button');
    await page.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('credential'));
    await page.fill('#token', token);
    await page.click('#signin-form button');
    await page.waitForSelector('#cals tbody tr[data-state="running"]');
    await page.screenshot({ path: join(artifacts, '1-signed-in.png') });

    // Spawn from the form; the new Cal appears live.
    await page.fill('#spawn-name', 'ui-child');
    await page.click('#spawn-submit');
    await page.waitForFunction(() => [...document.querySelectorAll('#cals tbody tr')].some((tr) => tr.cells[1].textContent === 'ui-child' && tr.dataset.state === 'running'), null, { timeout: 30_000 });
    await page.screenshot({ path: join(artifacts, '2-spawned.png') });

    // Selecting a Cal shows its trust chain, verified link by link.
    await page.click('#cals tbody tr:has(td:text-is("ui-child"))');
    await page.waitForFunction(() => document.querySelectorAll('#sel-chain tbody tr[data-status="ok"]').length === 2);

    // The selected Cal's lineage is highlighted with the permissions on
    // each edge; its CPU and memory are charted; administrators get its
    // runtime profiles.
    await page.waitForSelector('#chart-cpu .uplot');
    await page.waitForSelector('#chart-mem .uplot');
    await page.click('#sel-profiles button[data-profile="goroutine"]');
    await page.waitForFunction(() => document.querySelector('#profile-text').textContent.includes('goroutine profile:'), null, { timeout: 20_000 });
    await page.screenshot({ path: join(artifacts, '2a-selected.png') });
    // Selecting a Cal does not make the page wider than the window, and
    // only its lineage (one edge, from the Master Cal) carries a label.
    check('the page scrolls sideways once a Cal is selected', await noSidewaysScroll());
    const g = await page.evaluate(() => ({ ...document.querySelector('#graph').dataset }));
    check(`edge labels on the selected lineage only (graph ${JSON.stringify(g)})`, g.labelledEdges === '1');
    check('the graph has a legend of states', await page.isVisible('#legend [data-state="revoked"]'));

    // Logs of every Cal, merged, searched and followed.
    await page.click('nav button[data-view="logs"]');
    await page.fill('#logs-q', 'blessed a child');
    await page.click('#logs-form button[type="submit"]');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#logs tbody tr')];
      return rows.length >= 1 && rows.every((tr) => tr.cells[3].textContent.includes('blessed a child'));
    });
    const before = await page.$$eval('#logs tbody tr', (rs) => rs.length);
    await fetch(`${base}/v1/cals?wait=true`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'log-follow', permissions: ['read'] }) });
    await page.waitForFunction((n) => document.querySelectorAll('#logs tbody tr').length > n, before, { timeout: 15_000 });
    // Every line, in a window too short for them: scrolling to the last
    // line keeps the navigation on screen.
    await page.setViewportSize({ width: 1280, height: 220 });
    await page.fill('#logs-q', '');
    await page.click('#logs-form button[type="submit"]');
    await page.waitForFunction(() => document.querySelectorAll('#logs tbody tr').length >= 2);
    await page.evaluate(() => { window.scrollTo(0, 1e6); document.querySelector('#logs tbody tr:last-child').scrollIntoView(); });
    const nav = await page.evaluate(() => document.querySelector('nav').getBoundingClientRect().top);
    check(`the navigation stays on screen over the logs (its top at ${nav} px)`, nav >= 0 && nav < 80);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.evaluate(() => { window.scrollTo(0, 1e6); document.querySelector('#logs tbody tr:last-child').scrollIntoView(); });
    await page.screenshot({ path: join(artifacts, '2e-logs.png') });
    await page.evaluate(() => window.scrollTo(0, 0));

    // The traffic matrix shows the spawns from the Master Cal.
    await page.click('nav button[data-view="traffic"]');
    await page.waitForFunction(() => [...document.querySelectorAll('#traffic-matrix tbody tr[data-from="master"] td[data-to="ui-child"]')].some((td) => td.title.includes('spawn 1')));
    await page.screenshot({ path: join(artifacts, '2g-traffic.png') });

    // The permission matrix: master may no longer grant read; the spawn
    // form's request is refused with the matrix's reason; then restored.
    await page.click('nav button[data-view="matrix"]');
    await page.selectOption('#matrix-root', { label: 'master' });
    await page.waitForSelector('#matrix tbody tr[data-cal="master"] input[data-perm="read"]');
    await page.uncheck('#matrix tbody tr[data-cal="master"] input[data-perm="read"]');
    await page.click('#matrix-apply');
    await page.waitForFunction(() => document.querySelector('#matrix-error').textContent.includes('1 Cal(s) updated'));
    await page.screenshot({ path: join(artifacts, '2h-matrix.png') });
    await page.click('nav button[data-view="topology"]');
    await page.fill('#spawn-name', 'not-granted');
    await page.click('#spawn-submit');
    await page.waitForFunction(() => document.querySelector('#spawn-error').textContent.includes('permission matrix'));
    await page.fill('#spawn-name', '');
    await page.click('nav button[data-view="matrix"]');
    await page.check('#matrix tbody tr[data-cal="master"] input[data-perm="read"]');
    await page.click('#matrix-apply');
    await page.waitForFunction(() => document.querySelector('#matrix-error').textContent.includes('1 Cal(s) updated'));

    // The debugging console of a Cal in the browser.
    await page.click('nav button[data-view="console"]');
    await page.selectOption('#console-cal', { label: 'ui-child' });
    await page.click('#console-attach');
    await page.waitForFunction(() => document.querySelector('#console-out').textContent.includes('(type help)'));
    await page.fill('#console-input', 'help');
    await page.press('#console-input', 'Enter');
    await page.waitForFunction(() => document.querySelector('#console-out').textContent.includes('this text'));
    await page.screenshot({ path: join(artifacts, '2f-console.png') });
    await page.click('#console-detach');

    // The performance view shows the spawn latency percentiles.
    await page.click('nav button[data-view="metrics"]');
    await page.waitForFunction(() => /\d+ ms/.test(document.querySelector('#m-p50').textContent));
    await page.screenshot({ path: join(artifacts, '2b-performance.png') });
    // uPlot draws the axes' ticks and titles on its canvas; the element
    // says which axes it drew.
    const axes = await page.evaluate(() => `${document.querySelectorAll('#m-latency .u-axis').length} ${document.querySelector('#m-latency').dataset.axes}`);
    check(`the latency chart has labelled axes (${axes})`, axes === '2 spawn requested at|ms to operational');
    // The resource heat map lists every running Cal.
    await page.click('nav button[data-view="heat"]');
    await page.waitForFunction(() => document.querySelectorAll('#heat text').length === 3);
    await page.screenshot({ path: join(artifacts, '2c-heat.png') });
    // The rule builder: a CEL error with its position as you type, a
    // preview over the Cal's recorded metrics, then enable and remove.
    await page.click('nav button[data-view="rules"]');
    await page.selectOption('#rule-cal', { label: 'ui-child' });
    await page.fill('#rule-when', 'cpu > 5.0');
    await page.waitForFunction(() => document.querySelector('#rule-error').textContent.includes("1:1: undeclared reference to 'cpu'"));
    await page.fill('#rule-when', 'cpu_percent >= 0.0');
    await page.waitForFunction(() => /^(Over \d+ samples|The rule compiles)/.test(document.querySelector('#rule-summary').textContent) && document.querySelector('#rule-error').textContent === '');
    await page.click('#rule-simulate');
    await page.waitForFunction(() => /Simulated \(10 pools, 24 h\): [\d.]+% of decisions optimal/.test(document.querySelector('#rule-sim').textContent), null, { timeout: 30_000 });
    await page.click('#rule-enable');
    await page.waitForSelector('#rules-list tbody tr[data-rule="scale-up"]');
    assert.ok((await page.textContent('#rule-vars')).includes('idle_children'));
    await page.screenshot({ path: join(artifacts, '2d-rules.png') });
    await page.click('#rules-list tbody tr[data-rule="scale-up"] button');
    await page.waitForFunction(() => document.querySelectorAll('#rules-list tbody tr').length === 0);
    await page.click('nav button[data-view="topology"]');

    // An API error shows next to the control that caused it.
    await page.fill('#spawn-name', 'Bad Name');
    await page.click('#spawn-submit');
    await page.waitForFunction(() => document.querySelector('#spawn-error').textContent.includes('name'));

    // The limit sliders change the running network's limits.
    await page.fill('#lim-max', '321');
    await page.click('#lim-apply');
    for (let i = 0; i < 50; i++) {
      const l = await (await fetch(`${base}/v1/limits`, { headers: { authorization: `Bearer ${token}` } })).json();
      if (l.max_cals === 321) break;
      assert.ok(i < 49, 'the max Cals slider did not reach the API');
      await new Promise((r) => setTimeout(r, 100));
    }

    // Restart a running Cal from the UI: a new process runs it.
    const getCal = async (id) => (await fetch(`${base}/v1/cals/${id}`, { headers: { authorization: `Bearer ${token}` } })).json();
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    await page.click('#cals tbody tr:has(td:text-is("ui-child"))');
    const pid0 = (await getCal('ui-child')).pid;
    await page.click('#restart');
    for (let i = 0; ; i++) {
      const c = await getCal('ui-child');
      if (c.state === 'running' && c.pid !== pid0) break;
      assert.ok(i < 150, `ui-child did not run as a new process after Restart: ${JSON.stringify(c)}`);
      await sleep(100);
    }
    await page.waitForFunction((p) => [...document.querySelectorAll('#selected div')].some((d) => /^PID: \d+/.test(d.textContent) && !d.textContent.startsWith(`PID: ${p} `)), pid0);

    // A failed Master Cal is said loudly, and the UI runs it again: its
    // soul chain is broken so that every restart of the supervisor fails,
    // then mended before the Restart button is pressed.
    const master = await getCal('master');
    const chainFile = join(dir, 'data/cals', master.id, 'soul-chain.sig');
    const good = readFileSync(chainFile);
    writeFileSync(chainFile, 'not a soul chain');
    process.kill(master.pid, 'SIGKILL');
    await page.waitForFunction(() => !document.querySelector('#master-alert').hidden && document.querySelector('#master-alert').textContent.includes('has failed'), null, { timeout: 60_000 });
    await page.screenshot({ path: join(artifacts, '2i-master-failed.png') });
    writeFileSync(chainFile, good);
    await page.click('#cals tbody tr:has(td:text-is("master"))');
    await page.waitForFunction(() => !document.querySelector('#restart').hidden && document.querySelector('#restart').textContent === 'Restart (run it again)');
    await page.click('#restart');
    await page.waitForFunction(() => document.querySelector('#master-alert').hidden, null, { timeout: 30_000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#cals tbody tr')].some((tr) => tr.cells[1].textContent === 'master' && tr.dataset.state === 'running'), null, { timeout: 30_000 });

    // Revoke it from the UI; it goes.
    await page.click('#cals tbody tr:has(td:text-is("ui-child"))');
    await page.click('#revoke');
    await page.waitForFunction(() => [...document.querySelectorAll('#cals tbody tr')].some((tr) => tr.cells[1].textContent === 'ui-child' && tr.dataset.state === 'revoked'), null, { timeout: 15_000 });
    // A revoked Cal leaves the graph; "show revoked Cals" draws it dashed.
    const shownAfterRevoke = await page.evaluate(() => document.querySelector('#graph').dataset.revokedShown);
    check(`a revoked Cal leaves the graph (revoked shown: ${shownAfterRevoke})`, shownAfterRevoke === '0');
    if (await page.isVisible('#show-revoked')) {
      await page.check('#show-revoked');
      await page.waitForFunction(() => document.querySelector('#graph').dataset.revokedShown === '1');
    }
    await page.screenshot({ path: join(artifacts, '3-revoked.png') });
    if (await page.isVisible('#show-revoked')) await page.uncheck('#show-revoked');

    // The audit trail shows the revocation, by whom, filtered by type and
    // Cal; each record's hash is there for `calnet audit verify`.
    await page.click('nav button[data-view="audit"]');
    await page.waitForSelector('#audit tbody tr[data-type="spawn.admitted"]');
    await page.fill('#audit-type', 'cal.');
    await page.click('#audit-form button[type="submit"]');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#audit tbody tr')];
      return rows.length >= 1 && rows.every((tr) => tr.dataset.type.startsWith('cal.')) && rows.some((tr) => tr.dataset.type === 'cal.revoked' && tr.cells[5].textContent === 'admin');
    }, null, { timeout: 15_000 });
    const seqs = await page.$$eval('#audit tbody tr', (rs) => rs.map((tr) => Number(tr.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'records oldest first');
    assert.match(await page.textContent('#audit-summary'), /the trail's newest is #\d+/);
    await page.fill('#audit-cal', 'ab');
    await page.click('#audit-form button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#audit-error').textContent.includes('prefix of at least 4 characters'));
    await page.fill('#audit-cal', '');
    await page.fill('#audit-type', '');
    await page.screenshot({ path: join(artifacts, '3a-audit.png') });

    // The chain validator explains a tampered chain, link by link.
    const chain = await (await fetch(`${base}/v1/cals/master/chain`, { headers: { authorization: `Bearer ${token}` } })).json();
    const sig = chain.blessings[0].signature.ed25519;
    chain.blessings[0].signature.ed25519 = (sig[5] === 'A' ? 'B' : 'A') + sig.slice(1, 5) + sig.slice(5);
    chain.blessings[0].signature.ed25519 = sig.slice(0, 5) + (sig[5] === 'A' ? 'B' : 'A') + sig.slice(6);
    await page.click('nav button[data-view="validator"]');
    await page.fill('#chain-text', JSON.stringify(chain));
    await page.click('#chain-verify');
    await page.waitForSelector('#chain-links tbody tr[data-status="failed"]');
    const verdict = await page.textContent('#chain-verdict');
    assert.match(verdict, /INVALID at link 0: bad-signature/);
    await page.screenshot({ path: join(artifacts, '4-validator.png') });

    // Approvals: a require_approval policy holds a spawn made from the UI;
    // the root who asked cannot approve it, alice (a named administrator)
    // approves it from her own session and the Cal starts.
    const call = async (method, path, body, tok = token) => {
      const r = await fetch(base + path, { method, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
      assert.ok(r.ok, `${method} ${path}: ${r.status} ${await r.clone().text()}`);
      return r.status === 204 ? null : r.json();
    };
    const alice = (await call('POST', '/v1/admins', { name: 'alice' })).token;
    await call('PUT', '/v1/policies', { policies: [{ name: 'held-names', require_approval: 'request_name.startsWith("held")', message: 'held Cals need a second pair of eyes' }] });
    await page.click('nav button[data-view="topology"]');
    await page.fill('#spawn-name', 'held-one');
    await page.click('#spawn-submit');
    await page.waitForFunction(() => document.querySelector('#spawn-error').textContent.includes('held for approval'));
    await page.waitForFunction(() => document.querySelector('#approvals-badge').textContent === '1');
    await page.click('nav button[data-view="approvals"]');
    await page.waitForFunction(() => document.querySelector('#approvals tbody tr[data-state="pending"]')?.textContent.includes('yours'));
    await page.click('#signout');
    await page.fill('#token', alice);
    await page.click('#signin-form button');
    await page.waitForFunction(() => document.querySelector('#whoami').textContent === 'administrator alice');
    await page.click('nav button[data-view="approvals"]');
    await page.fill('#approval-comment', 'looks fine');
    await page.click('#approvals tbody tr[data-state="pending"] button[data-verb="approve"]');
    await page.waitForSelector('#approvals tbody tr[data-state="approved"]');
    await page.screenshot({ path: join(artifacts, '5-approvals.png') });
    await page.click('nav button[data-view="topology"]');
    await page.waitForFunction(() => [...document.querySelectorAll('#cals tbody tr')].some((tr) => tr.cells[1].textContent === 'held-one' && tr.dataset.state === 'running'), null, { timeout: 30_000 });

    // A read-only developer token is not offered spawning, limits or the
    // kill switch.
    const dev = (await call('POST', '/v1/tokens', { name: 'viewer', permissions: ['read'] })).token;
    await page.click('#signout');
    await page.fill('#token', dev);
    await page.click('#signin-form button');
    await page.waitForFunction(() => document.querySelector('#whoami').textContent.startsWith('token '));
    // Signed in (a hidden app would hide the boxes below too).
    assert.ok(await page.isVisible('#app') && await page.isVisible('#signout'));
    assert.ok(await page.isHidden('#spawn-box'));
    assert.ok(await page.isHidden('#admin-box'));
    assert.ok(await page.isHidden('nav button[data-view="console"]'));
    await page.screenshot({ path: join(artifacts, '6-read-only-token.png') });

    // The dashboard survives a restart of the control plane: it
    // reconnects, resumes the stream and shows what happens next.
    await page.click('#signout');
    await page.fill('#token', token);
    await page.click('#signin-form button');
    await page.waitForFunction(() => document.querySelector('#conn').textContent === 'live');
    up.kill('SIGTERM');
    await exited(up);
    await page.waitForFunction(() => document.querySelector('#conn').textContent.startsWith('reconnecting'));
    up = startUp();
    await page.waitForFunction(() => document.querySelector('#conn').textContent === 'live', null, { timeout: 60_000 });
    // The API answers before the Master Cal has registered again: wait
    // for it, as a spawn under it is refused until then.
    for (let i = 0; ; i++) {
      const m = await (await fetch(`${base}/v1/cals/master`, { headers: { authorization: `Bearer ${token}` } })).json().catch(() => ({}));
      if (m.state === 'running') break;
      assert.ok(i < 600, 'the Master Cal did not run again after the restart');
      await new Promise((r) => setTimeout(r, 100));
    }
    await call('POST', '/v1/cals?wait=true', { name: 'after-restart', permissions: ['read'] });
    await page.waitForFunction(() => [...document.querySelectorAll('#cals tbody tr')].some((tr) => tr.cells[1].textContent === 'after-restart' && tr.dataset.state === 'running'), null, { timeout: 30_000 });
    await page.screenshot({ path: join(artifacts, '7-after-restart.png') });

    // API data never becomes HTML: a name with markup is shown as text.
    const html = await page.evaluate(() => document.querySelector('#cals').innerHTML);
    assert.ok(!html.includes('<script'));

    // The API docs: a table of contents, and code set as code (no literal
    // backticks).
    await page.goto(base + '/docs');
    await page.screenshot({ path: join(artifacts, '8-docs.png') });
    const docs = await page.evaluate(() => ({ toc: document.querySelectorAll('#toc a[href^="#"]').length, ops: document.querySelectorAll('.op').length, ticks: document.body.innerText.includes('`'), code: document.querySelectorAll('.op code').length }));
    check(`/docs has a table of contents linking every operation (${JSON.stringify(docs)})`, docs.toc > 0 && docs.toc >= docs.ops);
    check(`/docs shows no literal backticks (${JSON.stringify(docs)})`, !docs.ticks && docs.code > 0);
    assert.deepEqual(problems, [], 'layout problems (see web/test-artifacts)');
  } catch (err) {
    if (problems.length) console.error(`layout problems before the failure:\n${problems.join('\n')}`);
    await browser.contexts()[0]?.pages()[0]?.screenshot({ path: join(artifacts, 'failure.png') }).catch(() => {});
    console.error(`control plane output:\n${readFileSync(upLog, 'utf8').split('\n').slice(-60).join('\n')}`);
    throw err;
  } finally {
    await browser.close();
    up.kill('SIGTERM');
    await exited(up);
  }
});
