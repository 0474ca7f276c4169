/**
 * GUIDE.md, replayed: a fresh app from the Angular CLI, the guide's marked commands and files applied as
 * written (support: guide-steps.ts), built, served by `orchestra demo-backend` (the guide's stand-in for the
 * app's backend) next to the real gateway and OpenAI fake, and one answer streamed in headless Chromium.
 * Run: `npm run e2e:guide` (after `npm run build:lib`; needs the repository's .venv). Takes 2-4 minutes.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser } from 'playwright-core';

import { eventually } from '../support/eventually.ts';
import { launchBrowser } from '../support/browser.ts';
import { startGatewayStack } from '../support/gateway-stack.ts';
import { FRONTEND_DIR } from '../support/paths.ts';
import { run } from '../support/processes.ts';
import { PromptPage } from '../support/prompt-page.ts';
import { type Stack, isStub } from '../support/stack.ts';
import { type GuideStep, readGuide } from './guide-steps.ts';

/** The gateway URL the guide writes; replaced by the test gateway's (it runs on a free port). */
const GUIDE_GATEWAY_URL = 'http://localhost:8000';
/** The app `ng new` creates in the guide (and so its build output, `dist/my-app/browser`). */
const APP_NAME = 'my-app';
const SKIP = isStub() && 'needs the real gateway and demo backend';

/**
 * The guide's `ng new` sees the registry as it was at this date (npm's `before`; its later steps see
 * it as it is). The registry CI installs from holds Angular 22.3.0 only in part (`@angular/cli` 22.3.0
 * without `@angular/build` 22.3.0), so `ng new` with the newest 22.x fails there: the app is created
 * with the 22.2 releases the workspace itself is built with. `ORC_GUIDE_NPM_BEFORE=` (empty) creates
 * it with the newest ones.
 */
const NPM_BEFORE = process.env['ORC_GUIDE_NPM_BEFORE'] ?? '2026-11-18T00:00:00Z';

function isNgNew(step: GuideStep): boolean {
  return step.kind === 'sh' && step.code.includes(' new ');
}

/**
 * The parent process's npm context (we run under `npm run`) must not leak into the guide's npm commands.
 * The cache settings only save time: packages come from the npm cache when it has them.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  return {
    ...Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !/^npm_(package|lifecycle|config_(prefix|global|local))/i.test(key),
      ),
    ),
    // The guide asks for Node 22 (Angular 22): the workspace's pinned one, first on the PATH.
    PATH: `${join(FRONTEND_DIR, 'node_modules', '.bin')}${delimiter}${process.env['PATH'] ?? ''}`,
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  };
}

describe('GUIDE.md on a fresh Angular app', { skip: SKIP }, () => {
  let work: string;
  let site: string;
  let steps: GuideStep[];
  let stack: Stack;
  let browser: Browser;
  let built = false;

  before(
    async () => {
      steps = await readGuide(join(FRONTEND_DIR, 'GUIDE.md'));
      work = await mkdtemp(join(tmpdir(), 'orc-guide-'));
      // The guide installs the packed library from ../orchestra/frontend, seen from the app.
      const packs = join(work, 'orchestra', 'frontend');
      await mkdir(packs, { recursive: true });
      await run('npm', ['pack', './dist/orchestra-client', '--pack-destination', packs], {
        cwd: FRONTEND_DIR,
        env: cleanEnv(),
      });
      // The backend serves `site`, where the build is copied once it exists; it needs a page to start.
      site = join(work, 'site');
      await mkdir(site);
      await writeFile(join(site, 'index.html'), '<!doctype html><title>not built yet</title>');
      [stack, browser] = await Promise.all([startGatewayStack({ uiDir: site }), launchBrowser()]);
    },
    { timeout: 120_000 },
  );

  after(
    async () => {
      await browser?.close();
      await stack?.stop();
      if (work) {
        await rm(work, { recursive: true, force: true });
      }
    },
    { timeout: 60_000 },
  );

  it(
    'creates, installs and builds the app with the guide’s commands and files',
    { timeout: 600_000 },
    async () => {
      assert.ok(steps.some(isNgNew), 'an ng new');
      const app = join(work, APP_NAME);
      for (const step of steps) {
        if (step.kind === 'file') {
          const target = join(app, step.path);
          await mkdir(dirname(target), { recursive: true });
          await writeFile(target, step.code.replaceAll(GUIDE_GATEWAY_URL, stack.gatewayUrl));
        } else {
          await run('bash', ['-euo', 'pipefail', '-c', step.code], {
            cwd: step.where === 'work' ? work : app,
            env:
              isNgNew(step) && NPM_BEFORE
                ? { ...cleanEnv(), npm_config_before: NPM_BEFORE }
                : cleanEnv(),
            timeoutMs: 420_000,
          });
        }
      }
      await cp(join(app, 'dist', APP_NAME, 'browser'), site, { recursive: true });
      built = true;
    },
  );

  it(
    'streams an answer in <orc-prompt>, with a session minted by the backend',
    { timeout: 60_000 },
    async () => {
      assert.ok(built, 'the app was not built');
      const prompt = await PromptPage.open(browser, stack.origin);
      try {
        await prompt.recordRenderings();
        assert.equal((await prompt.ask('Hello from the guide [tokens:20]')).status(), 200);
        await prompt.waitForStatus('done');
        const finalText = ((await prompt.answer.textContent()) ?? '').trim();
        assert.equal(finalText.split(/\s+/).length, 20, `the fake's 20 words, got "${finalText}"`);
        const partial = (await prompt.renderings()).filter(
          (r) =>
            r.status === 'streaming' &&
            r.text.trim() !== '' &&
            r.text.trim().length < finalText.length,
        );
        assert.ok(partial.length >= 1, 'a part of the answer was shown before it was done');
        assert.ok(finalText.startsWith(partial[0]!.text.trim()), 'the answer grew in place');
        assert.deepEqual(prompt.pageErrors, []);
      } finally {
        await prompt.close();
      }
    },
  );

  it('streams an answer through the service API (AskClient)', { timeout: 60_000 }, async () => {
    assert.ok(built, 'the app was not built');
    const prompt = await PromptPage.open(browser, stack.origin);
    try {
      const page = prompt.page;
      const headline = page.getByTestId('headline');
      const asked = page.waitForResponse((r) => new URL(r.url()).pathname === '/ask', {
        timeout: 20_000,
      });
      await page.getByTestId('headline-button').click();
      const response = await asked;
      assert.equal(response.status(), 200, (await headline.textContent()) ?? undefined);
      const requestId = response.headers()['x-request-id'];
      assert.ok(requestId, 'the gateway named the request');
      const record = await eventually(
        async () => (await stack.logs(stack.token)).find((r) => r.request_id === requestId),
        `the log record of ${requestId}`,
      );
      assert.equal(record.outcome, 'completed', 'the gateway recorded the answer');
      assert.match(String(record['user']), /^u-/, 'under the user of the minted session');
      // The answer's deltas, added to the page as they came.
      await page.waitForFunction(
        () => (document.querySelector('[data-testid="headline"]')?.textContent ?? '').trim() !== '',
        undefined,
        { timeout: 10_000 },
      );
    } finally {
      await prompt.close();
    }
  });
});
