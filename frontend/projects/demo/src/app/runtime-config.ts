import { OrchestraConfig } from 'orchestra-client';

/** Where the demo reads its settings at startup: next to `index.html`, written by whoever serves it. */
export const RUNTIME_CONFIG_URL = 'config.json';

/** The gateway settings, and an optional notice the page shows above the prompt. */
export interface RuntimeConfig extends OrchestraConfig {
  /** E.g. from `orchestra demo`: the answers come from a stand-in model, not from OpenAI. */
  readonly notice?: string;
}

/**
 * Reads `config.json` (`{"baseUrl": "http://127.0.0.1:8000", "token": "orc_…", "notice": "…"}`; `baseUrl`
 * may be `""` or left out when the gateway serves the demo itself; `notice` is optional). Rejects with a
 * readable message when it is missing or malformed, so the page can say what to fix.
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
  if (typeof value !== 'object' || value === null) {
    throw new Error(`${url} must be a JSON object.`);
  }
  const { baseUrl = '', token, notice } = value as Record<string, unknown>;
  if (typeof baseUrl !== 'string') {
    throw new Error(`${url}: "baseUrl" must be a string.`);
  }
  if (typeof token !== 'string' || token === '') {
    throw new Error(`${url}: "token" must be a non-empty string (an orc_… app token).`);
  }
  if (notice !== undefined && typeof notice !== 'string') {
    throw new Error(`${url}: "notice" must be a string.`);
  }
  return notice ? { baseUrl, token, notice } : { baseUrl, token };
}
