import { TestBed } from '@angular/core/testing';
import { ORCHESTRA_CONFIG, OrchestraTokenProvider } from 'orchestra-client';

import { DEMO_NOTICE, appConfig } from './app.config';

describe('appConfig', () => {
  afterEach(() => vi.restoreAllMocks());

  function configure(notice?: string) {
    TestBed.configureTestingModule({
      providers: appConfig({
        baseUrl: 'http://127.0.0.1:8001',
        sessionUrl: '/api/orchestra/session',
        ...(notice === undefined ? {} : { notice }),
      }).providers,
    });
    return TestBed.inject(ORCHESTRA_CONFIG);
  }

  it('sends the gateway session tokens minted by the app backend at sessionUrl', async () => {
    const fetchSpy = vi
      .spyOn(globalThis, 'fetch')
      .mockResolvedValue(
        Response.json({ token: 'eyJ.session.sig', expires_at: '2999-01-01T00:00:00Z' }),
      );
    const config = configure();
    expect(config.baseUrl).toBe('http://127.0.0.1:8001');
    expect(typeof config.token).toBe('object');

    const provider = config.token as OrchestraTokenProvider;
    expect(await provider.getToken()).toBe('eyJ.session.sig');
    expect(await provider.getToken()).toBe('eyJ.session.sig');
    expect(fetchSpy).toHaveBeenCalledTimes(1); // cached until shortly before it expires
    const [url, init] = fetchSpy.mock.calls[0];
    expect(url).toBe('/api/orchestra/session');
    expect(init?.method).toBe('POST');
    expect(init?.credentials).toBe('same-origin');
  });

  it('provides the notice, or null without one', () => {
    configure('Demo model: made-up words.');
    expect(TestBed.inject(DEMO_NOTICE)).toBe('Demo model: made-up words.');
    TestBed.resetTestingModule();
    configure();
    expect(TestBed.inject(DEMO_NOTICE)).toBeNull();
  });
});
