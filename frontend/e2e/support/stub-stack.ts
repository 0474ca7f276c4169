/** The stand-in stack (`ORC_E2E_GATEWAY=stub`): `stub-gateway.ts` serving a copy of the built demo. */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEMO_DIST_DIR } from './paths.ts';
import { freePort, start, stop, waitForHttp } from './processes.ts';
import { fetchLogs } from './gateway-logs.ts';
import type { Stack } from './stack.ts';

const SERVER = join(dirname(fileURLToPath(import.meta.url)), 'stub-gateway.ts');

export async function startStubStack(): Promise<Stack> {
  const uiDir = await mkdtemp(join(tmpdir(), 'orc-e2e-stub-'));
  await cp(DEMO_DIST_DIR, uiDir, { recursive: true });
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const server = start('stub-gateway', process.execPath, [
    SERVER,
    '--port',
    String(port),
    '--ui',
    uiDir,
  ]);
  await waitForHttp(`${origin}/`, server);
  const admin = async <T>(path: string, body: object): Promise<T> => {
    const response = await fetch(`${origin}/__stub/${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    return (await response.json()) as T;
  };
  const { token } = await admin<{ token: string }>('apps', { app: 'e2e' });
  await writeFile(
    join(uiDir, 'config.json'),
    JSON.stringify({ baseUrl: '', sessionUrl: '/api/orchestra/session' }),
  );
  return {
    origin,
    shortSessionOrigin: null,
    gatewayUrl: origin,
    token,
    async revokedToken() {
      const issued = await admin<{ id: string; token: string }>('tokens', { app: 'e2e' });
      await admin('revoke', { id: issued.id });
      return issued.token;
    },
    async quotaLimitedToken(rpm) {
      const limited = await admin<{ token: string }>('apps', { app: `e2e-quota-${rpm}` });
      await admin('quota', { app: `e2e-quota-${rpm}`, rpm });
      return limited.token;
    },
    addApp() {
      return Promise.reject(new Error('the stub gateway has no upstreams or workflows'));
    },
    logs: (appToken) => fetchLogs(origin, appToken),
    async stop() {
      await stop(server);
      await rm(uiDir, { recursive: true, force: true });
    },
  };
}
