/** Where the demo reads its settings at startup: next to `index.html`, written by whoever serves it. */
export const RUNTIME_CONFIG_URL = 'config.json';

/** The gateway, the app backend's session endpoint, and an optional notice shown above the prompt. */
export interface RuntimeConfig {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8001`; `""` means the page's own origin. */
  readonly baseUrl: string;
  /** The app backend's endpoint that mints session tokens (same origin as the page, with its cookie). */
  readonly sessionUrl: string;
  /** E.g. from `orchestra demo`: the answers come from a stand-in model, not from OpenAI. */
  readonly notice?: string;
}

/**
 * Reads `config.json` (`{"baseUrl": "http://127.0.0.1:8001", "sessionUrl": "/api/orchestra/session",
 * "notice": "…"}`; `baseUrl` may be `""` or left out when the gateway is on the page's origin; `notice` is
 * optional). There is no token in it: the page only ever holds short-lived session tokens from `sessionUrl`,
 * and a `config.json` that carries a token is refused. Rejects with a readable message when the file is
 * missing or malformed, so the page can say what to fix.
 */
export async function loadRuntimeConfig(
  url: string = RUNTIME_CONFIG_URL,
  fetchFn: typeof fetch = (input, init) => fetch(input, init),
): Promise<RuntimeConfig> {
  let response: Response;
  try {
    response = await fetchFn(url, { cache: 'no-store' });
  } catch {
    throw new Error(`Could not load ${url}.`);
  }
  if (!response.ok) {
    throw new Error(`Could not load ${url} (HTTP ${response.status}).`);
  }
  let value: unknown;
  try {
    value = await response.json();
  } catch {
    throw new Error(`${url} is not valid JSON.`);
  }
  return parseRuntimeConfig(value, url);
}

function parseRuntimeConfig(value: unknown, url: string): RuntimeConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${url} must be a JSON object.`);
  }
  const { baseUrl = '', sessionUrl, notice, token } = value as Record<string, unknown>;
  if (token !== undefined) {
    throw new Error(
      `${url}: "token" is not allowed: an app token must stay on the app's server; ` +
        `the page gets session tokens from "sessionUrl".`,
    );
  }
  if (typeof baseUrl !== 'string') {
    throw new Error(`${url}: "baseUrl" must be a string.`);
  }
  if (typeof sessionUrl !== 'string' || sessionUrl === '') {
    throw new Error(
      `${url}: "sessionUrl" must be a non-empty string (the app backend's session endpoint).`,
    );
  }
  if (notice !== undefined && typeof notice !== 'string') {
    throw new Error(`${url}: "notice" must be a string.`);
  }
  return notice ? { baseUrl, sessionUrl, notice } : { baseUrl, sessionUrl };
}
