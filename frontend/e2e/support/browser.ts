/** Debian's headless Chromium driven by playwright-core (no downloaded browsers). */
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env['CHROME_BIN'] ?? '/usr/bin/chromium';

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
