import { TestBed } from '@angular/core/testing';
import { Subscription } from 'rxjs';
import type { Mock } from 'vitest';

import { OrchestraToken, provideOrchestra } from '../config';
import { AskClient } from './ask-client';
import { AskEvent } from './ask-events';

const encoder = new TextEncoder();

/** A response body the test writes into chunk by chunk, like a slow network. */
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

function sseResponse(stream: FakeStream, requestId = 'req-h'): Response {
  return new Response(stream.body, {
    status: 200,
    headers: { 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Request-Id': requestId },
  });
}

function jsonResponse(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

interface Recording {
  readonly events: AskEvent[];
  readonly completed: () => boolean;
  readonly errored: () => boolean;
  readonly subscription: Subscription;
}

describe('AskClient', () => {
  let fetchMock: Mock<typeof fetch>;

  function setUp(token: OrchestraToken = 'orc_test', baseUrl = 'https://gw.example/'): AskClient {
    TestBed.configureTestingModule({ providers: [provideOrchestra({ baseUrl, token })] });
    return TestBed.inject(AskClient);
  }

  function record(client: AskClient, prompt = 'hello'): Recording {
    const events: AskEvent[] = [];
    let completed = false;
    let errored = false;
    const subscription = client.ask({ prompt }).subscribe({
      next: (event) => events.push(event),
      error: () => (errored = true),
      complete: () => (completed = true),
    });
    return { events, completed: () => completed, errored: () => errored, subscription };
  }

  function requestInit(): RequestInit {
    expect(fetchMock).toHaveBeenCalledTimes(1);
    return fetchMock.mock.calls[0][1] ?? {};
  }

  beforeEach(() => {
    fetchMock = vi.spyOn(globalThis, 'fetch');
  });

  afterEach(() => {
    fetchMock.mockRestore();
  });

  it('posts the prompt to {baseUrl}/ask with the bearer token', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const client = setUp();
    client
      .ask({ prompt: 'hi', model: 'gpt-x', maxTokens: 5, temperature: 0, conversationId: 'c1' })
      .subscribe();

    await vi.waitFor(() => expect(fetchMock).toHaveBeenCalled());
    expect(fetchMock.mock.calls[0][0]).toBe('https://gw.example/ask');
    const init = requestInit();
    expect(init.method).toBe('POST');
    expect(init.headers).toMatchObject({
      Authorization: 'Bearer orc_test',
      'Content-Type': 'application/json',
    });
    expect(JSON.parse(init.body as string)).toEqual({
      prompt: 'hi',
      model: 'gpt-x',
      max_tokens: 5,
      temperature: 0,
      conversation_id: 'c1',
    });
    expect(init.signal).toBeInstanceOf(AbortSignal);
  });

  it('sends a conversation as messages', async () => {
    fetchMock.mockResolvedValue(sseResponse(new FakeStream()));
    const client = setUp();
    client.ask({ messages: [{ role: 'user', content: 'yo' }] }).subscribe();

    await vi.waitFor(() => expect(fetchMock).toHaveBeenCalled());
    expect(JSON.parse(requestInit().body as string)).toEqual({
      messages: [{ role: 'user', content: 'yo' }],
    });
  });

  it('asks a token function for a fresh token on every request', async () => {
    fetchMock.mockImplementation(async () => sseResponse(new FakeStream()));
    let minted = 0;
    const client = setUp(async () => `orc_minted_${++minted}`);
    client.ask({ prompt: 'a' }).subscribe();
    client.ask({ prompt: 'b' }).subscribe();

    await vi.waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(2));
    const tokens = fetchMock.mock.calls.map(
      ([, init]) => (init?.headers as Record<string, string>)['Authorization'],
    );
    expect(tokens.sort()).toEqual(['Bearer orc_minted_1', 'Bearer orc_minted_2']);
  });

  it('emits each delta as soon as its chunk arrives, then done with the usage', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const run = record(setUp());

    stream.push(': ping\n\nevent: delta\ndata: {"text":"Hel"}\n\nevent: del');
    await vi.waitFor(() => expect(run.events).toEqual([{ type: 'delta', text: 'Hel' }]));
    stream.push('ta\ndata: {"text":"lo"}\n\n');
    await vi.waitFor(() => expect(run.events).toHaveLength(2));
    expect(run.completed()).toBe(false);

    stream.push(
      'event: done\ndata: {"request_id":"req-1","finish_reason":"stop","model":"gpt-4o-mini",' +
        '"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n',
    );
    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      { type: 'delta', text: 'Hel' },
      { type: 'delta', text: 'lo' },
      {
        type: 'done',
        requestId: 'req-1',
        finishReason: 'stop',
        model: 'gpt-4o-mini',
        usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 },
      },
    ]);
    expect(run.errored()).toBe(false);
  });

  it('accepts a done event without a trailing blank line at the end of the stream', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const run = record(setUp());

    stream.push(
      'event: delta\r\ndata: {"text":"x"}\r\n\r\nevent: done\r\ndata: {"request_id":"r"}',
    );
    stream.close();
    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events.map((event) => event.type)).toEqual(['delta', 'done']);
  });

  it('ends with the error event the gateway sends mid-stream', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const run = record(setUp());

    stream.push('event: delta\ndata: {"text":"partial"}\n\n');
    stream.push(
      'event: error\ndata: {"code":"upstream_timeout","message":"Upstream timed out","request_id":"req-9"}\n\n',
    );
    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      { type: 'delta', text: 'partial' },
      {
        type: 'error',
        code: 'upstream_timeout',
        message: 'Upstream timed out',
        requestId: 'req-9',
      },
    ]);
    expect(run.errored()).toBe(false);
  });

  it('reports a stream that ends without done or error as interrupted', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream, 'req-h7'));
    const run = record(setUp());

    stream.push('event: delta\ndata: {"text":"half"}\n\n');
    stream.close();
    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events.at(-1)).toMatchObject({
      type: 'error',
      code: 'stream_interrupted',
      requestId: 'req-h7',
    });
  });

  it('reports a connection lost mid-stream as a network error', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const run = record(setUp());

    stream.push('event: delta\ndata: {"text":"half"}\n\n');
    await vi.waitFor(() => expect(run.events).toHaveLength(1));
    stream.fail();
    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events.at(-1)).toMatchObject({ type: 'error', code: 'network_error' });
  });

  it('reports a malformed delta as a bad response', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const run = record(setUp());

    stream.push('event: delta\ndata: {"text": not json\n\n');
    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      expect.objectContaining({ type: 'error', code: 'bad_response', requestId: 'req-h' }),
    ]);
  });

  it('reports a 200 that is not an event stream as a bad response', async () => {
    fetchMock.mockResolvedValue(jsonResponse(200, { text: 'hi' }));
    const run = record(setUp());

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([expect.objectContaining({ type: 'error', code: 'bad_response' })]);
  });

  it.each([
    [401, 'invalid_token'],
    [403, 'app_disabled'],
    [403, 'origin_not_allowed'],
    [413, 'request_too_large'],
    [422, 'invalid_request'],
    [502, 'upstream_auth_failed'],
    [503, 'upstream_unavailable'],
  ])('maps HTTP %i with code %s to an error event', async (status, code) => {
    fetchMock.mockResolvedValue(
      jsonResponse(status, { error: { code, message: `msg ${code}`, request_id: 'req-e' } }),
    );
    const run = record(setUp());

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      { type: 'error', code, message: `msg ${code}`, requestId: 'req-e', status },
    ]);
  });

  it('gives quota_exceeded its retry time from Retry-After', async () => {
    fetchMock.mockResolvedValue(
      jsonResponse(
        429,
        { error: { code: 'quota_exceeded', message: 'Quota exceeded', request_id: 'req-q' } },
        { 'Retry-After': '42' },
      ),
    );
    const run = record(setUp());

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      {
        type: 'error',
        code: 'quota_exceeded',
        message: 'Quota exceeded',
        requestId: 'req-q',
        status: 429,
        retryAfterSeconds: 42,
      },
    ]);
  });

  it('falls back to a code from the status when the body is not a gateway error', async () => {
    fetchMock.mockResolvedValueOnce(
      new Response('<html>Bad gateway</html>', {
        status: 504,
        headers: { 'X-Request-Id': 'req-p' },
      }),
    );
    fetchMock.mockResolvedValueOnce(new Response('', { status: 418 }));
    const client = setUp();
    const timeout = record(client);
    const teapot = record(client);

    await vi.waitFor(() => expect(teapot.completed() && timeout.completed()).toBe(true));
    expect(timeout.events).toEqual([
      expect.objectContaining({ code: 'upstream_timeout', status: 504, requestId: 'req-p' }),
    ]);
    expect(teapot.events).toEqual([expect.objectContaining({ code: 'http_error', status: 418 })]);
  });

  it('reports a request that cannot be sent as a network error', async () => {
    fetchMock.mockRejectedValue(new TypeError('Failed to fetch'));
    const run = record(setUp());

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([expect.objectContaining({ type: 'error', code: 'network_error' })]);
  });

  it('reports a failing token function without calling the gateway', async () => {
    const run = record(setUp(() => Promise.reject(new Error('backend down'))));

    await vi.waitFor(() => expect(run.completed()).toBe(true));
    expect(run.events).toEqual([
      expect.objectContaining({ type: 'error', code: 'token_unavailable' }),
    ]);
    expect(fetchMock).not.toHaveBeenCalled();
  });

  it('aborts the request when the subscriber unsubscribes mid-stream', async () => {
    const stream = new FakeStream();
    fetchMock.mockResolvedValue(sseResponse(stream));
    const run = record(setUp());

    stream.push('event: delta\ndata: {"text":"one"}\n\n');
    await vi.waitFor(() => expect(run.events).toHaveLength(1));
    const signal = requestInit().signal!;
    expect(signal.aborted).toBe(false);

    run.subscription.unsubscribe();
    expect(signal.aborted).toBe(true);
    stream.push('event: delta\ndata: {"text":"two"}\n\n');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(run.events).toHaveLength(1);
    expect(run.completed()).toBe(false);
  });

  it('never calls fetch when unsubscribed before the token resolves', async () => {
    let release!: (token: string) => void;
    const run = record(setUp(() => new Promise<string>((resolve) => (release = resolve))));

    run.subscription.unsubscribe();
    release('orc_late');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fetchMock).not.toHaveBeenCalled();
    expect(run.events).toEqual([]);
  });
});
