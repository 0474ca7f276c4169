/**
 * A real OpenAI-compatible upstream, started by a test, that streams answers the test wrote: the project's
 * fake (`orchestra fake-openai`) answers with random words, but rendering tests need exact Markdown (tables,
 * code, hostile links). `POST /v1/chat/completions` (streaming only) picks the answer named by a
 * `[script:NAME]` marker in the last user message and sends it in `tokenChars`-character chunks, one every
 * `tokenMs` (paced by the clock, so a 5 ms pace holds on average), then the usage chunk and `[DONE]`.
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Script {
  readonly answer: string;
  /** Between chunks (default 40). */
  readonly tokenMs?: number;
  /** Characters per chunk (default 4, about one token). */
  readonly tokenChars?: number;
}

export interface ScriptedUpstream {
  /** The base URL to register as an app's upstream (`…/v1`). */
  readonly baseUrl: string;
  close(): Promise<void>;
}

export async function startScriptedUpstream(
  scripts: Readonly<Record<string, Script>>,
): Promise<ScriptedUpstream> {
  const server = createServer((req, res) => {
    void handle(req, res, scripts).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  scripts: Readonly<Record<string, Script>>,
): Promise<void> {
  if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
    res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error":{"message":"no"}}');
    return;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    model?: string;
    messages?: { role: string; content: unknown }[];
  };
  const lastUser = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user');
  const name = /\[script:([\w-]+)\]/.exec(String(lastUser?.content ?? ''))?.[1] ?? '';
  const script = scripts[name] ?? { answer: `No script named "${name}".` };
  const size = script.tokenChars ?? 4;
  const pieces: string[] = [];
  for (let at = 0; at < script.answer.length; at += size) {
    pieces.push(script.answer.slice(at, at + size));
  }
  const head = {
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 0,
    model: body.model ?? 'scripted',
  };
  const send = (extra: object): boolean =>
    res.write(`data: ${JSON.stringify({ ...head, ...extra })}\n\n`);
  const choice = (delta: object, finish: string | null = null): object => ({
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });

  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' });
  send(choice({ role: 'assistant', content: '' }));
  const tokenMs = script.tokenMs ?? 40;
  const started = performance.now();
  for (const [index, piece] of pieces.entries()) {
    const due = started + index * tokenMs - performance.now();
    if (due > 0) {
      await new Promise((resolve) => setTimeout(resolve, due));
    }
    if (res.destroyed) {
      return;
    }
    send(choice({ content: piece }));
  }
  send(choice({}, 'stop'));
  send({
    choices: [],
    usage: {
      prompt_tokens: 10,
      completion_tokens: pieces.length,
      total_tokens: 10 + pieces.length,
    },
  });
  res.end('data: [DONE]\n\n');
}
