import { bootstrapApplication } from '@angular/platform-browser';

import { App } from './app/app';
import { appConfig } from './app/app.config';
import { loadRuntimeConfig } from './app/runtime-config';

loadRuntimeConfig()
  .then((orchestra) => bootstrapApplication(App, appConfig(orchestra)))
  .catch((error: unknown) => {
    const message = document.createElement('p');
    message.setAttribute('role', 'alert');
    message.setAttribute('data-testid', 'startup-error');
    message.textContent = `The demo could not start: ${error instanceof Error ? error.message : String(error)}`;
    document.body.replaceChildren(message);
    console.error(error);
  });
