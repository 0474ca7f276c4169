/** The real stack: `orchestra fake-openai` + `orchestra serve --ui` on SQLite in a temporary ORCHESTRA_HOME. */
import type { ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEMO_DIST_DIR, REPO_DIR } from './paths.ts';
import { freePort, run, start, stop, waitForHttp } from './processes.ts';
import { fetchLogs } from './gateway-logs.ts';
import type { Stack } from './stack.ts';

/** Between answer chunks: slow enough for a browser to see the answer grow. */
const TOKEN_MS = '40';
const ORCHESTRA = process.env['ORCHESTRA_BIN'] ?? join(REPO_DIR, '.venv', 'bin', 'orchestra');

export async function startGatewayStack(): Promise<Stack> {
  const home = await mkdtemp(join(tmpdir(), 'orc-e2e-'));
  const env = { ...process.env, ORCHESTRA_HOME: home };
  const cli = (args: string[], input?: string): Promise<string> =>
    run(ORCHESTRA, args, { env, cwd: REPO_DIR, ...(input === undefined ? {} : { input }) });
  const [port, fakePort] = [await freePort(), await freePort()];
  const origin = `http://127.0.0.1:${port}`;
  const upstream = `http://127.0.0.1:${fakePort}/v1`;
  const children: ChildProcess[] = [];

  const addApp = async (name: string): Promise<string> => {
    const added = JSON.parse(
      await cli(
        [
          'apps',
          'add',
          name,
          '--origin',
          origin,
          '--base-url',
          upstream,
          '--json',
          '--openai-key-stdin',
        ],
        'sk-test\n',
      ),
    ) as { token: string };
    return added.token;
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
    const uiDir = join(home, 'ui');
    await cp(DEMO_DIST_DIR, uiDir, { recursive: true });
    await writeFile(join(uiDir, 'config.json'), JSON.stringify({ baseUrl: '', token }));

    const gateway = start('gateway', ORCHESTRA, ['serve', '--port', String(port), '--ui', uiDir], {
      env,
      cwd: REPO_DIR,
    });
    children.push(gateway);
    await waitForHttp(`${origin}/`, gateway);

    return {
      origin,
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
      logs: (appToken) => fetchLogs(origin, appToken),
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
