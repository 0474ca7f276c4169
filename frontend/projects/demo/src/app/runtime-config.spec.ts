import { loadRuntimeConfig } from './runtime-config';

function serving(body: string, status = 200): typeof fetch {
  return async () => new Response(body, { status });
}

const SESSION_URL = '/api/orchestra/session';

describe('loadRuntimeConfig', () => {
  it('reads baseUrl and sessionUrl', async () => {
    const config = await loadRuntimeConfig(
      'config.json',
      serving(`{"baseUrl": "http://127.0.0.1:8001", "sessionUrl": "${SESSION_URL}"}`),
    );
    expect(config).toEqual({ baseUrl: 'http://127.0.0.1:8001', sessionUrl: SESSION_URL });
  });

  it('defaults baseUrl to the page origin', async () => {
    expect(
      await loadRuntimeConfig('config.json', serving(`{"sessionUrl": "${SESSION_URL}"}`)),
    ).toEqual({ baseUrl: '', sessionUrl: SESSION_URL });
  });

  it('reads an optional notice', async () => {
    const config = await loadRuntimeConfig(
      'config.json',
      serving(`{"sessionUrl": "${SESSION_URL}", "notice": "Demo model: made-up words."}`),
    );
    expect(config).toEqual({
      baseUrl: '',
      sessionUrl: SESSION_URL,
      notice: 'Demo model: made-up words.',
    });
  });

  it('asks for the file without the HTTP cache', async () => {
    const fetchFn = vi.fn<typeof fetch>(serving(`{"sessionUrl": "${SESSION_URL}"}`));
    await loadRuntimeConfig('cfg.json', fetchFn);
    expect(fetchFn).toHaveBeenCalledWith('cfg.json', { cache: 'no-store' });
  });

  it('refuses a config.json that carries a token: app tokens stay on the server', async () => {
    await expect(
      loadRuntimeConfig(
        'config.json',
        serving(`{"sessionUrl": "${SESSION_URL}", "token": "orc_abc"}`),
      ),
    ).rejects.toThrow('config.json: "token" is not allowed');
  });

  const missingSessionUrl =
    'config.json: "sessionUrl" must be a non-empty string (the app backend\'s session endpoint).';
  it.each([
    ['', 404, 'Could not load config.json (HTTP 404).'],
    ['not json', 200, 'config.json is not valid JSON.'],
    ['[1]', 200, 'config.json must be a JSON object.'],
    ['null', 200, 'config.json must be a JSON object.'],
    ['{}', 200, missingSessionUrl],
    ['{"sessionUrl": ""}', 200, missingSessionUrl],
    ['{"sessionUrl": 1}', 200, missingSessionUrl],
    ['{"sessionUrl": "/s", "baseUrl": 8000}', 200, 'config.json: "baseUrl" must be a string.'],
    ['{"sessionUrl": "/s", "notice": true}', 200, 'config.json: "notice" must be a string.'],
  ])('rejects %j (HTTP %i) with a readable message', async (body, status, message) => {
    await expect(loadRuntimeConfig('config.json', serving(body, status))).rejects.toThrow(message);
  });

  it('reports a network failure', async () => {
    const failing: typeof fetch = () => Promise.reject(new TypeError('Failed to fetch'));
    await expect(loadRuntimeConfig('config.json', failing)).rejects.toThrow(
      'Could not load config.json.',
    );
  });
});
