/** Everything a page sends and receives over the network, recorded from before it loads. */
import type { Page } from 'playwright-core';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
}

export interface SeenResponse {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  /** Every header the browser received (`allHeaders()`: including Set-Cookie). */
  readonly headers: Record<string, string>;
  /** The whole body as text ('' when the browser has none, e.g. a redirect or an aborted stream). */
  readonly body: string;
}

export class NetworkLog {
  readonly requests: SeenRequest[] = [];
  private readonly pending: Promise<SeenResponse>[] = [];

  /** Starts recording `page` (call it before `goto`). */
  constructor(page: Page) {
    page.on('request', (request) => {
      this.requests.push({
        method: request.method(),
        url: request.url(),
        headers: request.headers(),
      });
    });
    page.on('response', (response) => {
      const request = response.request();
      this.pending.push(
        Promise.all([
          response.allHeaders(),
          response.body().then(
            (body) => body.toString('utf8'),
            () => '',
          ),
        ]).then(([headers, body]) => ({
          method: request.method(),
          url: response.url(),
          status: response.status(),
          headers,
          body,
        })),
      );
    });
  }

  /** The responses so far, each with its whole body (waits for the bodies still arriving). */
  responses(): Promise<SeenResponse[]> {
    return Promise.all(this.pending);
  }

  /** The responses to `method` requests whose path is `path`. */
  async responsesTo(method: string, path: string): Promise<SeenResponse[]> {
    return (await this.responses()).filter(
      (response) => response.method === method && new URL(response.url).pathname === path,
    );
  }
}
