// pagemill serve DIR: a static file server for the browser example (or any
// page built on pagemill/browser). It serves the current directory, so a page
// in DIR can import ../../dist/browser.js and fetch build/pagemill.wasm, and
// prints DIR's address. Local use only: it binds to 127.0.0.1 by default.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { extname, join, relative, resolve, sep } from "node:path";
import { once } from "node:events";
import { PagemillError } from "../errors.js";
import { UsageError, intOption, onePositional, parse } from "./args.js";

export const summary = "Serves the current directory over HTTP (for examples/browser: the codecs in a browser) and prints DIR's address.";
export const usage = `usage: pagemill serve DIR [--port N] [--host ADDRESS]

  DIR     a directory under the current one, e.g. examples/browser
  --port  TCP port (default 8080; 0: any free port)
  --host  address to listen on (default 127.0.0.1)`;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".map": "application/json",
};

/** Starts serving `root`; resolves once listening. */
export async function serveDirectory(root: string, port: number, host = "127.0.0.1"): Promise<{ server: Server; origin: string }> {
  const base = resolve(root);
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      let path: string;
      try {
        path = resolve(base, "." + decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
      } catch {
        res.writeHead(400).end("bad path");
        return;
      }
      if (path !== base && !path.startsWith(base + sep)) {
        res.writeHead(403).end("outside the served directory");
        return;
      }
      let info = await stat(path).catch(() => undefined);
      if (info?.isDirectory()) {
        path = join(path, "index.html");
        info = await stat(path).catch(() => undefined);
      }
      if (!info?.isFile()) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream", "content-length": info.size, "cache-control": "no-store" });
      if (req.method === "HEAD") res.end();
      else createReadStream(path).on("error", () => res.destroy()).pipe(res);
    })();
  });
  server.listen(port, host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err as Error))]);
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  return { server, origin: `http://${host.includes(":") ? `[${host}]` : host}:${bound}` };
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { port: { type: "string" }, host: { type: "string" } });
  const given = onePositional(positionals, "DIR");
  const dir = resolve(given);
  const within = relative(process.cwd(), dir);
  if (within.startsWith("..") || resolve(within) !== dir) throw new UsageError(`DIR must be under the current directory (it is served from there), got '${given}'`);
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new PagemillError(`${given}: not a directory`);
  const port = intOption("port", values.port, 8080, 0, 65535);
  const host = typeof values.host === "string" ? values.host : "127.0.0.1";
  const { server, origin } = await serveDirectory(process.cwd(), port, host);
  const path = within.split(sep).map(encodeURIComponent).join("/");
  console.log(`serving ${process.cwd()} at ${origin}/ — open ${origin}/${path ? path + "/" : ""} (Ctrl-C stops)`);
  await once(process, "SIGINT");
  server.close();
  return 0;
}
