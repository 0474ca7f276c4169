/**
 * The demo's session flow in headless Chromium, against the real stack (support/gateway-stack.ts): the page
 * gets short-lived session tokens from the demo's own backend, which alone holds the app's `orc_` token.
 * Run: `npm run e2e` (after `npm run build`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { Browser } from 'playwright-core';

import { eventually } from './support/eventually.ts';
import { launchBrowser } from './support/browser.ts';
import { NetworkLog, type SeenResponse } from './support/network-log.ts';
import { PromptPage, SESSION_PATH } from './support/prompt-page.ts';
import { SHORT_SESSION_TTL_S, type Stack, isStub, startStack } from './support/stack.ts';

const TEST = { timeout: 60_000, skip: isStub() && 'needs the real gateway and demo backend' };
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;
/**
 * The gateway accepts a session this long past its `exp` (clock skew between replicas; `leeway_s` of
 * `EndUserAuth` in gateway/services/end_users.py): a session is refused as expired only after that.
 */
const GATEWAY_LEEWAY_S = 5;

function bearer(headers: Record<string, string>): string {
  return /^Bearer (.+)$/.exec(headers['authorization'] ?? '')?.[1] ?? '';
}

/**
 * Asks through the keyboard and waits for *this* answer to finish (whatever happened on the wire).
 * Needs `prompt.recordRenderings()`: the status still shows the previous answer's `done` right after
 * Enter (a session refresh comes first), so the wait counts finished renderings instead.
 */
async function askAndFinish(prompt: PromptPage, text: string): Promise<void> {
  const finished = async (): Promise<number> =>
    (await prompt.renderings()).filter((r) => r.status === 'done' || r.status === 'error').length;
  const before = await finished();
  await prompt.input.fill(text);
  await prompt.input.press('Enter');
  await eventually(
    async () => ((await finished()) > before ? true : undefined),
    'the answer to end',
  );
  const error = (await prompt.error.count()) ? await prompt.error.textContent() : null;
  assert.equal(await prompt.currentStatus(), 'done', `the user saw an error: ${error}`);
}

