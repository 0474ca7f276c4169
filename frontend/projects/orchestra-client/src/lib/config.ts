import { EnvironmentProviders, InjectionToken, makeEnvironmentProviders } from '@angular/core';

/**
 * The app token (`orc_…`), or a function that returns one. The function is called for every request, so an
 * app can mint short-lived tokens from its own backend (and cache them itself).
 */
export type OrchestraToken = string | (() => string | Promise<string>);

export interface OrchestraConfig {
  /** The gateway's base URL, e.g. `https://orchestra.example.com`; `""` means the page's own origin. */
  readonly baseUrl: string;
  readonly token: OrchestraToken;
}

export const ORCHESTRA_CONFIG = new InjectionToken<OrchestraConfig>('ORCHESTRA_CONFIG');

/** Registers the gateway for `AskClient` and `<orc-prompt>`: `providers: [provideOrchestra({ baseUrl, token })]`. */
export function provideOrchestra(config: OrchestraConfig): EnvironmentProviders {
  return makeEnvironmentProviders([{ provide: ORCHESTRA_CONFIG, useValue: config }]);
}
