import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

/** Unit tests run in Debian's headless Chromium (`CHROME_BIN` to use another binary). */
export default defineConfig({
  test: {
    // Failure screenshots and other attachments land with the other reports (git-ignored).
    attachmentsDir: 'test-results/vitest-attachments',
    browser: {
      enabled: true,
      headless: true,
      provider: playwright({
        launchOptions: {
          executablePath: process.env['CHROME_BIN'] ?? '/usr/bin/chromium',
          args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      }),
      instances: [{ browser: 'chromium' }],
    },
  },
});
