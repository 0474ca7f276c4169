import { TestBed } from '@angular/core/testing';
import { Subscription } from 'rxjs';
import type { Mock } from 'vitest';

import { sessionToken } from '../auth/session-token';
import { OrchestraToken, provideOrchestra } from '../config';
import { AskClient } from './ask-client';
import { AskEvent } from './ask-events';

const DONE_STREAM =
  'event: delta\ndata: {"text":"Hi"}\n\n' +
  'event: done\ndata: {"request_id":"req-ok","finish_reason":"stop","model":"m",' +
  '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n';

function sse(text: string): Response {
  return new Response(text, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}

function refused(status: number, code: string): Response {
  return new Response(
    JSON.stringify({ error: { code, message: `msg ${code}`, request_id: `req-${code}` } }),
    { status, headers: { 'Content-Type': 'application/json' } },
  );
}

/** The app's backend: mints `s1`, `s2`, … valid for 15 minutes. */
function mintEndpoint(): Mock<typeof fetch> {
  let minted = 0;
  return vi.fn<typeof fetch>(async () =>
    Response.json(
      { token: `s${++minted}`, expires_at: new Date(Date.now() + 900_000).toISOString() },
      { status: 201 },
    ),
  );
}

interface Recording {
  readonly events: AskEvent[];
  readonly completed: () => boolean;
  readonly subscription: Subscription;
}

describe('AskClient token refresh', () => {
  let gateway: Mock<typeof fetch>;

  function setUp(token: OrchestraToken): AskClient {
    TestBed.configureTestingModule({
      providers: [provideOrchestra({ baseUrl: 'https://gw.example', token })],
    });
    return TestBed.inject(AskClient);
  }

  function record(client: AskClient): Recording {
    const events: AskEvent[] = [];
    let completed = false;
    const subscription = client.ask({ prompt: 'hello' }).subscribe({
      next: (event) => events.push(event),
      complete: () => (completed = true),
    });
    return { events, completed: () => completed, subscription };
  }

  /** The bearer tokens the gateway received, in order. */
  function bearers(): string[] {
    return gateway.mock.calls.map(
      ([, init]) => (init?.headers as Record<string, string>)['Authorization'],
    );
  }

  beforeEach(() => {
    gateway = vi.spyOn(globalThis, 'fetch');
  });

  afterEach(() => {
    gateway.mockRestore();
  });

  it('refreshes an expired session token once and retries the request', async () => {
    const mint = mintEndpoint();
    gateway
      .mockResolvedValueOnce(refused(401, 'token_expired'))
      .mockResolvedValueOnce(sse(DONE_STREAM));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events.map((event) => event.type)).toEqual(['delta', 'done']);
    expect(bearers()).toEqual(['Bearer s1', 'Bearer s2']);
    expect(mint).toHaveBeenCalledTimes(2);
    expect(JSON.parse(gateway.mock.calls[1][1]!.body as string)).toEqual({ prompt: 'hello' });
  });

  it('keeps using the refreshed token for the next requests', async () => {
    const mint = mintEndpoint();
    gateway
      .mockResolvedValueOnce(refused(401, 'token_expired'))
      .mockImplementation(async () => sse(DONE_STREAM));
    const client = setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint }));
    const first = record(client);
    await vi.waitFor(() => expect(first.completed()).toBe(true));
    const second = record(client);
    await vi.waitFor(() => expect(second.completed()).toBe(true));

    expect(bearers()).toEqual(['Bearer s1', 'Bearer s2', 'Bearer s2']);
    expect(mint).toHaveBeenCalledTimes(2);
  });

  it('surfaces a second token_expired as the error, after exactly one refresh', async () => {
    const mint = mintEndpoint();
    gateway.mockImplementation(async () => refused(401, 'token_expired'));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      {
        type: 'error',
        code: 'token_expired',
        message: 'msg token_expired',
        requestId: 'req-token_expired',
        status: 401,
      },
    ]);
    expect(bearers()).toEqual(['Bearer s1', 'Bearer s2']);
    expect(mint).toHaveBeenCalledTimes(2);
  });

  it.each<[number, string]>([
    [401, 'invalid_token'],
    [403, 'insufficient_scope'],
    [429, 'quota_exceeded'],
  ])('does not retry HTTP %i %s', async (status, code) => {
    const mint = mintEndpoint();
    gateway.mockResolvedValue(refused(status, code));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([expect.objectContaining({ code, status })]);
    expect(gateway).toHaveBeenCalledTimes(1);
    expect(mint).toHaveBeenCalledTimes(1);
  });

  it('does not retry a 401 without a gateway error body (e.g. from a proxy)', async () => {
    const mint = mintEndpoint();
    gateway.mockResolvedValue(new Response('Unauthorized', { status: 401 }));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([expect.objectContaining({ code: 'invalid_token', status: 401 })]);
    expect(gateway).toHaveBeenCalledTimes(1);
  });

  it('refreshes once for concurrent requests that all hit token_expired', async () => {
    const mint = mintEndpoint();
    gateway.mockImplementation(async (_url, init) =>
      (init?.headers as Record<string, string>)['Authorization'] === 'Bearer s1'
        ? refused(401, 'token_expired')
        : sse(DONE_STREAM),
    );
    const client = setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint }));
    const runs = [record(client), record(client), record(client)];

    await vi.waitFor(() => expect(runs.every((run) => run.completed())).toBe(true));
    for (const run of runs) {
      expect(run.events.at(-1)).toMatchObject({ type: 'done' });
    }
    expect(mint).toHaveBeenCalledTimes(2);
    expect(bearers().sort()).toEqual([
      'Bearer s1',
      'Bearer s1',
      'Bearer s1',
      'Bearer s2',
      'Bearer s2',
      'Bearer s2',
    ]);
  });

  it('keeps a plain string token as it is: token_expired is not retried', async () => {
    gateway.mockResolvedValue(refused(401, 'token_expired'));
    const run = record(setUp('orc_static'));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([expect.objectContaining({ code: 'token_expired', status: 401 })]);
    expect(bearers()).toEqual(['Bearer orc_static']);
  });

  it('keeps a token function as it is: called once per request, never retried', async () => {
    gateway.mockResolvedValue(refused(401, 'token_expired'));
    const tokenFn = vi.fn(async () => 'fn_token');
    const run = record(setUp(tokenFn));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([expect.objectContaining({ code: 'token_expired' })]);
    expect(tokenFn).toHaveBeenCalledTimes(1);
    expect(gateway).toHaveBeenCalledTimes(1);
  });

  it('never sends a bearer that is not a non-empty string', async () => {
    for (const value of [undefined, '', 42]) {
      const run = record(setUp((() => value) as unknown as () => string));
      await vi.waitFor(() => expect(run.completed()).toBe(true));
      expect(run.events).toEqual([
        expect.objectContaining({ type: 'error', code: 'token_unavailable' }),
      ]);
      TestBed.resetTestingModule();
    }
    expect(gateway).not.toHaveBeenCalled();
  });

  it('reports an invalid session answer as token_unavailable without calling the gateway', async () => {
    const mint = vi.fn<typeof fetch>(async () => Response.json({ token: 's1' }));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      {
        type: 'error',
        code: 'token_unavailable',
        message:
          'The session endpoint /api/orchestra/session answered without a valid "expires_at" ' +
          '(an ISO-8601 date-time with an offset).',
      },
    ]);
    expect(gateway).not.toHaveBeenCalled();
  });

  it('reports a session endpoint error met while refreshing as token_unavailable', async () => {
    const mint = mintEndpoint();
    mint.mockResolvedValueOnce(
      Response.json({ token: 's1', expires_at: new Date(Date.now() + 900_000).toISOString() }),
    );
    mint.mockResolvedValueOnce(new Response('signed out', { status: 401 }));
    gateway.mockResolvedValue(refused(401, 'token_expired'));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      expect.objectContaining({
        code: 'token_unavailable',
        message: 'The session endpoint /api/orchestra/session answered HTTP 401.',
      }),
    ]);
    expect(gateway).toHaveBeenCalledTimes(1);
  });

  it('stops quietly when unsubscribed while the token is being refreshed', async () => {
    let mintSignal: AbortSignal | undefined;
    const mint = mintEndpoint();
    mint.mockImplementationOnce(async () =>
      Response.json({ token: 's1', expires_at: new Date(Date.now() + 900_000).toISOString() }),
    );
    mint.mockImplementationOnce(
      (_url, init) =>
        new Promise<Response>((_resolve, reject) => {
          mintSignal = init!.signal!;
          mintSignal.addEventListener('abort', () => reject(mintSignal!.reason));
        }),
    );
    gateway.mockResolvedValue(refused(401, 'token_expired'));
    const run = record(setUp(sessionToken({ url: '/api/orchestra/session', fetch: mint })));

    await vi.waitFor(() => expect(mintSignal).toBeDefined());
    run.subscription.unsubscribe();
    await vi.waitFor(() => expect(mintSignal!.aborted).toBe(true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(gateway).toHaveBeenCalledTimes(1);
    expect(run.events).toEqual([]);
    expect(run.completed()).toBe(false);
  });
});
