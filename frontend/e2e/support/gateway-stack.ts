/**
 * The real stack, laid out like `orchestra demo`: `orchestra fake-openai`, `orchestra serve` (no UI) on
 * SQLite in a temporary ORCHESTRA_HOME, and `orchestra demo-backend` serving the built demo and minting
 * sessions with the app token (given on its stdin). A second demo backend mints short sessions.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEMO_DIST_DIR, REPO_DIR } from './paths.ts';
import { freePort, run, start, stop, waitForHttp } from './processes.ts';
import { fetchLogs } from './gateway-logs.ts';
import { type AppOptions, SHORT_SESSION_TTL_S, type Stack } from './stack.ts';

/** Between answer chunks: slow enough for a browser to see the answer grow. */
const TOKEN_MS = '40';
const ORCHESTRA = process.env['ORCHESTRA_BIN'] ?? join(REPO_DIR, '.venv', 'bin', 'orchestra');

/** `uiDir`: the built app the demo backends serve (default: the demo; the guide's test serves its own). */
export async function startGatewayStack({ uiDir = DEMO_DIST_DIR } = {}): Promise<Stack> {
  const home = await mkdtemp(join(tmpdir(), 'orc-e2e-'));
  const env = { ...process.env, ORCHESTRA_HOME: home };
  const cli = (args: string[], input?: string): Promise<string> =>
    run(ORCHESTRA, args, { env, cwd: REPO_DIR, ...(input === undefined ? {} : { input }) });
  const [port, shortPort, gatewayPort, fakePort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const origin = `http://127.0.0.1:${port}`;
  const shortSessionOrigin = `http://127.0.0.1:${shortPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const upstream = `http://127.0.0.1:${fakePort}/v1`;
  const children: ChildProcess[] = [];

  const addApp = async (name: string, options: AppOptions = {}): Promise<string> => {
    const workflow = options.workflow ? ['--workflow', options.workflow] : [];
    const added = JSON.parse(
      await cli(
        [
          'apps',
          'add',
          name,
          '--origin',
          origin,
          '--origin',
          shortSessionOrigin,
          '--base-url',
          options.upstream ?? upstream,
          ...workflow,
          '--json',
          '--openai-key-stdin',
        ],
        'sk-test\n',
      ),
    ) as { token: string };
    return added.token;
  };

  const startBackend = async (name: string, at: number, ttlS: number, token: string) => {
    const backend = start(
      name,
      ORCHESTRA,
      [
        'demo-backend',
        '--port',
        String(at),
        '--gateway',
        gatewayUrl,
        '--ui',
        uiDir,
        '--session-ttl-s',
        String(ttlS),
      ],
      { env, cwd: REPO_DIR, input: `${token}\n` },
    );
    children.push(backend);
    await waitForHttp(`http://127.0.0.1:${at}/config.json`, backend);
  };

  try {
    await cli(['init']);
    const fake = start(
      'fake-openai',
      ORCHESTRA,
      ['fake-openai', '--port', String(fakePort), '--token-ms', TOKEN_MS],
      { env },
    );
    children.push(fake);
    await waitForHttp(`http://127.0.0.1:${fakePort}/_fake/health`, fake);

    const token = await addApp('e2e');
    const gateway = start('gateway', ORCHESTRA, ['serve', '--port', String(gatewayPort)], {
      env,
      cwd: REPO_DIR,
    });
    children.push(gateway);
    await waitForHttp(`${gatewayUrl}/status`, gateway);
    await Promise.all([
      startBackend('demo-backend', port, 900, token),
      startBackend('demo-backend-short', shortPort, SHORT_SESSION_TTL_S, token),
    ]);

    return {
      origin,
      shortSessionOrigin,
      gatewayUrl,
      token,
      async revokedToken() {
        const issued = JSON.parse(
          await cli(['tokens', 'issue', 'e2e', '--label', 'revoked-in-e2e', '--json']),
        ) as {
          id: string;
          token: string;
        };
        await cli(['tokens', 'revoke', issued.id]);
        return issued.token;
      },
      async quotaLimitedToken(rpm) {
        const name = `e2e-quota-${rpm}`;
        const limited = await addApp(name);
        await cli(['quotas', 'set', name, '--rpm', String(rpm)]);
        return limited;
      },
      addApp,
      logs: (appToken) => fetchLogs(gatewayUrl, appToken),
      async stop() {
        await Promise.all(children.map((child) => stop(child)));
        await rm(home, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all(children.map((child) => stop(child)));
    await rm(home, { recursive: true, force: true });
    throw error;
  }
}
