import { loadRuntimeConfig } from './runtime-config';

function serving(body: string, status = 200): typeof fetch {
  return async () => new Response(body, { status });
}

describe('loadRuntimeConfig', () => {
  it('reads baseUrl and token', async () => {
    const config = await loadRuntimeConfig(
      'config.json',
      serving('{"baseUrl": "http://127.0.0.1:8000", "token": "orc_abc"}'),
    );
    expect(config).toEqual({ baseUrl: 'http://127.0.0.1:8000', token: 'orc_abc' });
  });

  it('defaults baseUrl to the page origin', async () => {
    expect(await loadRuntimeConfig('config.json', serving('{"token": "orc_abc"}'))).toEqual({
      baseUrl: '',
      token: 'orc_abc',
    });
  });

  it('reads an optional notice', async () => {
    const config = await loadRuntimeConfig(
      'config.json',
      serving('{"token": "orc_abc", "notice": "Demo model: made-up words."}'),
    );
    expect(config).toEqual({ baseUrl: '', token: 'orc_abc', notice: 'Demo model: made-up words.' });
  });

  it('asks for the file without the HTTP cache', async () => {
    const fetchFn = vi.fn<typeof fetch>(serving('{"token": "orc_abc"}'));
    await loadRuntimeConfig('cfg.json', fetchFn);
    expect(fetchFn).toHaveBeenCalledWith('cfg.json', { cache: 'no-store' });
  });

  it.each([
    ['', 404, 'Could not load config.json (HTTP 404).'],
    ['not json', 200, 'config.json is not valid JSON.'],
    ['[1]', 200, 'config.json: "token" must be a non-empty string (an orc_… app token).'],
    ['null', 200, 'config.json must be a JSON object.'],
    ['{"token": ""}', 200, 'config.json: "token" must be a non-empty string (an orc_… app token).'],
    ['{"token": "orc_x", "baseUrl": 8000}', 200, 'config.json: "baseUrl" must be a string.'],
    ['{"token": "orc_x", "notice": true}', 200, 'config.json: "notice" must be a string.'],
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
