// A TCP proxy on loopback that cuts connections: for testing what a
// migration (or any tool built on these channels) does when its link fails.
// It passes bytes both ways, ends included, between its clients and a
// target port, and cuts its first connection, both sides at once, when
// `cutAfter` bytes have crossed it in either direction; the bytes before the
// cut point go through, the rest is lost with the connection. Later
// connections pass untouched, so a client that dials again gets through.

import { createConnection, createServer, type Socket } from "node:net";

export class CuttingProxy {
  private crossed = 0;
  private connections = 0;
  private cut = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: ReturnType<typeof createServer>,
    /** the port clients connect to */
    readonly port: number,
  ) {}

  /** Listens on a free loopback port, passing to 127.0.0.1:`target`. */
  static async start(target: number, cutAfter: number): Promise<CuttingProxy> {
    if (!(cutAfter >= 0)) throw new RangeError(`cutAfter must be a number of bytes >= 0 (Infinity: never), got ${cutAfter}`);
    let proxy!: CuttingProxy;
    const server = createServer({ allowHalfOpen: true }, (inbound) => proxy.pass(inbound, target, cutAfter));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    proxy = new CuttingProxy(server, (server.address() as { port: number }).port);
    return proxy;
  }

  /** Bytes that crossed, both ways, over every connection. */
  get bytes(): number {
    return this.crossed;
  }

  /** Connections cut so far (0 or 1). */
  get cuts(): number {
    return this.cut;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private pass(inbound: Socket, target: number, cutAfter: number): void {
    const first = this.connections++ === 0;
    const outbound = createConnection({ host: "127.0.0.1", port: target, allowHalfOpen: true });
    let crossed = 0;
    for (const s of [inbound, outbound]) {
      this.sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => this.sockets.delete(s));
    }
    const pipe = (from: Socket, to: Socket): void => {
      from.on("data", (chunk: Buffer) => {
        if (first && this.cut === 0 && crossed + chunk.length > cutAfter) {
          this.cut++;
          to.write(chunk.subarray(0, cutAfter - crossed), () => {
            inbound.destroy();
            outbound.destroy();
          });
          from.pause();
          return;
        }
        crossed += chunk.length;
        this.crossed += chunk.length;
        to.write(chunk);
      });
      from.on("end", () => to.end());
      from.on("close", () => to.destroy());
    };
    pipe(inbound, outbound);
    pipe(outbound, inbound);
  }
}
