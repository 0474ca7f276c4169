/**
 * A TCP proxy the test controls, between the browser and the gateway (Node `net`, bytes passed as they
 * come). `cut()` drops every open connection at once, as a train entering a tunnel would, and can refuse
 * new ones for a while: the page sees a network error mid-answer and has to resume.
 */
import { type Server, type Socket, connect, createServer } from 'node:net';

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private refuseUntil = 0;
  /** Connections accepted (and passed on) so far. */
  connections = 0;

  private readonly server: Server;

  private constructor(server: Server) {
    this.server = server;
  }

  /** Listens on a free port of 127.0.0.1 and forwards to `target` (`http://host:port`). */
  static async start(target: string): Promise<TcpProxy> {
    const { hostname, port } = new URL(target);
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => proxy?.accept(client, hostname, Number(port)));
    proxy = new TcpProxy(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** The proxy's URL, to use in place of the target's. */
  get url(): string {
    const address = this.server.address();
    if (typeof address !== 'object' || address === null) {
      throw new Error('the proxy is not listening');
    }
    return `http://127.0.0.1:${address.port}`;
  }

  /** Destroys every open connection (both sides); new ones are refused for `refuseMs`. */
  cut(refuseMs = 0): void {
    this.refuseUntil = Date.now() + refuseMs;
    for (const socket of this.sockets) {
      socket.destroy();
    }
    this.sockets.clear();
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, host: string, port: number): void {
    if (Date.now() < this.refuseUntil) {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = connect(port, host);
    for (const [socket, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.sockets.add(socket);
      socket.setNoDelay(true);
      socket.pipe(other);
      socket.on('error', () => other.destroy());
      socket.on('close', () => {
        this.sockets.delete(socket);
        other.destroy();
      });
    }
  }
}
