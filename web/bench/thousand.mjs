// A usability benchmark of the dashboard at 1,000 Cals (UX-1.1), in
// headless Chromium: `calnet bench idle --cals 1000 --hold` runs 1,000
// real, isolated Cals and keeps serving; this script signs in, waits for
// the topology and the table to show them all, and measures what a user
// feels: the time to a usable page, how long the main thread is blocked
// (long tasks) while Cals spawn and events stream in, and the time from a
// click on a Cal to its details. Needs root (isolated Cals) and
// /usr/bin/chromium. Results go to stdout for BENCHMARKS.md.
//
//   node bench/thousand.mjs [cals]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const repo = new URL('../../', import.meta.url).pathname;
const cals = Number(process.argv[2] ?? 1000);
const dir = mkdtempSync(join(tmpdir(), 'calnet-ui-bench-'));
const bin = join(dir, 'calnet');
execFileSync('go', ['build', '-o', bin, './cmd/calnet'], { cwd: repo, stdio: 'inherit' });
const bench = spawn(bin, ['bench', 'idle', '--cals', String(cals), '--seconds', '1', '--hold'], { stdio: ['ignore', 'pipe', 'inherit'] });
const lines = createInterface({ input: bench.stdout });
let base = '', token = '';
for await (const line of lines) {
  process.stdout.write(`  bench: ${line}\n`);
  const m = /^serving (\S+) token (\S+)$/.exec(line);
  if (m) { base = m[1]; token = m[2]; break; }
}
if (!base) throw new Error('calnet bench idle --hold did not start serving');

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
const ms = (t) => `${t.toFixed(0)} ms`;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.addInitScript(() => {
    window.__long = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(base + '/');
  const t0 = Date.now();
  await page.fill('#token', token);
  await page.click('#signin-form button');
  await page.waitForFunction((n) => document.querySelectorAll('#cals tbody tr').length >= Math.min(n, 500) && document.querySelector('#graph canvas') !== null, cals + 1, { timeout: 120_000 });
  const usable = Date.now() - t0;
  const nodes = await page.evaluate(() => document.querySelectorAll('#cals tbody tr').length);
  const long0 = await page.evaluate(() => window.__long.splice(0));

  // Spawn 20 more through the API while the page follows the stream.
  const t1 = Date.now();
  await Promise.all(Array.from({ length: 20 }, (_, i) => fetch(`${base}/v1/cals?wait=true`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: `late-${i}`, permissions: ['read'], cpu_millis: 50, memory_bytes: 32 << 20 }),
  })));
  await page.waitForTimeout(3000);
  const stream = Date.now() - t1;
  const long1 = await page.evaluate(() => window.__long.splice(0));

  // Click a Cal in the table: time to its details and verified chain.
  const t2 = Date.now();
  await page.click('#cals tbody tr:nth-child(250)');
  await page.waitForFunction(() => document.querySelectorAll('#sel-chain tbody tr[data-status="ok"]').length >= 2, null, { timeout: 30_000 });
  const click = Date.now() - t2;
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(repo, 'web/test-artifacts/bench-1000.png') });

  const sum = (a) => a.reduce((x, y) => x + y, 0);
  console.log(`cals: ${cals} (+ the Master Cal), rows rendered: ${nodes} (the table shows the first 500; the graph all)`);
  console.log(`sign-in to a usable page: ${ms(usable)}; long tasks meanwhile: ${long0.length}, longest ${ms(Math.max(0, ...long0))}, total ${ms(sum(long0))}`);
  console.log(`20 spawns streamed in over ${ms(stream)}: long tasks ${long1.length}, longest ${ms(Math.max(0, ...long1))}, total ${ms(sum(long1))}`);
  console.log(`click to the selected Cal's verified chain: ${ms(click)}`);
} finally {
  await browser.close();
  bench.kill('SIGTERM');
}
