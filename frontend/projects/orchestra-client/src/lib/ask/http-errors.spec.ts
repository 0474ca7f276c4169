import { errorFromResponse, parseRetryAfter } from './http-errors';

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-12-01T10:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('30', now)).toBe(30);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
  });

  it('turns an HTTP date into the seconds left, never negative', () => {
    expect(parseRetryAfter('Tue, 01 Dec 2026 10:01:30 GMT', now)).toBe(90);
    expect(parseRetryAfter('Tue, 01 Dec 2026 09:00:00 GMT', now)).toBe(0);
  });

  it('ignores a missing or unreadable header', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
  });
});

describe('errorFromResponse', () => {
  it('keeps the gateway code and message and adds the status', async () => {
    const response = new Response(
      JSON.stringify({
        error: { code: 'invalid_token', message: 'Token revoked', request_id: 'r1' },
      }),
      { status: 401 },
    );
    expect(await errorFromResponse(response)).toEqual({
      type: 'error',
      code: 'invalid_token',
      message: 'Token revoked',
      requestId: 'r1',
      status: 401,
    });
  });

  it('uses X-Request-Id when the body has no request id', async () => {
    const response = new Response(JSON.stringify({ error: { code: 'quota_exceeded' } }), {
      status: 429,
      headers: { 'X-Request-Id': 'hdr', 'Retry-After': '7' },
    });
    expect(await errorFromResponse(response)).toEqual({
      type: 'error',
      code: 'quota_exceeded',
      message: 'quota_exceeded',
      requestId: 'hdr',
      status: 429,
      retryAfterSeconds: 7,
    });
  });

  it('derives quota_exceeded from a bare 429 and still reads Retry-After', async () => {
    const response = new Response('Too many', { status: 429, headers: { 'Retry-After': '3' } });
    expect(await errorFromResponse(response)).toMatchObject({
      code: 'quota_exceeded',
      status: 429,
      retryAfterSeconds: 3,
    });
  });
});
