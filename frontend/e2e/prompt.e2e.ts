/**
 * <orc-prompt> in the demo app, in headless Chromium, against the real gateway and the OpenAI fake
 * (started here; see support/stack.ts). Run: `npm run e2e` (after `npm run build`).
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser } from 'playwright-core';

import { eventually } from './support/eventually.ts';
import { launchBrowser } from './support/browser.ts';
import { RESULTS_DIR } from './support/paths.ts';
import { PromptPage } from './support/prompt-page.ts';
import { type Stack, startStack } from './support/stack.ts';

const XSS = '<img src=x onerror=alert(1)>';
/** Per test (not per file: the file's own run time grows with the number of tests and the machine's load). */
const TEST = { timeout: 60_000 };

describe('<orc-prompt> against the gateway', () => {
  let stack: Stack;
  let browser: Browser;
  const pages: PromptPage[] = [];

  const open = async (token?: string): Promise<PromptPage> => {
    const page = await PromptPage.open(browser, stack.origin, token);
    pages.push(page);
    return page;
  };

  before(
    async () => {
      [stack, browser] = await Promise.all([startStack(), launchBrowser()]);
    },
    { timeout: 120_000 },
  );

  after(
    async () => {
      await Promise.all(pages.map((page) => page.close()));
      await browser?.close();
      await stack?.stop();
    },
    { timeout: 30_000 },
  );

  it(
    'streams the answer: loading, then a growing answer, then done with the usage',
    TEST,
    async () => {
      const prompt = await open();
      assert.equal(await prompt.currentStatus(), 'idle');
      await prompt.recordRenderings();

      const response = await prompt.ask('Tell me about streams [tokens:30] [first-token-ms:300]');
      assert.equal(response.status(), 200);
      await prompt.waitForStatus('done');

      const renderings = await prompt.renderings();
      const finalText = (await prompt.answer.textContent()) ?? '';
      const loadingAt = renderings.findIndex((r) => r.status === 'loading' && r.text === '');
      const partial = renderings.filter((r) => r.status === 'streaming' && r.text !== '');
      assert.ok(loadingAt >= 0, 'a loading state before the first delta');
      const intermediate = partial.filter((r) => r.text.length < finalText.length);
      assert.ok(
        intermediate.length >= 2,
        `at least 2 intermediate answers before done, saw ${intermediate.length}`,
      );
      for (const [i, state] of partial.slice(0, -1).entries()) {
        const next = partial[i + 1].text;
        assert.ok(
          next.startsWith(state.text) && next.length > state.text.length,
          `state ${i} grows`,
        );
      }
      assert.ok(
        finalText.startsWith(partial[partial.length - 1].text),
        'the final answer extends the last state',
      );
      assert.ok(
        partial[partial.length - 1].at - partial[0].at > 300,
        'the answer grows over time, not at once',
      );
      assert.equal(finalText.trim().split(/\s+/).length, 30, 'the 30 words of the fake answer');

      const usage = (await prompt.usage.textContent()) ?? '';
      const [promptTokens, completionTokens, totalTokens] = (usage.match(/\d+/g) ?? []).map(Number);
      assert.equal(completionTokens, 30);
      assert.ok(promptTokens > 0);
      assert.equal(totalTokens, promptTokens + completionTokens);
      assert.equal(await prompt.cancelButton.count(), 0);

      await mkdir(RESULTS_DIR, { recursive: true });
      await prompt.page.screenshot({ path: join(RESULTS_DIR, 'answer-done.png'), fullPage: true });
      assert.deepEqual(prompt.pageErrors, []);
    },
  );

  it('cancels mid-stream, and the gateway records the client disconnect', TEST, async () => {
    const prompt = await open();
    const response = await prompt.ask('A very long answer please [tokens:2000]');
    const requestId = (await response.headerValue('x-request-id')) ?? '';
    await prompt.waitForStatus('streaming');
    await prompt.answer.filter({ hasText: /\S+ \S+ \S+/ }).waitFor();

    await prompt.cancelButton.click();
    await prompt.waitForStatus('cancelled');
    const kept = (await prompt.answer.textContent()) ?? '';
    assert.ok(kept.length > 0, 'the partial answer stays');
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(await prompt.answer.textContent(), kept, 'nothing arrives after cancel');

    const record = await eventually(async () => {
      const records = await stack.logs(stack.token);
      return records.find(
        (r) => r.outcome === 'client_disconnected' && (!requestId || r.request_id === requestId),
      );
    }, 'a client_disconnected log record');
    assert.equal(record.outcome, 'client_disconnected');
  });

  it('shows the quota error with its retry time on a 429', TEST, async () => {
    const prompt = await open(await stack.quotaLimitedToken(1));
    assert.equal((await prompt.ask('first [tokens:3]')).status(), 200);
    await prompt.waitForStatus('done');

    const response = await prompt.ask('second [tokens:3]');
    assert.equal(response.status(), 429);
    const retryAfter = Number(await response.headerValue('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    await prompt.waitForStatus('error');

    assert.equal(await prompt.error.getAttribute('data-code'), 'quota_exceeded');
    assert.equal(await prompt.error.getAttribute('data-retry-after'), String(retryAfter));
    const text = (await prompt.error.textContent()) ?? '';
    assert.match(text, /Quota exceeded/);
    assert.match(text, new RegExp(`Try again in ${retryAfter} seconds?\\.`));
    assert.ok(await prompt.retryButton.isVisible());
  });

  it('shows the auth error for a revoked token', TEST, async () => {
    const prompt = await open(await stack.revokedToken());
    const response = await prompt.ask('hello');
    assert.equal(response.status(), 401);
    await prompt.waitForStatus('error');

    assert.equal(await prompt.error.getAttribute('data-code'), 'invalid_token');
    assert.match((await prompt.error.textContent()) ?? '', /Not authorized/);
    assert.equal(await prompt.answer.textContent(), '');
  });

  it('renders an HTML-shaped answer as text', TEST, async () => {
    const prompt = await open();
    await prompt.ask('[xss]');
    await prompt.waitForStatus('done');

    assert.equal(await prompt.answer.textContent(), XSS);
    assert.equal(await prompt.answer.locator('img').count(), 0);
    assert.equal(await prompt.page.locator('img').count(), 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(prompt.dialogs, []);
    assert.deepEqual(prompt.pageErrors, []);
  });

  it('works from the keyboard alone', TEST, async () => {
    const prompt = await open();
    await prompt.page.keyboard.press('Tab');
    assert.equal(
      await prompt.input.evaluate((el) => el === document.activeElement),
      true,
      'Tab reaches the prompt',
    );
    await prompt.page.keyboard.type('line one');
    await prompt.page.keyboard.press('Shift+Enter');
    await prompt.page.keyboard.type('line two [tokens:2000]');
    assert.equal(await prompt.input.inputValue(), 'line one\nline two [tokens:2000]');
    assert.equal(await prompt.currentStatus(), 'idle');

    await prompt.page.keyboard.press('Enter');
    await prompt.waitForStatus('streaming');
    await prompt.page.keyboard.press('Escape');
    await prompt.waitForStatus('cancelled');
  });
});
