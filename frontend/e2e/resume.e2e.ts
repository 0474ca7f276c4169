/**
 * <orc-prompt> keeps an answer when the network drops: the page talks to the gateway through a TCP proxy
 * the test controls (support/tcp-proxy.ts); cutting it mid-answer shows `reconnecting`, then the whole
 * answer, identical to an uncut run of the same prompt, and the gateway recorded one request. A reload
 * mid-answer picks the answer up again. Real gateway and OpenAI fake (support/stack.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { Browser } from 'playwright-core';

import { launchBrowser } from './support/browser.ts';
import { eventually } from './support/eventually.ts';
import type { LogRecord } from './support/gateway-logs.ts';
import { PromptPage } from './support/prompt-page.ts';
import { type Stack, isStub, startStack } from './support/stack.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const TEST = {
  timeout: 90_000,
  skip: isStub() ? 'the stub gateway does not resume answers' : false,
};
/** About 3 s of answer at the fake's pace: time to cut it in the middle. */
const PROMPT = 'Tell me a long story about trains and tunnels [tokens:80]';

describe('<orc-prompt> resumes an answer', () => {
  let stack: Stack;
  let browser: Browser;
  let proxy: TcpProxy;
  const pages: PromptPage[] = [];

  /** The demo, with its gateway URL (from `config.json`) pointing at the proxy. */
  const open = async (): Promise<PromptPage> => {
    const page = await PromptPage.open(browser, stack.origin, undefined, async (tab) => {
      await tab.route('**/config.json', async (route) => {
        const config = (await (await route.fetch()).json()) as Record<string, unknown>;
        await route.fulfill({ json: { ...config, baseUrl: proxy.url } });
      });
    });
    pages.push(page);
    return page;
  };

  /** The gateway's records of answer `requestId`, once it has written at least one. */
  const recordsOf = (requestId: string): Promise<LogRecord[]> =>
    eventually(async () => {
      const records = (await stack.logs(stack.token)).filter((r) => r.request_id === requestId);
      return records.length > 0 ? records : undefined;
    }, `the log record of ${requestId}`);

  /** The answer to `PROMPT` with nothing in the way. */
  let uncut = '';

  before(
    async () => {
      // Each is kept as soon as it is up, so that `after` stops it even if the other failed.
      await Promise.all([
        startStack().then((started) => (stack = started)),
        launchBrowser().then((launched) => (browser = launched)),
      ]);
      proxy = await TcpProxy.start(stack.gatewayUrl);
      const prompt = await open();
      await prompt.ask(PROMPT);
      await prompt.waitForStatus('done', 30_000);
      uncut = (await prompt.answer.textContent()) ?? '';
      assert.equal(uncut.trim().split(/\s+/).length, 80, 'the 80 words of the fake answer');
    },
    { timeout: 120_000 },
  );

  after(
    async () => {
      await Promise.all(pages.map((page) => page.close()));
      await browser?.close();
      await proxy?.close();
      await stack?.stop();
    },
    { timeout: 30_000 },
  );

  it('shows reconnecting when the network drops, then the whole answer, once', TEST, async () => {
    const prompt = await open();
    await prompt.recordRenderings();
    const response = await prompt.ask(PROMPT);
    const requestId = (await response.headerValue('x-request-id')) ?? '';
    assert.notEqual(requestId, '');
    await prompt.answer.filter({ hasText: /(\S+\s+){5}/ }).waitFor();
    const connectionsBefore = proxy.connections;

    // Down for 1.2 s: the first attempt (after 0.5 s) is refused, the second (1 s later) gets through.
    proxy.cut(1_200);
    await prompt.waitForStatus('reconnecting');
    await prompt.waitForStatus('done', 30_000);

    assert.equal(await prompt.answer.textContent(), uncut);
    assert.ok(proxy.connections > connectionsBefore, 'the page connected again');
    const renderings = await prompt.renderings();
    const cutAt = renderings.findIndex((r) => r.status === 'reconnecting');
    const shownBefore = renderings[cutAt - 1]?.text ?? '';
    assert.ok(shownBefore.length > 0 && shownBefore.length < uncut.length, 'cut mid-answer');
    // No duplicate and no gap: every rendering is a prefix of the uncut answer.
    for (const rendering of renderings) {
      assert.ok(uncut.startsWith(rendering.text), `"${rendering.text}" starts the answer`);
    }
    assert.equal(await prompt.page.evaluate(() => sessionStorage.length), 0, 'nothing kept');

    const records = await recordsOf(requestId);
    assert.equal(records.length, 1, 'one record for the answer');
    assert.equal(records[0].outcome, 'completed');
    assert.deepEqual(prompt.pageErrors, []);
  });

  it('picks a running answer up again after a reload', TEST, async () => {
    const prompt = await open();
    const response = await prompt.ask(PROMPT);
    const requestId = (await response.headerValue('x-request-id')) ?? '';
    await prompt.answer.filter({ hasText: /(\S+\s+){5}/ }).waitFor();
    const kept = await prompt.page.evaluate(() => JSON.stringify({ ...sessionStorage }));
    assert.match(kept, new RegExp(requestId));

    await prompt.page.reload();
    await prompt.waitForStatus('done', 30_000);

    assert.equal(await prompt.answer.textContent(), uncut);
    assert.equal(await prompt.page.evaluate(() => sessionStorage.length), 0, 'cleared at done');
    const records = await recordsOf(requestId);
    assert.equal(records.length, 1, 'one record for the answer');
    assert.equal(records[0].outcome, 'completed');
  });
});