describe('the demo with backend-minted sessions', () => {
  let stack: Stack;
  let browser: Browser;
  const pages: PromptPage[] = [];

  const open = async (
    origin: string,
    options: { clockFrozen?: boolean } = {},
  ): Promise<{ prompt: PromptPage; network: NetworkLog }> => {
    let network: NetworkLog | undefined;
    const prompt = await PromptPage.open(browser, origin, undefined, async (page) => {
      network = new NetworkLog(page);
      if (options.clockFrozen) {
        // The browser's clock stands still: the client believes its session is still fresh.
        await page.clock.setFixedTime(Date.now());
      }
    });
    pages.push(prompt);
    return { prompt, network: network! };
  };

  before(
    async () => {
      if (!isStub()) {
        [stack, browser] = await Promise.all([startStack(), launchBrowser()]);
      }
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
    'streams an answer with a session token; no orc_ token reaches the browser',
    TEST,
    async () => {
      const { prompt, network } = await open(stack.origin);
      await prompt.recordRenderings();
      const response = await prompt.ask('Tell me about sessions [tokens:12]');
      assert.equal(response.status(), 200);
      await prompt.waitForStatus('done');
      assert.equal(((await prompt.answer.textContent()) ?? '').trim().split(/\s+/).length, 12);
      const renderings = await prompt.renderings();
      assert.ok(
        renderings.some((r) => r.status === 'streaming' && r.text !== ''),
        'the answer streamed',
      );

      // config.json: the gateway and the session endpoint, no token.
      const [config] = await network.responsesTo('GET', '/config.json');
      assert.ok(config, 'the page loaded config.json');
      const settings = JSON.parse(config.body) as Record<string, unknown>;
      assert.equal(settings['baseUrl'], stack.gatewayUrl);
      assert.equal(settings['sessionUrl'], SESSION_PATH);
      assert.equal('token' in settings, false);

      // One mint, on the page's own origin, not cached; its token is what the page sent the gateway.
      const mints = await network.responsesTo('POST', SESSION_PATH);
      assert.equal(mints.length, 1);
      assert.equal(new URL(mints[0].url).origin, stack.origin);
      assert.equal(mints[0].status, 200);
      assert.equal(mints[0].headers['cache-control'], 'no-store');
      const session = JSON.parse(mints[0].body) as { token: string; expires_at: string };
      assert.match(session.token, JWT);
      const asks = network.requests.filter((r) => new URL(r.url).pathname === '/ask');
      assert.equal(asks.length, 1);
      assert.equal(new URL(asks[0].url).origin, stack.gatewayUrl, 'the page calls the gateway');
      assert.equal(bearer(asks[0].headers), session.token);
      const [answered] = await network.responsesTo('POST', '/ask');
      assert.equal(answered.headers['access-control-allow-origin'], stack.origin);

      // This browser's pseudonymous user: an HttpOnly, SameSite=Lax cookie, and the gateway's record.
      const cookies = await prompt.browserContext.cookies();
      const user = cookies.find((cookie) => cookie.name === 'demo_user');
      assert.ok(user, 'the demo backend set the user cookie');
      assert.equal(user.httpOnly, true);
      assert.equal(user.sameSite, 'Lax');
      const requestId = answered.headers['x-request-id'];
      const record = await eventually(async () => {
        const records = await stack.logs(stack.token);
        return records.find((r) => r.request_id === requestId && r.outcome === 'completed');
      }, 'the log record of the answer');
      assert.equal(record['user'], user.value);

      // Nothing the browser can see carries the app token, or any orc_ string.
      const seen: [string, string][] = [['page HTML', await prompt.page.content()]];
      for (const r of await network.responses()) {
        seen.push([`${r.method} ${r.url} (status, url)`, `${r.status} ${r.url}`]);
        seen.push([`${r.method} ${r.url} (headers)`, JSON.stringify(r.headers)]);
        seen.push([`${r.method} ${r.url} (body)`, r.body]);
      }
      for (const r of network.requests) {
        seen.push([`request ${r.method} ${r.url}`, `${r.url} ${JSON.stringify(r.headers)}`]);
      }
      const storage = await prompt.page.evaluate(() => ({
        local: JSON.stringify({ ...localStorage }),
        session: JSON.stringify({ ...sessionStorage }),
        cookie: document.cookie,
      }));
      seen.push(['localStorage', storage.local], ['sessionStorage', storage.session]);
      seen.push(['document.cookie', storage.cookie], ['cookies', JSON.stringify(cookies)]);
      assert.ok(seen.length > 8, `recorded ${seen.length} places`);
      assert.ok(
        (await network.responses()).some((r) => r.url.includes('/main-') && r.body.length > 1000),
        'the JavaScript bundle was recorded with its body',
      );
      for (const [where, text] of seen) {
        assert.ok(!text.includes(stack.token), `the app token in ${where}`);
        assert.ok(!text.includes('orc_'), `an orc_ string in ${where}: ${text.slice(0, 300)}`);
      }
      assert.deepEqual(prompt.pageErrors, []);
    },
  );

  const expiryCases = [
    { name: 'refreshed before use', clockFrozen: false },
    { name: 'refreshed after a 401 token_expired (the browser clock lags)', clockFrozen: true },
  ];
  for (const { name, clockFrozen } of expiryCases) {
    it(`a session that expires mid-visit is ${name}, unnoticed`, TEST, async () => {
      const { prompt, network } = await open(stack.shortSessionOrigin!, { clockFrozen });
      await prompt.recordRenderings();
      await askAndFinish(prompt, 'first [tokens:3]');
      assert.equal((await network.responsesTo('POST', SESSION_PATH)).length, 1);

      // Past the session's expiry as the gateway sees it (exp, plus its leeway, plus a margin).
      const waitS = SHORT_SESSION_TTL_S + GATEWAY_LEEWAY_S + 1.5;
      await new Promise((resolve) => setTimeout(resolve, waitS * 1000));
      await askAndFinish(prompt, 'second [tokens:4]');
      assert.equal(((await prompt.answer.textContent()) ?? '').trim().split(/\s+/).length, 4);
      const renderings = await prompt.renderings();
      assert.deepEqual(
        renderings.filter((r) => r.status === 'error'),
        [],
        'the user never saw an error',
      );

      const mints = await network.responsesTo('POST', SESSION_PATH);
      assert.equal(mints.length, 2, 'a second session was minted');
      assert.ok(mints.every((mint) => mint.status === 200));
      const tokens = mints.map((mint) => (JSON.parse(mint.body) as { token: string }).token);
      assert.notEqual(tokens[0], tokens[1]);

      const asks: SeenResponse[] = await network.responsesTo('POST', '/ask');
      const refused = asks.filter((r) => r.status === 401);
      assert.ok(refused.length <= 1, `at most one 401, saw ${refused.length}`);
      for (const r of refused) {
        assert.equal(
          (JSON.parse(r.body) as { error: { code: string } }).error.code,
          'token_expired',
        );
      }
      if (clockFrozen) {
        assert.equal(refused.length, 1, 'the lagging clock made the client send the expired one');
      } else {
        assert.equal(refused.length, 0, 'the client refreshed before the session expired');
      }
      assert.equal(asks[asks.length - 1].status, 200);
      const sent = network.requests
        .filter((r) => new URL(r.url).pathname === '/ask')
        .map((r) => bearer(r.headers));
      assert.equal(sent[0], tokens[0]);
      assert.equal(sent[sent.length - 1], tokens[1], 'the last answer came with the new session');
      assert.deepEqual(prompt.pageErrors, []);
    });
  }
});
