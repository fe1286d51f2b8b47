// Child Node processes for tests that run the CLI or an example as its users do.
import { spawn } from "node:child_process";

export interface Exited {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node script ...args`; resolves with its exit code and output. `onStderr` sees the stderr so far as it grows. */
export function runNode(script: string, args: string[], onStderr?: (text: string) => void): Promise<Exited> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      onStderr?.(stderr);
    });
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs a listener (receive, an example's destination) on port 0; resolves with the port it prints and its exit. */
export async function listening(script: string, args: string[]): Promise<{ port: number; done: Promise<Exited> }> {
  let ready!: (port: number) => void;
  const port = new Promise<number>((resolve) => (ready = resolve));
  const done = runNode(script, args, (text) => {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
    if (m) ready(Number(m[1]));
  });
  return { port: await Promise.race([port, done.then((r) => Promise.reject(new Error(`listener exited ${r.code}: ${r.stderr}`)))]), done };
}
