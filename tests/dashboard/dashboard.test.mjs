// The dashboard in a real browser (Debian's headless Chromium, driven by playwright-core), against
// a real nats-server, the real `webhook-operator local` and a real receiver that fails at first
// and recovers. Run with `make dashboard-test`.
//
// Needs: target/debug/webhook-operator (WEBHOOK_OPERATOR_BIN), .tools/bin/nats-server
// (NATS_SERVER_BIN), /usr/bin/chromium (CHROMIUM_BIN); all installed by `make tools` / `make build`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const BINARY = process.env.WEBHOOK_OPERATOR_BIN || path.join(TARGET, 'debug', 'webhook-operator');
const NATS_SERVER = process.env.NATS_SERVER_BIN || path.join(ROOT, '.tools', 'bin', 'nats-server');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SCREENSHOT = path.join(TARGET, 'dashboard.png');
// `make dashboard-screenshot` refreshes the README's picture.
const DOCS_SCREENSHOT = process.env.DASHBOARD_DOCS_SCREENSHOT === '1'
  ? path.join(ROOT, 'docs', 'dashboard.png') : null;

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const EVENTS = ['order-1001', 'order-1002', 'order-1003'];
const FAILURE_BODY = 'maintenance window: back at 10:00 UTC';
const WAIT_MS = 30_000;

// ---- Helpers

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries `check` (which throws while its condition does not hold) until it passes. */
async function eventually(check, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) {
        error.message = `${what}: still failing after ${timeoutMs} ms: ${error.message}`;
        throw error;
      }
    }
    await sleep(100);
  }
}

