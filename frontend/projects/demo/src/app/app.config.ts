import { ApplicationConfig, provideBrowserGlobalErrorListeners } from '@angular/core';
import { OrchestraConfig, provideOrchestra } from 'orchestra-client';

export function appConfig(orchestra: OrchestraConfig): ApplicationConfig {
  return {
    providers: [provideBrowserGlobalErrorListeners(), provideOrchestra(orchestra)],
  };
}
