import {
  ApplicationConfig,
  InjectionToken,
  provideBrowserGlobalErrorListeners,
} from '@angular/core';
import { provideOrchestra } from 'orchestra-client';

import { RuntimeConfig } from './runtime-config';

/** The notice from `config.json` (`orchestra demo`: "Demo model: …"), or `null`. */
export const DEMO_NOTICE = new InjectionToken<string | null>('DEMO_NOTICE');

export function appConfig({ notice, ...orchestra }: RuntimeConfig): ApplicationConfig {
  return {
    providers: [
      provideBrowserGlobalErrorListeners(),
      provideOrchestra(orchestra),
      { provide: DEMO_NOTICE, useValue: notice ?? null },
    ],
  };
}
