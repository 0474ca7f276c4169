import {
  ApplicationConfig,
  InjectionToken,
  provideBrowserGlobalErrorListeners,
} from '@angular/core';
import { provideOrchestra, sessionToken } from 'orchestra-client';

import { RuntimeConfig } from './runtime-config';

/** The notice from `config.json` (`orchestra demo`: "Demo model: …"), or `null`. */
export const DEMO_NOTICE = new InjectionToken<string | null>('DEMO_NOTICE');

/**
 * The demo's providers: the gateway at `baseUrl`, authenticated with short-lived session tokens that the
 * app's backend mints at `sessionUrl` (cached until shortly before they expire, refreshed on
 * `token_expired`). The page never holds the app's own token.
 */
export function appConfig({ baseUrl, sessionUrl, notice }: RuntimeConfig): ApplicationConfig {
  return {
    providers: [
      provideBrowserGlobalErrorListeners(),
      provideOrchestra({ baseUrl, token: sessionToken({ url: sessionUrl }) }),
      { provide: DEMO_NOTICE, useValue: notice ?? null },
    ],
  };
}
