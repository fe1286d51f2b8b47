// A channel thread driven through shared memory (src/wire/threads.ts): it
// sleeps on its flag, takes the task waiting on its port, encodes it as the
// pool's threads do (worker.ts's encodeTask), leaves the result on the port
// and raises the flag. No event loop turns between tasks: the thread lives
// as long as the process (ChannelThreads keeps it).

import { receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import { encodeTask, ready, type EncodeTask } from "./worker.js";
import { FLAG_DONE, FLAG_POSTED, awaitFlag, type ThreadError } from "./threads.js";

const { flag, port } = workerData as { flag: Int32Array; port: MessagePort };
// A thread whose WebAssembly did not start answers every task with why (the caller is asleep on the flag, not listening for errors).
const broken = await ready.then(
  () => undefined,
  (error: unknown) => error as Error,
);

for (;;) {
  awaitFlag(flag, FLAG_POSTED);
  const task = receiveMessageOnPort(port)?.message as EncodeTask | undefined;
  try {
    if (broken) throw broken;
    if (!task) throw new Error("the flag was raised with no task on the port");
    const result = encodeTask(task);
    port.postMessage({ result }, [result.frame.buffer as ArrayBuffer]);
  } catch (error) {
    const { name, message } = error as Error;
    port.postMessage({ error: { name, message } satisfies ThreadError });
  }
  Atomics.store(flag, 0, FLAG_DONE);
  Atomics.notify(flag, 0);
}
