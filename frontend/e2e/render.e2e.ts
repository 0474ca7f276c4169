/**
 * Rendered answers, feedback and restored threads of <orc-prompt> in the demo, in headless Chromium,
 * against the real gateway. Answers with exact Markdown come from a scripted upstream started here
 * (support/scripted-upstream.ts) behind the real gateway; the rest from the project's OpenAI fake.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser, Page } from 'playwright-core';

import { launchBrowser } from './support/browser.ts';
import { RESULTS_DIR } from './support/paths.ts';
import { PromptPage } from './support/prompt-page.ts';
import { type ScriptedUpstream, startScriptedUpstream } from './support/scripted-upstream.ts';
import { type Stack, startStack } from './support/stack.ts';

const TEST = { timeout: 60_000 };

const TABLE_AND_CODE = [
  '## Fruit',
  '',
  'What we **counted**:',
  '',
  '| Fruit | Count |',
  '| --- | ---: |',
  '| apples | 3 |',
  '| pears | 12 |',
  '',
  '```python',
  'print("hello")',
  'total = 3 + 12',
  '```',
  '',
  'A list to finish, slowly:',
  '',
  '- one',
  '- two',
  '- three',
  '',
  'That is all, and it took a while to write out in full so the test sees it grow.',
].join('\n');

const HOSTILE = [
  'Try [this link](javascript:alert(1)) and [that one](JaVaScRiPt:alert(2)).',
  '',
  '<img src=x onerror=alert(3)>',
  '',
  'Inline <b onmouseover=alert(4)>bold</b> and <script>alert(5)</script> and',
  '[data](data:text/html,<script>alert(6)</script>) and ![pic](https://example.invalid/leak.png).',
  '',
  '<iframe src="javascript:alert(7)"></iframe>',
  '',
  'Safe: [docs](https://example.com/docs) and [mail](mailto:team@example.com).',
].join('\n');

/** Every element of the page with an attribute named `on…` (an event handler). */
function handlerAttributes(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('*')).flatMap((element) =>
      Array.from(element.attributes)
        .filter((attribute) => attribute.name.toLowerCase().startsWith('on'))
        .map((attribute) => `${element.tagName}[${attribute.name}]`),
    ),
  );
}

