import type { Mock } from 'vitest';

import { SessionTokenError, sessionToken } from './session-token';

const T0 = Date.parse('2026-12-07T10:00:00Z');
const URL = '/api/orchestra/session';

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function json(status: number, body: unknown): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  });
}

/** A backend that mints `s1`, `s2`, … each valid for `ttlS` seconds from the (fake) current time. */
function minting(ttlS = 900): Mock<typeof fetch> {
  let minted = 0;
  return vi.fn<typeof fetch>(async () =>
    json(201, { token: `s${++minted}`, expires_at: iso(Date.now() + ttlS * 1000), user: 'u-1' }),
  );
}

/** A fetch whose answers the test releases one by one (an aborted call drops out of the queue). */
function pending(): {
  fetch: Mock<typeof fetch>;
  answer: (response: Response) => void;
  signal: () => AbortSignal;
} {
  const resolvers: ((response: Response) => void)[] = [];
  const fetchFn = vi.fn<typeof fetch>(
    (_input, init) =>
      new Promise<Response>((resolve, reject) => {
        resolvers.push(resolve);
        init?.signal?.addEventListener('abort', () => {
          resolvers.splice(resolvers.indexOf(resolve), 1);
          reject(init.signal!.reason);
        });
      }),
  );
  return {
    fetch: fetchFn,
    answer: (response) => resolvers.shift()!(response),
    signal: () => fetchFn.mock.calls.at(-1)![1]!.signal!,
  };
}

async function failure(promise: Promise<unknown>): Promise<SessionTokenError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(SessionTokenError);
  return error as SessionTokenError;
}

