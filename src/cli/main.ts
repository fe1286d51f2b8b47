// pagemill's command line: `pagemill COMMAND [ARGS]`. Each command lives in
// its own module exporting `summary`, `usage` and `run(args)`, loaded only
// when called.

import { init } from "../wasm/module.js";
import { UsageError, type Command } from "./args.js";

const commands: Record<string, () => Promise<Command>> = {
  migrate: () => import("./migrate.js"),
  compare: () => import("./compare.js"),
  scan: () => import("./scan.js"),
  inspect: () => import("./inspect.js"),
  profile: () => import("./profile.js"),
  plan: () => import("./plan.js"),
  record: () => import("./record.js"),
  pack: () => import("./pack.js"),
  unpack: () => import("./unpack.js"),
  hash: () => import("./hash.js"),
  bench: () => import("./bench.js"),
  serve: () => import("./serve.js"),
  send: () => import("./send.js"),
  receive: () => import("./receive.js"),
};

async function help(): Promise<string> {
  const lines = ["usage: pagemill COMMAND [options]", "", "commands:"];
  for (const [name, load] of Object.entries(commands)) lines.push(`  ${name.padEnd(8)} ${(await load()).summary}`);
  lines.push("", "`pagemill COMMAND --help` for a command's options.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(await help());
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    console.error(`pagemill: unknown command '${name}'\n\n${await help()}`);
    return 2;
  }
  const command = await load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`${command.usage}\n\n${command.summary}`);
    return 0;
  }
  try {
    await init();
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`pagemill ${name}: ${err.message}\n\n${command.usage}`);
      return 2;
    }
    console.error(`pagemill ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