describe('<orc-prompt> rendering, feedback and threads against the gateway', () => {
  let stack: Stack;
  let browser: Browser;
  let upstream: ScriptedUpstream;
  let scriptedToken: string;
  const pages: PromptPage[] = [];

  const open = async (token?: string): Promise<PromptPage> => {
    const page = await PromptPage.open(browser, stack.origin, token);
    pages.push(page);
    return page;
  };

  before(
    async () => {
      upstream = await startScriptedUpstream({
        table: { answer: TABLE_AND_CODE, tokenMs: 30 },
        hostile: { answer: HOSTILE, tokenMs: 5 },
      });
      [stack, browser] = await Promise.all([startStack(), launchBrowser()]);
      scriptedToken = await stack.addApp('e2e-scripted', { upstream: upstream.baseUrl });
    },
    { timeout: 120_000 },
  );

  after(
    async () => {
      await Promise.all(pages.map((page) => page.close()));
      await browser?.close();
      await stack?.stop();
      await upstream?.close();
    },
    { timeout: 30_000 },
  );

  it('renders a table and a code block while the answer still streams', TEST, async () => {
    const prompt = await open(scriptedToken);
    await prompt.page.evaluate(() => {
      const host = document.querySelector('orc-prompt')!;
      const seen: { status: string; rows: number; code: boolean }[] = [];
      new MutationObserver(() => {
        const answer = host.querySelector('[data-testid="answer"]');
        seen.push({
          status: host.querySelector('[data-testid="status"]')?.getAttribute('data-status') ?? '',
          rows: answer?.querySelectorAll('table tbody tr').length ?? 0,
          code: answer?.querySelector('pre > code.language-python') !== null,
        });
      }).observe(host, { subtree: true, childList: true, characterData: true, attributes: true });
      (window as unknown as { seen: typeof seen }).seen = seen;
    });

    assert.equal((await prompt.ask('Fruit please [script:table]')).status(), 200);
    await prompt.waitForStatus('done');

    const seen = await prompt.page.evaluate(
      () => (window as unknown as { seen: { status: string; rows: number; code: boolean }[] }).seen,
    );
    const streaming = seen.filter((state) => state.status === 'streaming');
    assert.ok(
      streaming.some((state) => state.rows === 2 && !state.code),
      'the table is there before the code block arrives',
    );
    assert.ok(
      streaming.some((state) => state.rows === 2 && state.code),
      'table and code block are both rendered before done',
    );
    const answer = prompt.answer;
    assert.equal(await answer.locator('h2').textContent(), 'Fruit');
    assert.deepEqual(await answer.locator('th').allTextContents(), ['Fruit', 'Count']);
    assert.equal(await answer.locator('td[align="right"]').first().textContent(), '3');
    assert.equal(
      await answer.locator('pre > code.language-python').textContent(),
      'print("hello")\ntotal = 3 + 12',
    );
    assert.deepEqual(await answer.locator('ul > li').allTextContents(), ['one', 'two', 'three']);
    assert.equal(await prompt.page.getByTestId('feedback-up').isVisible(), true);
    await mkdir(RESULTS_DIR, { recursive: true });
    await prompt.page.screenshot({
      path: join(RESULTS_DIR, 'answer-markdown.png'),
      fullPage: true,
    });
    assert.deepEqual(prompt.pageErrors, []);
  });

  it('renders hostile Markdown without running anything', TEST, async () => {
    const prompt = await open(scriptedToken);
    await prompt.ask('[script:hostile]');
    await prompt.waitForStatus('done');
    await new Promise((resolve) => setTimeout(resolve, 300));

    const answer = prompt.answer;
    const text = (await answer.textContent()) ?? '';
    assert.ok(text.includes('<img src=x onerror=alert(3)>'), 'raw HTML shows as text');
    assert.ok(text.includes('<script>alert(5)</script>'), 'a script tag shows as text');
    assert.equal(await prompt.page.locator('img, iframe').count(), 0);
    assert.equal(await answer.locator('img, script, iframe, b').count(), 0);
    assert.deepEqual(await handlerAttributes(prompt.page), []);
    const hrefs = await answer
      .locator('a[href]')
      .evaluateAll((links) =>
        links.map((link) => [
          link.getAttribute('href'),
          link.getAttribute('rel'),
          link.getAttribute('target'),
        ]),
      );
    assert.deepEqual(hrefs, [
      ['https://example.com/docs', 'noopener noreferrer', '_blank'],
      ['mailto:team@example.com', 'noopener noreferrer', '_blank'],
    ]);
    await answer.getByText('this link').click();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(prompt.dialogs, [], 'no alert() ran');
    assert.deepEqual(prompt.pageErrors, []);
  });

  it('copies a code block with its button', TEST, async () => {
    const prompt = await open(scriptedToken);
    await prompt.browserContext.grantPermissions(['clipboard-read', 'clipboard-write'], {
      origin: stack.origin,
    });
    await prompt.ask('[script:table]');
    await prompt.waitForStatus('done');

    const copy = prompt.answer.getByTestId('copy-code');
    assert.equal(await copy.count(), 1);
    await copy.click();
    await prompt.answer.getByTestId('copy-code').filter({ hasText: 'Copied' }).waitFor();
    const copied = await prompt.page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, 'print("hello")\ntotal = 3 + 12');
  });

  it(
    'rates an answer up, then down with a comment: the gateway records the last rating',
    TEST,
    async () => {
      const prompt = await open(scriptedToken);
      const response = await prompt.ask('[script:table]');
      const requestId = (await response.headerValue('x-request-id')) ?? '';
      await prompt.waitForStatus('done');
      const up = prompt.page.getByTestId('feedback-up');
      const down = prompt.page.getByTestId('feedback-down');
      const saved = prompt.page.locator('[data-testid="feedback-status"][data-state="saved"]');

      await up.focus();
      await prompt.page.keyboard.press('Enter');
      await saved.waitFor();
      assert.equal(await up.getAttribute('aria-pressed'), 'true');
      assert.equal(await down.getAttribute('aria-pressed'), 'false');
      const upRated = { score: 1, comment: null };
      assert.deepEqual(await feedbackOf(stack, scriptedToken, requestId, upRated), upRated);

      await down.click();
      await prompt.page.locator('[data-testid="feedback-down"][aria-pressed="true"]').waitFor();
      await saved.waitFor();
      await prompt.page.getByTestId('feedback-comment').fill('The table is wrong.');
      const commented = prompt.page.waitForResponse(
        (r) => new URL(r.url()).pathname === '/feedback',
      );
      await prompt.page.getByTestId('feedback-send-comment').click();
      assert.equal((await commented).status(), 204);
      await saved.waitFor();
      assert.equal(await up.getAttribute('aria-pressed'), 'false');
      const downRated = { score: -1, comment: 'The table is wrong.' };
      assert.deepEqual(await feedbackOf(stack, scriptedToken, requestId, downRated), downRated);

      await mkdir(RESULTS_DIR, { recursive: true });
      await prompt.page.screenshot({
        path: join(RESULTS_DIR, 'answer-markdown-feedback.png'),
        fullPage: true,
      });
      assert.deepEqual(prompt.pageErrors, []);
    },
  );

  it('restores the thread after a reload (conversation mode)', TEST, async () => {
    const token = await stack.addApp('e2e-threads', { workflow: 'conversation' });
    const prompt = await open(token);
    assert.equal((await prompt.ask('First question [tokens:5]')).status(), 200);
    await prompt.waitForStatus('done');
    const firstAnswer = ((await prompt.answer.textContent()) ?? '').trim();
    assert.equal((await prompt.ask('Second question [tokens:5]')).status(), 200);
    await prompt.waitForStatus('done');
    const secondAnswer = ((await prompt.answer.textContent()) ?? '').trim();

    const loaded = prompt.page.waitForResponse((r) =>
      new URL(r.url()).pathname.startsWith('/conversations/'),
    );
    await prompt.page.reload();
    assert.equal((await loaded).status(), 200);
    const items = prompt.page.getByTestId('thread-item');
    await prompt.page.waitForFunction(
      () => document.querySelectorAll('[data-testid="thread-item"]').length >= 4,
    );
    const texts = await items.evaluateAll((elements) =>
      elements.map((element) => [
        element.getAttribute('data-role'),
        (element.querySelector('[data-testid="thread-text"]')?.textContent ?? '').trim(),
      ]),
    );
    assert.deepEqual(texts.slice(-4), [
      ['user', 'First question [tokens:5]'],
      ['assistant', firstAnswer],
      ['user', 'Second question [tokens:5]'],
      ['assistant', secondAnswer],
    ]);
    assert.deepEqual(prompt.pageErrors, []);
  });
});

/**
 * The `feedback` of the gateway's log record of `requestId` as `{score, comment}`, once it equals
 * `expected` (records are written in batches), else the last one seen after 15 s.
 */
async function feedbackOf(
  stack: Stack,
  token: string,
  requestId: string,
  expected: { score: number; comment: string | null },
): Promise<unknown> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const record = (await stack.logs(token)).find((r) => r.request_id === requestId);
    const feedback = record?.['feedback'] as { score: number; comment?: string | null } | null;
    const seen = feedback ? { score: feedback.score, comment: feedback.comment ?? null } : feedback;
    if (JSON.stringify(seen) === JSON.stringify(expected) || Date.now() > deadline) {
      return seen;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
