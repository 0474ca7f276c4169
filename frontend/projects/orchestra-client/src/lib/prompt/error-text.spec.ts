import { describeAskError } from './error-text';

describe('describeAskError', () => {
  it('says what happened for a known code', () => {
    expect(describeAskError({ type: 'error', code: 'origin_not_allowed', message: 'x' })).toBe(
      'This page’s origin is not allowed to use the gateway.',
    );
  });

  it('adds the retry time, in the singular or plural', () => {
    const quota = { type: 'error', code: 'quota_exceeded', message: 'x' } as const;
    expect(describeAskError({ ...quota, retryAfterSeconds: 1 })).toBe(
      'Quota exceeded. Try again in 1 second.',
    );
    expect(describeAskError({ ...quota, retryAfterSeconds: 0 })).toBe(
      'Quota exceeded. Try again in 0 seconds.',
    );
  });

  it('says a session expired', () => {
    expect(describeAskError({ type: 'error', code: 'token_expired', message: 'x' })).toBe(
      'Not authorized: the session has expired.',
    );
  });

  it('says why no token could be had (the client writes that message itself)', () => {
    expect(
      describeAskError({
        type: 'error',
        code: 'token_unavailable',
        message: 'The session endpoint /s answered HTTP 401.',
      }),
    ).toBe('Could not obtain an access token. The session endpoint /s answered HTTP 401.');
  });

  it("falls back to the gateway's message for a code it does not know", () => {
    expect(
      describeAskError({ type: 'error', code: 'brand_new_code', message: 'Something new.' }),
    ).toBe('Something new.');
  });
});