describe('sessionToken', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(T0);
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('POSTs to the endpoint with the page cookies and returns the minted token', async () => {
    const fetchFn = minting();
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    expect(await provider.getToken()).toBe('s1');
    expect(fetchFn).toHaveBeenCalledTimes(1);
    const [url, init] = fetchFn.mock.calls[0];
    expect(url).toBe(URL);
    expect(init).toMatchObject({ method: 'POST', credentials: 'same-origin', cache: 'no-store' });
    expect(new Headers(init?.headers).get('Accept')).toBe('application/json');
  });

  it('takes extra request options (headers, credentials) from init', async () => {
    const fetchFn = minting();
    const provider = sessionToken({
      url: 'https://api.example/session',
      fetch: fetchFn,
      init: { credentials: 'include', headers: { 'X-XSRF-TOKEN': 'x1' } },
    });

    await provider.getToken();
    const init = fetchFn.mock.calls[0][1]!;
    expect(init.credentials).toBe('include');
    expect(new Headers(init.headers).get('X-XSRF-TOKEN')).toBe('x1');
    expect(new Headers(init.headers).get('Accept')).toBe('application/json');
  });

  it('reuses the cached token within its lifetime', async () => {
    const fetchFn = minting(900);
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    expect(await provider.getToken()).toBe('s1');
    vi.setSystemTime(T0 + 600_000);
    expect(await provider.getToken()).toBe('s1');
    vi.setSystemTime(T0 + 869_000);
    expect(await provider.getToken()).toBe('s1');
    expect(fetchFn).toHaveBeenCalledTimes(1);
  });

  it('refreshes 30 s before expires_at by default', async () => {
    const fetchFn = minting(900);
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    await provider.getToken();
    vi.setSystemTime(T0 + 870_000);
    expect(await provider.getToken()).toBe('s2');
    expect(fetchFn).toHaveBeenCalledTimes(2);
  });

  it('refreshes refreshBeforeS before expires_at, at most half the lifetime before', async () => {
    const early = sessionToken({ url: URL, fetch: minting(900), refreshBeforeS: 300 });
    await early.getToken();
    vi.setSystemTime(T0 + 599_000);
    expect(await early.getToken()).toBe('s1');
    vi.setSystemTime(T0 + 600_000);
    expect(await early.getToken()).toBe('s2');

    vi.setSystemTime(T0);
    const short = sessionToken({ url: URL, fetch: minting(20) });
    await short.getToken();
    vi.setSystemTime(T0 + 9_000);
    expect(await short.getToken()).toBe('s1');
    vi.setSystemTime(T0 + 10_000);
    expect(await short.getToken()).toBe('s2');
  });

  it('uses a token the browser clock sees as expired once, without caching it', async () => {
    // The browser clock is an hour ahead of the backend: every session looks expired on arrival.
    let minted = 0;
    const fetchFn = vi.fn<typeof fetch>(async () =>
      json(201, { token: `s${++minted}`, expires_at: iso(Date.now() - 3_600_000 + 900_000) }),
    );
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    expect(await provider.getToken()).toBe('s1');
    expect(await provider.getToken()).toBe('s2');
    expect(fetchFn).toHaveBeenCalledTimes(2);
  });

  it('shares one mint request between concurrent callers', async () => {
    const backend = pending();
    const provider = sessionToken({ url: URL, fetch: backend.fetch });

    const calls = Array.from({ length: 5 }, () => provider.getToken());
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(1));
    backend.answer(json(201, { token: 's1', expires_at: iso(T0 + 900_000) }));

    expect(await Promise.all(calls)).toEqual(['s1', 's1', 's1', 's1', 's1']);
    expect(await provider.getToken()).toBe('s1');
    expect(backend.fetch).toHaveBeenCalledTimes(1);
  });

  it('shares a failed mint between concurrent callers, then tries again on the next call', async () => {
    const backend = pending();
    const provider = sessionToken({ url: URL, fetch: backend.fetch });

    const calls = [provider.getToken(), provider.getToken()];
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(1));
    backend.answer(json(500, { detail: 'boom' }));
    for (const call of calls) {
      expect((await failure(call)).reason).toBe('http_error');
    }

    const next = provider.getToken();
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(2));
    backend.answer(json(201, { token: 's2', expires_at: iso(T0 + 900_000) }));
    expect(await next).toBe('s2');
  });

  it.each<[string, unknown, string]>([
    ['not JSON', '<html>login</html>', 'did not answer with a JSON object'],
    ['an array', [{ token: 's1' }], 'did not answer with a JSON object'],
    ['null', 'null', 'did not answer with a JSON object'],
    ['no token', { expires_at: iso(T0 + 900_000) }, 'without a valid "token"'],
    ['an empty token', { token: '', expires_at: iso(T0 + 900_000) }, 'without a valid "token"'],
    ['a numeric token', { token: 42, expires_at: iso(T0 + 900_000) }, 'without a valid "token"'],
    ['a token with spaces', { token: 'a b', expires_at: iso(T0 + 900_000) }, 'valid "token"'],
    ['a token with a newline', { token: 'ab\r\nX: y', expires_at: iso(T0) }, 'valid "token"'],
    ['no expires_at', { token: 's1' }, 'without a valid "expires_at"'],
    ['a numeric expires_at', { token: 's1', expires_at: T0 + 900_000 }, 'valid "expires_at"'],
    ['a free-text expires_at', { token: 's1', expires_at: 'in 15 minutes' }, 'valid "expires_at"'],
    [
      'an impossible date',
      { token: 's1', expires_at: '2026-13-45T99:00:00Z' },
      'valid "expires_at"',
    ],
    ['a date without offset', { token: 's1', expires_at: '2026-12-07T10:15:00' }, '"expires_at"'],
  ])('refuses an answer with %s and does not cache anything', async (_name, body, message) => {
    const fetchFn = vi.fn<typeof fetch>(async () => json(200, body));
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    const error = await failure(provider.getToken());
    expect(error.reason).toBe('bad_response');
    expect(error.status).toBe(200);
    expect(error.message).toContain(`The session endpoint ${URL}`);
    expect(error.message).toContain(message);
    await failure(provider.getToken());
    expect(fetchFn).toHaveBeenCalledTimes(2);
  });

  it('accepts the date formats a backend writes (Python isoformat with microseconds, Z)', async () => {
    for (const expiresAt of ['2026-12-07T10:15:00.123456+00:00', '2026-12-07T11:15:00+01:00']) {
      const fetchFn = vi.fn<typeof fetch>(async () =>
        json(201, { token: 'eyJhbGc.eyJzdWIi.c2ln-_', expires_at: expiresAt }),
      );
      const provider = sessionToken({ url: URL, fetch: fetchFn });
      expect(await provider.getToken()).toBe('eyJhbGc.eyJzdWIi.c2ln-_');
      vi.setSystemTime(T0 + 869_000);
      expect(await provider.getToken()).toBe('eyJhbGc.eyJzdWIi.c2ln-_');
      expect(fetchFn).toHaveBeenCalledTimes(1);
      vi.setSystemTime(T0);
    }
  });

  it('reports an error status of the endpoint (the user is not signed in)', async () => {
    const provider = sessionToken({
      url: URL,
      fetch: async () => json(401, { detail: 'not signed in' }),
    });

    const error = await failure(provider.getToken());
    expect(error).toMatchObject({ reason: 'http_error', status: 401 });
    expect(error.message).toBe(`The session endpoint ${URL} answered HTTP 401.`);
  });

  it('reports an unreachable endpoint as a network error', async () => {
    const provider = sessionToken({
      url: URL,
      fetch: () => Promise.reject(new TypeError('Failed to fetch')),
    });

    expect((await failure(provider.getToken())).reason).toBe('network_error');
  });

  it('gives up on an endpoint that does not answer within timeoutS', async () => {
    const backend = pending();
    const provider = sessionToken({ url: URL, fetch: backend.fetch, timeoutS: 0.05 });

    const error = await failure(provider.getToken());
    expect(error.reason).toBe('timeout');
    expect(backend.signal().aborted).toBe(true);
  });

  it('invalidate(token) drops that token only; invalidate() drops any', async () => {
    const fetchFn = minting();
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    expect(await provider.getToken()).toBe('s1');
    provider.invalidate('s0');
    expect(await provider.getToken()).toBe('s1');
    provider.invalidate('s1');
    expect(await provider.getToken()).toBe('s2');
    provider.invalidate();
    expect(await provider.getToken()).toBe('s3');
    expect(fetchFn).toHaveBeenCalledTimes(3);
  });

  it('does not cache a mint that was in flight when invalidate() was called', async () => {
    const backend = pending();
    const provider = sessionToken({ url: URL, fetch: backend.fetch });

    const first = provider.getToken();
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(1));
    provider.invalidate();
    backend.answer(json(201, { token: 's1', expires_at: iso(T0 + 900_000) }));
    expect(await first).toBe('s1');

    const second = provider.getToken();
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(2));
    backend.answer(json(201, { token: 's2', expires_at: iso(T0 + 900_000) }));
    expect(await second).toBe('s2');
  });

  it('rejects an already aborted caller without minting', async () => {
    const fetchFn = minting();
    const provider = sessionToken({ url: URL, fetch: fetchFn });

    const reason = await provider.getToken(AbortSignal.abort()).catch((error: unknown) => error);
    expect(reason).toMatchObject({ name: 'AbortError' });
    expect(fetchFn).not.toHaveBeenCalled();
  });

  it('lets one caller abort while another still gets the shared mint', async () => {
    const backend = pending();
    const provider = sessionToken({ url: URL, fetch: backend.fetch });
    const leaving = new AbortController();

    const aborted = provider.getToken(leaving.signal).catch((error: unknown) => error);
    const staying = provider.getToken();
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(1));
    leaving.abort();

    expect(await aborted).toMatchObject({ name: 'AbortError' });
    expect(backend.signal().aborted).toBe(false);
    backend.answer(json(201, { token: 's1', expires_at: iso(T0 + 900_000) }));
    expect(await staying).toBe('s1');
  });

  it('stops the mint when its only caller aborts, and mints afresh on the next call', async () => {
    const backend = pending();
    const provider = sessionToken({ url: URL, fetch: backend.fetch });
    const leaving = new AbortController();

    const aborted = provider.getToken(leaving.signal).catch((error: unknown) => error);
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(1));
    leaving.abort();
    expect(await aborted).toMatchObject({ name: 'AbortError' });
    expect(backend.signal().aborted).toBe(true);

    const next = provider.getToken();
    await vi.waitFor(() => expect(backend.fetch).toHaveBeenCalledTimes(2));
    backend.answer(json(201, { token: 's2', expires_at: iso(T0 + 900_000) }));
    expect(await next).toBe('s2');
  });
});