function start(name, program, args, logFile) {
  assert.ok(fs.existsSync(program), `${name}: ${program} is missing (make tools, make build)`);
  const log = fs.openSync(logFile, 'a');
  const child = spawn(program, args, { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  return child;
}

async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Standard Webhooks verification, written from the spec: HMAC-SHA256 over id.timestamp.body. */
function verifySignature(delivery) {
  const id = delivery.headers['webhook-id'];
  const timestamp = delivery.headers['webhook-timestamp'];
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(delivery.body)
    .digest();
  const signatures = (delivery.headers['webhook-signature'] || '').split(' ')
    .filter((s) => s.startsWith('v1,'))
    .map((s) => Buffer.from(s.slice(3), 'base64'));
  return signatures.some((s) => s.length === expected.length && timingSafeEqual(s, expected));
}

/** Records every request; /acme/orders answers 503 until `recovered`, everything else 200. */
class FlakyReceiver {
  constructor() {
    this.recovered = false;
    this.requests = [];
    this.server = http.createServer((request, response) => {
      const chunks = [];
      request.on('data', (chunk) => chunks.push(chunk));
      request.on('end', () => {
        const failing = request.url === '/acme/orders' && !this.recovered;
        const status = failing ? 503 : 200;
        this.requests.push({
          path: request.url, headers: request.headers, body: Buffer.concat(chunks), status,
        });
        response.writeHead(status, { 'content-type': 'text/plain' });
        response.end(failing ? FAILURE_BODY : 'ok');
      });
    });
  }

  async listen() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
  }

  url(p) {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  delivered(p) {
    return this.requests.filter((r) => r.path === p && r.status === 200);
  }

  close() {
    this.server.closeAllConnections();
    this.server.close();
  }
}

/** Serves the admin API under a path prefix, as `kubectl proxy` and the API server's service
 * proxy do; anything outside the prefix is a stray request (404). */
class PrefixProxy {
  constructor(prefix, target) {
    this.prefix = prefix;
    this.strays = [];
    this.server = http.createServer((request, response) => {
      if (!request.url.startsWith(`${prefix}/`)) {
        this.strays.push(request.url);
        response.writeHead(404).end();
        return;
      }
      const upstream = http.request(`${target}${request.url.slice(prefix.length)}`, {
        method: request.method, headers: request.headers,
      }, (answer) => {
        response.writeHead(answer.statusCode, answer.headers);
        answer.pipe(response);
      });
      upstream.on('error', () => response.writeHead(502).end());
      request.pipe(upstream);
    });
  }

  async listen() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${this.server.address().port}${this.prefix}`;
  }

  close() {
    this.server.closeAllConnections();
    this.server.close();
  }
}

function manifests(receiver) {
  const endpoint = (namespace, name, extra = '') => `---
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  url: ${receiver.url(`/${namespace}/${name}`)}
  secretRef: { name: signing }
  timeout: 2s
  retry: { maxAttempts: 2, initialBackoff: 200ms, maxBackoff: 1s, maxAge: 1h }
${extra}`;
  const subscription = (namespace, name, endpointName, types) => `---
apiVersion: webhook-operator.io/v1alpha1
kind: EventSubscription
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  endpointRef: { name: ${endpointName} }
  eventTypes: ${JSON.stringify(types)}
`;
  const secret = (namespace) => `---
apiVersion: v1
kind: Secret
metadata: { name: signing, namespace: ${namespace} }
stringData: { secret: "${SECRET}" }
`;
  return [
    endpoint('acme', 'orders'),
    endpoint('acme', 'billing'),
    endpoint('globex', 'crm', '  paused: true\n'),
    subscription('acme', 'orders-paid', 'orders', ['order.paid']),
    subscription('acme', 'billing-orders', 'billing', ['order.*']),
    subscription('globex', 'crm-all', 'crm', ['>']),
    secret('acme'),
    secret('globex'),
  ].join('');
}

// ---- The scenario

describe('dashboard', { timeout: 180_000 }, () => {
  const ctx = {};
  const row = (key) => ctx.page.locator(`tr.endpoint[data-endpoint="${key}"]`);
  const cell = (key, name) => row(key).locator(`td.${name}`);
  const text = async (locator) => ((await locator.textContent()) || '').trim();
  // Steps run in order on one page; a failed one keeps the pipeline's log for the report.
  const step = (name, fn) => it(name, async () => {
    try {
      await fn();
    } catch (error) {
      ctx.failed = true;
      throw error;
    }
  });

  before(async () => {
    ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-dashboard-'));
    ctx.receiver = new FlakyReceiver();
    await ctx.receiver.listen();

    const natsPort = await freePort();
    ctx.nats = start('nats-server', NATS_SERVER,
      ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(ctx.dir, 'js')],
      path.join(ctx.dir, 'nats.log'));

    const manifestDir = path.join(ctx.dir, 'manifests');
    fs.mkdirSync(manifestDir);
    fs.writeFileSync(path.join(manifestDir, 'tenants.yaml'), manifests(ctx.receiver));
    const adminPort = await freePort();
    ctx.admin = `http://127.0.0.1:${adminPort}`;
    ctx.pipelineLog = path.join(ctx.dir, 'pipeline.log');
    await eventually(async () => {
      const socket = net.connect(natsPort, '127.0.0.1');
      await once(socket, 'connect');
      socket.destroy();
    }, 'nats-server accepting connections');
    ctx.pipeline = start('webhook-operator', BINARY, [
      'local', '--manifests', manifestDir, '--nats-url', `nats://127.0.0.1:${natsPort}`,
      '--listen', `127.0.0.1:${adminPort}`, '--allow-private-networks',
    ], ctx.pipelineLog);
    await eventually(async () => {
      const response = await fetch(`${ctx.admin}/readyz`);
      assert.equal(response.status, 200);
    }, 'webhook-operator local ready');

    ctx.userDataDir = path.join(ctx.dir, 'chromium-profile');
    ctx.browser = await chromium.launchPersistentContext(ctx.userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1440, height: 1000 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-dev-shm-usage'],
    });
    ctx.page = ctx.browser.pages()[0] || await ctx.browser.newPage();
    ctx.pageErrors = [];
    ctx.page.on('pageerror', (error) => ctx.pageErrors.push(error.message));
    ctx.page.on('console', (message) => {
      // A Content-Security-Policy violation is logged as an error.
      if (message.type() === 'error' && /Content Security Policy/.test(message.text())) {
        ctx.pageErrors.push(message.text());
      }
    });
  });

  after(async () => {
    await ctx.browser?.close().catch(() => {});
    await stop(ctx.pipeline);
    await stop(ctx.nats);
    ctx.receiver?.close();
    if (ctx.failed && ctx.pipelineLog && fs.existsSync(ctx.pipelineLog)) {
      const log = fs.readFileSync(ctx.pipelineLog, 'utf8').split('\n').slice(-40).join('\n');
      console.error(`--- webhook-operator log (last lines) ---\n${log}`);
    }
    if (ctx.dir) fs.rmSync(ctx.dir, { recursive: true, force: true });
  });

  step('lists every endpoint with its namespace, URL and health', async () => {
    await ctx.page.goto(`${ctx.admin}/dashboard`);
    assert.equal(await ctx.page.title(), 'webhook-operator');
    await eventually(async () => assert.equal(await ctx.page.locator('tr.endpoint').count(), 3),
      'three endpoint rows');
    assert.equal(await text(cell('acme/orders', 'namespace')), 'acme');
    assert.equal(await text(cell('acme/orders', 'name')), 'orders');
    assert.equal(await text(cell('acme/orders', 'url')), ctx.receiver.url('/acme/orders'));
    assert.equal(await text(cell('acme/orders', 'health')), 'Pending');
    assert.equal(await text(cell('globex/crm', 'health')), 'Paused');
    assert.equal(await text(cell('acme/billing', 'delivered')), '0');
    // The namespace filter narrows the table.
    await ctx.page.selectOption('#namespace', 'globex');
    assert.equal(await ctx.page.locator('tr.endpoint').count(), 1);
    await ctx.page.selectOption('#namespace', '');
    assert.equal(await ctx.page.locator('tr.endpoint').count(), 3);
  });

  step('works behind a path prefix, as through kubectl proxy', async () => {
    const proxy = new PrefixProxy(
      '/api/v1/namespaces/webhook-operator/services/webhook-operator-controller-metrics:admin/proxy',
      ctx.admin);
    const base = await proxy.listen();
    const page = await ctx.browser.newPage();
    try {
      // The trailing-slash form redirects to the page, still under the prefix.
      await page.goto(`${base}/dashboard/`);
      assert.equal(page.url(), `${base}/dashboard`);
      await eventually(async () => assert.equal(await page.locator('tr.endpoint').count(), 3),
        'endpoint rows through the prefix');
      assert.deepEqual(proxy.strays, []);
    } finally {
      await page.close();
      proxy.close();
    }
  });

  step('refreshes by itself as deliveries fail and succeed', async () => {
    for (const id of EVENTS) {
      const response = await fetch(`${ctx.admin}/v1/events/acme/order.paid`, {
        method: 'POST', headers: { 'idempotency-key': id }, body: JSON.stringify({ order: id }),
      });
      assert.equal(response.status, 202);
    }
    // No reload: the page's own 5-second refresh brings the counters.
    await eventually(async () => {
      assert.equal(await text(cell('acme/orders', 'dead')), '3');
      assert.equal(await text(cell('acme/billing', 'delivered')), '3');
    }, 'counters on the page');
    assert.equal(await text(cell('acme/orders', 'failed')), '6');
    assert.match(await text(cell('acme/orders', 'health')), /^Failing/);
    assert.match(await text(cell('acme/billing', 'health')), /^Healthy/);
    assert.match(await text(cell('acme/orders', 'last-failure')), /HTTP503/);
    assert.equal(await text(cell('acme/billing', 'last-failure')), '—');
  });

  step('shows the attempts of an endpoint with their failure reasons', async () => {
    await row('acme/orders').locator('td.url').click();
    await eventually(async () => assert.equal(new URL(ctx.page.url()).hash, '#acme/orders'),
      'selection in the address');
    // The address changes on the click; the panel renders once its data arrives.
    await eventually(async () => assert.equal(await text(ctx.page.locator('#detail-title')), 'acme/orders'),
      'detail panel title');
    const attempts = ctx.page.locator('#attempts tr.attempt');
    await eventually(async () => assert.equal(await attempts.count(), 6,
      `page says: ${await text(ctx.page.locator('#attempts-note'))}`), 'six attempts');
    const seen = new Set();
    for (let i = 0; i < 6; i += 1) {
      const attempt = attempts.nth(i);
      seen.add(await attempt.getAttribute('data-event-id'));
      assert.equal(await text(attempt.locator('td.result')), 'http_5xx');
      assert.equal(await text(attempt.locator('td.status')), '503');
      assert.match(await text(attempt.locator('td.duration')), /\d+(\.\d+)? m?s$/);
      assert.match(await text(attempt.locator('td.details .reason')), /HTTP503/);
      assert.equal(await text(attempt.locator('td.details .response-body')), FAILURE_BODY);
    }
    assert.deepEqual([...seen].sort(), EVENTS);
    // Each event: its first attempt was retried, its second dead-lettered.
    const outcomes = await attempts.locator('td.outcome .badge').allTextContents();
    assert.deepEqual(outcomes.sort(), [...Array(3).fill('dead-lettered'), ...Array(3).fill('retrying')]);
    // Newest first.
    const numbers = await attempts.locator('td.attempt-number').allTextContents();
    assert.equal(numbers[0], '2');
  });

  step('lists the dead letters', async () => {
    const letters = ctx.page.locator('#dead-letters tr.dead-letter');
    await eventually(async () => assert.equal(await letters.count(), 3,
      `page says: ${await text(ctx.page.locator('#dead-letters-note'))}`), 'three dead letters');
    const ids = [];
    for (let i = 0; i < 3; i += 1) {
      const letter = letters.nth(i);
      ids.push(await letter.getAttribute('data-event-id'));
      assert.equal(await text(letter.locator('td.attempts')), '2');
      assert.equal(await text(letter.locator('td.status')), '503');
      assert.notEqual(await text(letter.locator('td.reason')), '');
    }
    assert.deepEqual(ids.sort(), EVENTS);
    assert.equal(await ctx.page.locator('#replay').isEnabled(), true);
  });

  step('saves a screenshot', async () => {
    await ctx.page.screenshot({ path: SCREENSHOT, fullPage: true });
    if (DOCS_SCREENSHOT) await ctx.page.screenshot({ path: DOCS_SCREENSHOT, fullPage: true });
    assert.ok(fs.statSync(SCREENSHOT).size > 10_000);
  });

  step('replays the dead letters once the receiver has recovered', async () => {
    ctx.receiver.recovered = true;
    let question = null;
    ctx.page.once('dialog', (dialog) => {
      question = dialog.message();
      dialog.accept();
    });
    await ctx.page.click('#replay', { timeout: 10_000 });
    await eventually(async () => assert.equal(await text(ctx.page.locator('#replay-result')),
      'Replayed 3 dead letters.'), 'replay result');
    assert.match(question, /acme\/orders/);

    const delivered = await eventually(() => {
      const got = ctx.receiver.delivered('/acme/orders');
      assert.equal(got.length, 3);
      return got;
    }, 'replayed deliveries at the receiver');
    assert.deepEqual(delivered.map((d) => d.headers['webhook-id']).sort(), EVENTS);
    for (const delivery of delivered) {
      assert.ok(verifySignature(delivery), `signature of ${delivery.headers['webhook-id']}`);
      assert.equal(JSON.parse(delivery.body).order, delivery.headers['webhook-id']);
    }
    // Replayed dead letters leave the list; the counters follow.
    await eventually(async () => {
      assert.equal(await ctx.page.locator('#dead-letters tr.dead-letter').count(), 0);
      assert.equal(await text(cell('acme/orders', 'delivered')), '3');
    }, 'dead-letter list and counters after the replay');
    assert.equal(await ctx.page.isVisible('#dead-letters-note'), true);
    assert.match(await text(cell('acme/orders', 'health')), /^Healthy/);
  });

  step('raised no script errors and no Content-Security-Policy violations', () => {
    assert.deepEqual(ctx.pageErrors, []);
  });
});
