/** The gateway's request log, as an app sees it (`GET /logs` with its token). */
export interface LogRecord {
  readonly outcome: string;
  readonly request_id?: string;
  readonly [field: string]: unknown;
}

export async function fetchLogs(origin: string, token: string): Promise<LogRecord[]> {
  const response = await fetch(`${origin}/logs`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    throw new Error(`GET /logs answered HTTP ${response.status}: ${await response.text()}`);
  }
  const body = (await response.json()) as { records?: LogRecord[] };
  return body.records ?? [];
}
