import { TestBed } from '@angular/core/testing';
import type { Mock } from 'vitest';

import { OrchestraConfig, OrchestraTokenProvider, provideOrchestra } from '../config';
import { AskClient, FIRST_RESUME_DELAY_MS } from './ask-client';
import { AskProgress } from './ask-events';

const encoder = new TextEncoder();

/** A response body the test writes into, then breaks like a dropped connection. */
class FakeStream {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly body = new ReadableStream<Uint8Array>({ start: (c) => (this.controller = c) });

  push(text: string): void {
    this.controller.enqueue(encoder.encode(text));
  }
  close(): void {
    this.controller.close();
  }
  fail(): void {
    this.controller.error(new TypeError('network error'));
  }
}

function delta(id: number, text: string): string {
  return `id: ${id}\nevent: delta\ndata: ${JSON.stringify({ text })}\n\n`;
}

function done(id: number): string {
  return (
    `id: ${id}\nevent: done\ndata: {"request_id":"req-r","finish_reason":"stop","model":"m",` +
    '"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}\n\n'
  );
}

function sseResponse(stream: FakeStream | string, requestId = 'req-r'): Response {
  return new Response(typeof stream === 'string' ? stream : stream.body, {
    status: 200,
    headers: { 'Content-Type': 'text/event-stream', 'X-Request-Id': requestId },
  });
}

function refused(status: number, code: string): Response {
  return Response.json({ error: { code, message: `msg ${code}` } }, { status });
}

/** One macrotask, through a channel that fake timers leave alone (unlike `vi.waitFor`, which advances them). */
function tick(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) {
    await tick();
  }
  expect(condition()).toBe(true);
}

interface Recording {
  readonly events: AskProgress[];
  readonly completed: () => boolean;
  readonly text: () => string;
}

