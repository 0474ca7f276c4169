/** The demo page and its `<orc-prompt>`, driven through the component's `data-testid` hooks. */
import type { Browser, BrowserContext, Locator, Page, Response } from 'playwright-core';

/** The demo backend's session endpoint (`sessionUrl` in its `config.json`). */
export const SESSION_PATH = '/api/orchestra/session';

export type Status =
  'idle' | 'loading' | 'streaming' | 'reconnecting' | 'done' | 'error' | 'cancelled';

/** One rendering of the component, as recorded in the page by a MutationObserver. */
export interface Rendering {
  readonly status: string;
  readonly text: string;
  readonly at: number;
}

export class PromptPage {
  /** Uncaught errors and `alert()`s seen in the page: an XSS would land here. */
  readonly pageErrors: string[] = [];
  readonly dialogs: string[] = [];

  private readonly context: BrowserContext;
  readonly page: Page;

  private constructor(context: BrowserContext, page: Page) {
    this.context = context;
    this.page = page;
    page.on('pageerror', (error) => this.pageErrors.push(error.message));
    page.on('dialog', (dialog) => {
      this.dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  }

  /**
   * Opens the demo (a fresh browser profile). With `token`, the app backend's session endpoint is answered
   * with that token instead (e.g. a revoked one). `beforeLoad` runs before the page loads (e.g. to start
   * recording its network traffic, or to set its clock).
   */
  static async open(
    browser: Browser,
    origin: string,
    token?: string,
    beforeLoad?: (page: Page, context: BrowserContext) => Promise<void> | void,
  ): Promise<PromptPage> {
    const context = await browser.newContext({
      baseURL: origin,
      viewport: { width: 900, height: 640 },
    });
    const page = await context.newPage();
    if (token !== undefined) {
      const expiresAt = new Date(Date.now() + 15 * 60_000).toISOString();
      await page.route(`**${SESSION_PATH}`, (route) =>
        route.fulfill({ json: { token, expires_at: expiresAt } }),
      );
    }
    await beforeLoad?.(page, context);
    const prompt = new PromptPage(context, page);
    await page.goto('/');
    await prompt.status.waitFor();
    return prompt;
  }

  get input(): Locator {
    return this.page.getByTestId('prompt-input');
  }
  get sendButton(): Locator {
    return this.page.getByTestId('send-button');
  }
  get cancelButton(): Locator {
    return this.page.getByTestId('cancel-button');
  }
  get answer(): Locator {
    return this.page.getByTestId('answer');
  }
  get status(): Locator {
    return this.page.getByTestId('status');
  }
  get error(): Locator {
    return this.page.getByTestId('error');
  }
  get retryButton(): Locator {
    return this.page.getByTestId('retry-button');
  }
  get usage(): Locator {
    return this.page.getByTestId('usage');
  }

  currentStatus(): Promise<string | null> {
    return this.status.getAttribute('data-status');
  }

  async waitForStatus(status: Status, timeout = 15_000): Promise<void> {
    await this.page.locator(`[data-testid="status"][data-status="${status}"]`).waitFor({ timeout });
  }

  /** Types `prompt` and presses Enter; resolves with the gateway's response to the `/ask` it sent. */
  async ask(prompt: string): Promise<Response> {
    await this.input.fill(prompt);
    const response = this.page.waitForResponse(
      (candidate) => new URL(candidate.url()).pathname === '/ask',
    );
    await this.input.press('Enter');
    return response;
  }

  /** Starts recording every rendering of status + answer (read them with `renderings()`). */
  async recordRenderings(): Promise<void> {
    await this.page.evaluate(() => {
      const host = document.querySelector('orc-prompt')!;
      const log: { status: string; text: string; at: number }[] = [];
      const snapshot = (): void => {
        const status =
          host.querySelector('[data-testid="status"]')?.getAttribute('data-status') ?? '';
        const text = host.querySelector('[data-testid="answer"]')?.textContent ?? '';
        const last = log[log.length - 1];
        if (!last || last.status !== status || last.text !== text) {
          log.push({ status, text, at: performance.now() });
        }
      };
      snapshot();
      new MutationObserver(snapshot).observe(host, {
        subtree: true,
        childList: true,
        characterData: true,
        attributes: true,
      });
      (window as unknown as { renderings: typeof log }).renderings = log;
    });
  }

  renderings(): Promise<Rendering[]> {
    return this.page.evaluate(() => (window as unknown as { renderings: Rendering[] }).renderings);
  }

  get browserContext(): BrowserContext {
    return this.context;
  }

  close(): Promise<void> {
    return this.context.close();
  }
}
