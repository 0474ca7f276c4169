/**
 * The demo as a chat, in headless Chromium against the real stack: the thread above, the message box at
 * the bottom, usable at phone size (390x844), and light and dark themes that follow the system.
 * Run: `npm run e2e` (after `npm run build`). Screenshots: test-results/chat-phone.png, chat-dark.png.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser, Locator } from 'playwright-core';

import { launchBrowser } from './support/browser.ts';
import { RESULTS_DIR } from './support/paths.ts';
import { PromptPage } from './support/prompt-page.ts';
import { type Stack, startStack } from './support/stack.ts';

const TEST = { timeout: 60_000 };

async function box(
  locator: Locator,
): Promise<{ x: number; y: number; width: number; height: number }> {
  const found = await locator.boundingBox();
  assert.ok(found, 'the element is rendered');
  return found;
}

/** WCAG contrast ratio of an element's text against the first opaque background behind it. */
function contrast(locator: Locator): Promise<number> {
  return locator.evaluate((element) => {
    const rgb = (css: string): number[] => (css.match(/[\d.]+/g) ?? []).map(Number);
    const luminance = ([r, g, b]: number[]): number => {
      const channel = (c: number): number => {
        const s = c / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * channel(r!) + 0.7152 * channel(g!) + 0.0722 * channel(b!);
    };
    let background = [255, 255, 255];
    for (let node: Element | null = element; node; node = node.parentElement) {
      const parts = rgb(getComputedStyle(node).backgroundColor);
      if (parts.length === 3 || (parts.length === 4 && parts[3] === 1)) {
        background = parts;
        break;
      }
    }
    const [light, dark] = [
      luminance(rgb(getComputedStyle(element).color)),
      luminance(background),
    ].sort((a, b) => b - a);
    return (light! + 0.05) / (dark! + 0.05);
  });
}

async function askAndWait(prompt: PromptPage, text: string): Promise<void> {
  assert.equal((await prompt.ask(text)).status(), 200);
  await prompt.waitForStatus('done');
}

describe('the demo as a chat', () => {
  let stack: Stack;
  let browser: Browser;

  before(
    async () => {
      [stack, browser] = await Promise.all([startStack(), launchBrowser()]);
    },
    { timeout: 60_000 },
  );

  after(
    async () => {
      await browser?.close();
      await stack?.stop();
    },
    { timeout: 30_000 },
  );

  it(
    'at phone size: the thread above, the message box at the bottom, nothing off-screen',
    TEST,
    async () => {
      const prompt = await PromptPage.open(browser, stack.origin, undefined, (page) =>
        page.setViewportSize({ width: 390, height: 844 }),
      );
      try {
        const page = prompt.page;
        await askAndWait(prompt, 'first question [tokens:12]');
        await askAndWait(prompt, 'second question [tokens:8]');

        const items = page.getByTestId('thread-item');
        assert.equal(await items.count(), 2);
        assert.equal(await items.nth(0).getAttribute('data-role'), 'user');
        assert.equal(await items.nth(0).textContent(), 'first question [tokens:12]');
        const [thread, answer, input] = [
          await box(page.getByTestId('thread')),
          await box(prompt.answer),
          await box(prompt.input),
        ];
        assert.ok(thread.y + thread.height <= answer.y, 'the thread is above the answer');
        assert.ok(answer.y + answer.height <= input.y, 'the message box is below the answer');
        assert.ok(input.y + input.height <= 844, 'the message box is on screen');
        for (const testId of ['send-button', 'new-conversation', 'usage']) {
          const { x, width } = await box(page.getByTestId(testId));
          assert.ok(x >= 0 && x + width <= 390, `${testId} fits the width`);
        }
        const sideways = await page.evaluate(
          () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
        );
        assert.equal(sideways, 0, 'no horizontal scrolling');
        await page.screenshot({ path: join(RESULTS_DIR, 'chat-phone.png'), fullPage: true });

        // New conversation clears the thread and the answer (which may be redrawn on the next frame).
        await page.getByTestId('new-conversation').click();
        await page.getByTestId('thread').waitFor({ state: 'detached', timeout: 5_000 });
        await page.waitForFunction(
          () => document.querySelector('[data-testid="answer"]')?.textContent?.trim() === '',
          undefined,
          { timeout: 5_000 },
        );
      } finally {
        await prompt.close();
      }
    },
  );

  for (const scheme of ['light', 'dark'] as const) {
    it(`follows the system's ${scheme} theme, with readable text`, TEST, async () => {
      const prompt = await PromptPage.open(browser, stack.origin, undefined, (page) =>
        page.emulateMedia({ colorScheme: scheme }),
      );
      try {
        const page = prompt.page;
        await askAndWait(prompt, 'what about themes? [tokens:6]');
        await askAndWait(prompt, 'and again [tokens:6]');
        const background = await page.evaluate(
          () => getComputedStyle(document.body).backgroundColor,
        );
        const level = (background.match(/\d+/g) ?? []).slice(0, 3).map(Number);
        assert.ok(
          scheme === 'dark' ? level.every((c) => c < 60) : level.every((c) => c > 200),
          `a ${scheme} page, got ${background}`,
        );
        for (const testId of [
          'answer',
          'thread-item',
          'usage',
          'status',
          'send-button',
          'new-conversation',
        ]) {
          const ratio = await contrast(page.getByTestId(testId).first());
          assert.ok(ratio >= 4.5, `${testId}: contrast ${ratio.toFixed(2)} below 4.5 in ${scheme}`);
        }
        if (scheme === 'dark') {
          await page.screenshot({ path: join(RESULTS_DIR, 'chat-dark.png'), fullPage: true });
        }
      } finally {
        await prompt.close();
      }
    });
  }
});