describe('AskClient resume', () => {
  let fetchMock: Mock<typeof fetch>;

  function setUp(config: Partial<OrchestraConfig> = {}): AskClient {
    TestBed.configureTestingModule({
      providers: [provideOrchestra({ baseUrl: 'https://gw.example', token: 'orc_t', ...config })],
    });
    return TestBed.inject(AskClient);
  }

  function record(client: AskClient): Recording {
    const events: AskProgress[] = [];
    let completed = false;
    client.ask({ prompt: 'hello' }, { progress: true }).subscribe({
      next: (event) => events.push(event),
      complete: () => (completed = true),
    });
    return {
      events,
      completed: () => completed,
      text: () => events.map((event) => (event.type === 'delta' ? event.text : '')).join(''),
    };
  }

  const urls = (): string[] => fetchMock.mock.calls.map(([url]) => String(url));
  const headersOf = (call: number): Record<string, string> =>
    (fetchMock.mock.calls[call][1]?.headers ?? {}) as Record<string, string>;

  beforeEach(() => {
    fetchMock = vi.spyOn(globalThis, 'fetch');
  });

  afterEach(() => {
    fetchMock.mockRestore();
    vi.useRealTimers();
  });

  it('resumes after the last event id it saw, with no duplicate and no gap', async () => {
    const first = new FakeStream();
    const second = new FakeStream();
    fetchMock.mockResolvedValueOnce(sseResponse(first)).mockResolvedValueOnce(sseResponse(second));
    const run = record(setUp());

    first.push(delta(1, 'One ') + delta(2, 'two '));
    await vi.waitFor(() => expect(run.text()).toBe('One two '));
    first.fail();
    await vi.waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(2));

    expect(urls()[1]).toBe('https://gw.example/ask/req-r/events?after=2');
    expect(fetchMock.mock.calls[1][1]?.method).toBe('GET');
    expect(headersOf(1)).toMatchObject({ Authorization: 'Bearer orc_t' });
    // The gateway may replay from earlier than asked: what the client has is skipped.
    second.push(delta(2, 'two ') + delta(3, 'three ') + delta(4, 'four.') + done(5));
    await vi.waitFor(() => expect(run.completed()).toBe(true));

    expect(run.text()).toBe('One two three four.');
    expect(run.events.map((event) => event.type)).toEqual([
      'connected',
      'delta',
      'delta',
      'reconnecting',
      'connected',
      'delta',
      'delta',
      'done',
    ]);
    expect(run.events[3]).toEqual({
      type: 'reconnecting',
      requestId: 'req-r',
      attempt: 1,
      delayMs: FIRST_RESUME_DELAY_MS,
    });
    expect(run.events[4]).toEqual({ type: 'connected', requestId: 'req-r', resumed: true });
    expect(run.events.filter((event) => event.type === 'delta').map((e) => e.eventId)).toEqual([
      1, 2, 3, 4,
    ]);
  });

  it('resumes a stream that ended without done or error', async () => {
    fetchMock
      .mockResolvedValueOnce(sseResponse(delta(1, 'Half ')))
      .mockResolvedValueOnce(sseResponse(delta(2, 'whole.') + done(3)));
    const run = record(setUp());

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(urls()[1]).toBe('https://gw.example/ask/req-r/events?after=1');
    expect(run.text()).toBe('Half whole.');
    expect(run.events.at(-1)).toMatchObject({ type: 'done' });
  });

  it('backs off 0.5 s, 1 s, 2 s… and fails after maxResumeAttempts (default 5)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    fetchMock
      .mockResolvedValueOnce(sseResponse(delta(1, 'Only this')))
      .mockRejectedValue(new TypeError('Failed to fetch'));
    const run = record(setUp());

    await until(() => run.events.at(-1)?.type === 'reconnecting');
    expect(run.text()).toBe('Only this');
    // Not a millisecond before each delay has passed.
    for (const delayMs of [500, 1000, 2000, 4000, 8000]) {
      const calls = fetchMock.mock.calls.length;
      await vi.advanceTimersByTimeAsync(delayMs - 1);
      await tick();
      expect(fetchMock).toHaveBeenCalledTimes(calls);
      await vi.advanceTimersByTimeAsync(1);
      await until(() => fetchMock.mock.calls.length === calls + 1);
      await until(() => run.completed() || run.events.at(-1)?.type === 'reconnecting');
    }
    await until(run.completed);

    const reconnects = run.events.filter((event) => event.type === 'reconnecting');
    expect(reconnects.map((event) => [event.attempt, event.delayMs])).toEqual([
      [1, 500],
      [2, 1000],
      [3, 2000],
      [4, 4000],
      [5, 8000],
    ]);
    expect(urls().slice(1)).toEqual(Array(5).fill('https://gw.example/ask/req-r/events?after=1'));
    expect(run.events.at(-1)).toMatchObject({
      type: 'error',
      code: 'stream_interrupted',
      requestId: 'req-r',
    });
    expect(run.text()).toBe('Only this');
  });

  it('honours maxResumeAttempts from the config (0: never resumes)', async () => {
    fetchMock.mockResolvedValueOnce(sseResponse(delta(1, 'Cut')));
    const run = record(setUp({ maxResumeAttempts: 0 }));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(fetchMock).toHaveBeenCalledTimes(1);
    expect(run.events.map((event) => event.type)).toEqual(['connected', 'delta', 'error']);
  });

  it('stops at a refusal: an answer the gateway no longer keeps is an error, not another attempt', async () => {
    fetchMock
      .mockResolvedValueOnce(sseResponse(delta(1, 'Cut')))
      .mockResolvedValueOnce(refused(410, 'stream_expired'));
    const run = record(setUp());

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(fetchMock).toHaveBeenCalledTimes(2);
    expect(run.events.at(-1)).toMatchObject({
      type: 'error',
      code: 'stream_expired',
      status: 410,
    });
  });

  it('counts attempts again once a resumed connection delivered events', async () => {
    fetchMock
      .mockResolvedValueOnce(sseResponse(delta(1, 'a')))
      .mockResolvedValueOnce(sseResponse(delta(2, 'b')))
      .mockResolvedValueOnce(sseResponse(delta(3, 'c') + done(4)));
    const run = record(setUp({ maxResumeAttempts: 1 }));

    await vi.waitFor(() => expect(run.completed()).toBe(true), { timeout: 5_000 });
    expect(run.text()).toBe('abc');
    expect(urls().slice(1)).toEqual([
      'https://gw.example/ask/req-r/events?after=1',
      'https://gw.example/ask/req-r/events?after=2',
    ]);
  });

  it('resumes with a refreshed session token when the one it had expired', async () => {
    let minted = 0;
    const invalidated: (string | undefined)[] = [];
    const provider: OrchestraTokenProvider = {
      getToken: async () => `s${minted === 0 ? ++minted : minted}`,
      invalidate: (token) => {
        invalidated.push(token);
        minted++;
      },
    };
    fetchMock
      .mockResolvedValueOnce(sseResponse(delta(1, 'Hel')))
      .mockResolvedValueOnce(refused(401, 'token_expired'))
      .mockResolvedValueOnce(sseResponse(delta(2, 'lo') + done(3)));
    const run = record(setUp({ token: provider }));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.text()).toBe('Hello');
    expect(invalidated).toEqual(['s1']);
    expect(headersOf(1)).toMatchObject({ Authorization: 'Bearer s1' });
    expect(headersOf(2)).toMatchObject({ Authorization: 'Bearer s2' });
    expect(urls()[2]).toBe('https://gw.example/ask/req-r/events?after=1');
  });

  it('follow() replays a running answer from its first event', async () => {
    fetchMock.mockResolvedValueOnce(sseResponse(delta(1, 'x') + delta(2, 'y') + done(3), ''));
    const events: AskProgress[] = [];
    setUp()
      .follow('req/7')
      .subscribe((event) => events.push(event));

    await vi.waitFor(() => expect(events.at(-1)?.type).toBe('done'));
    expect(urls()).toEqual(['https://gw.example/ask/req%2F7/events?after=0']);
    expect(events[0]).toEqual({ type: 'connected', requestId: 'req/7', resumed: false });
  });

  it('cancel() posts to /ask/{id}/cancel with the token', async () => {
    fetchMock.mockResolvedValueOnce(Response.json({ request_id: 'req-r' }, { status: 202 }));
    await setUp().cancel('req-r');

    expect(urls()).toEqual(['https://gw.example/ask/req-r/cancel']);
    expect(fetchMock.mock.calls[0][1]?.method).toBe('POST');
    expect(headersOf(0)).toMatchObject({ Authorization: 'Bearer orc_t' });
  });

  it('without progress, ask() emits only the answer events', async () => {
    fetchMock
      .mockResolvedValueOnce(sseResponse(delta(1, 'a')))
      .mockResolvedValueOnce(sseResponse(delta(2, 'b') + done(3)));
    const types: string[] = [];
    setUp()
      .ask({ prompt: 'q' })
      .subscribe((event) => types.push(event.type));

    await vi.waitFor(() => expect(types.at(-1)).toBe('done'), { timeout: 5_000 });
    expect(types).toEqual(['delta', 'delta', 'done']);
  });
});
