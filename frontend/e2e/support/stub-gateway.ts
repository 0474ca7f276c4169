/**
 * A dependency-free stand-in for the Orchestra gateway, for UI work without the Python side
 * (`ORC_E2E_GATEWAY=stub npm run e2e`, or `node e2e/support/stub-gateway.ts --port 8000 --ui DIR`).
 * It speaks the `/ask` contract (SSE `delta`/`done`/`error`, `: ping`, JSON errors, `Retry-After`),
 * `GET /logs`, serves DIR at `/` (and the demo's `POST /api/orchestra/session`, simplified), and follows the fake's directives `[xss]`, `[tokens:N]`, `[fail:N]`,
 * `[hang]`. Test-only admin routes under `/__stub/` replace the CLI. Never used by CI.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { parseArgs } from 'node:util';

interface App {
  readonly name: string;
  rpm: number;
  readonly requests: number[];
  readonly logs: { request_id: string; outcome: string; http_status: number }[];
}

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8000' },
    ui: { type: 'string' },
    'token-ms': { type: 'string', default: '40' },
  },
});
const tokenMs = Number(values['token-ms']);
const apps = new Map<string, App>();
const tokens = new Map<string, { app: App; id: string; revoked: boolean }>();
const WORDS = [
  'the',
  'quick',
  'brown',
  'fox',
  'jumps',
  'over',
  'lazy',
  'dog',
  'orchestra',
  'gateway',
  'stream',
];
const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.ico': 'image/x-icon',
};

function addApp(name: string): string {
  const app: App = { name, rpm: 0, requests: [], logs: [] };
  apps.set(name, app);
  return issue(app).token;
}

function issue(app: App): { id: string; token: string } {
  const issued = {
    id: `tok_${randomUUID().slice(0, 8)}`,
    token: `orc_${randomUUID().replaceAll('-', '')}`,
  };
  tokens.set(issued.token, { app, id: issued.id, revoked: false });
  return issued;
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res
    .writeHead(status, { 'Content-Type': 'application/json', ...headers })
    .end(JSON.stringify(body));
}

function fail(
  res: ServerResponse,
  status: number,
  code: string,
  requestId: string,
  headers: Record<string, string> = {},
): void {
  json(
    res,
    status,
    { error: { code, message: code.replaceAll('_', ' '), request_id: requestId } },
    { 'X-Request-Id': requestId, ...headers },
  );
}

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
  } catch {
    return {};
  }
}

function authenticate(
  req: IncomingMessage,
): { app: App; id: string; revoked: boolean } | undefined {
  const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
  const found = tokens.get(token);
  return found && !found.revoked ? found : undefined;
}

async function ask(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = `req_${randomUUID().slice(0, 12)}`;
  const auth = authenticate(req);
  const { prompt = '' } = (await body(req)) as { prompt?: string };
  if (!auth) return fail(res, 401, 'invalid_token', requestId);
  const { app } = auth;
  const now = Date.now();
  const recent = app.requests.filter((at) => now - at < 60_000);
  if (app.rpm > 0 && recent.length >= app.rpm) {
    const retryAfter = Math.ceil((recent[0] + 60_000 - now) / 1000);
    return fail(res, 429, 'quota_exceeded', requestId, { 'Retry-After': String(retryAfter) });
  }
  app.requests.push(now);
  const failStatus = /\[fail:(\d+)\]/.exec(prompt)?.[1];
  if (failStatus) return fail(res, 502, 'upstream_error', requestId);
  const count = Number(/\[tokens:(\d+)\]/.exec(prompt)?.[1] ?? 20);
  const chunks = prompt.includes('[xss]')
    ? ['<img ', 'src=x ', 'onerror=', 'alert(1)>']
    : Array.from({ length: count }, (_, i) => `${WORDS[i % WORDS.length]} `);
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    'X-Request-Id': requestId,
  });
  const log = (outcome: string, status: number): void =>
    void app.logs.push({ request_id: requestId, outcome, http_status: status });
  let closed = false;
  res.on('close', () => {
    if (!res.writableFinished) {
      closed = true;
      log('client_disconnected', 499);
    }
  });
  if (prompt.includes('[hang]')) {
    const ping = setInterval(() => (closed ? clearInterval(ping) : res.write(': ping\n\n')), 1000);
    return;
  }
  for (const text of chunks) {
    await new Promise((resolve) => setTimeout(resolve, tokenMs));
    if (closed) return;
    res.write(`event: delta\ndata: ${JSON.stringify({ text })}\n\n`);
  }
  const usage = {
    prompt_tokens: 9,
    completion_tokens: chunks.length,
    total_tokens: 9 + chunks.length,
  };
  res.end(
    `event: done\ndata: ${JSON.stringify({ request_id: requestId, finish_reason: 'stop', model: 'gpt-4o-mini', usage })}\n\n`,
  );
  log('ok', 200);
}

async function admin(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const input = (await body(req)) as { app?: string; id?: string; rpm?: number };
  if (path === '/__stub/apps') return json(res, 200, { token: addApp(input.app ?? 'app') });
  const app = apps.get(input.app ?? '');
  if (path === '/__stub/tokens' && app) return json(res, 200, issue(app));
  if (path === '/__stub/quota' && app) return json(res, 200, { rpm: (app.rpm = input.rpm ?? 0) });
  if (path === '/__stub/revoke') {
    const entry = [...tokens.values()].find((candidate) => candidate.id === input.id);
    if (entry) return json(res, 200, { id: input.id, revoked: (entry.revoked = true) });
  }
  json(res, 404, { error: { code: 'not_found', message: path } });
}

async function staticFile(path: string, res: ServerResponse): Promise<void> {
  const file = normalize(join(values.ui ?? '.', path === '/' ? 'index.html' : path));
  try {
    res
      .writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' })
      .end(await readFile(file));
  } catch {
    json(res, 404, { error: { code: 'not_found', message: path } });
  }
}

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://stub').pathname;
  const handle = async (): Promise<void> => {
    if (req.method === 'POST' && path === '/ask') return ask(req, res);
    if (req.method === 'POST' && path.startsWith('/__stub/')) return admin(path, req, res);
    if (req.method === 'POST' && path === '/api/orchestra/session') {
      // The demo backend's mint endpoint, simplified: a token of the first app, for 15 minutes.
      const app = apps.values().next().value;
      if (!app) return fail(res, 503, 'session_unavailable', 'req_session');
      const expiresAt = new Date(Date.now() + 15 * 60_000).toISOString();
      return json(res, 200, { token: issue(app).token, expires_at: expiresAt });
    }
    if (req.method === 'GET' && path === '/logs') {
      const auth = authenticate(req);
      return auth
        ? json(res, 200, { records: auth.app.logs, next_cursor: null })
        : fail(res, 401, 'invalid_token', 'req_logs');
    }
    if (req.method === 'GET' && !path.includes('..')) return staticFile(path, res);
    json(res, 405, { error: { code: 'invalid_request', message: 'method not allowed' } });
  };
  handle().catch((error: unknown) => res.destroy(error as Error));
});

server.listen(Number(values.port), '127.0.0.1', () =>
  console.log(`stub gateway on http://127.0.0.1:${values.port}/`),
);
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
