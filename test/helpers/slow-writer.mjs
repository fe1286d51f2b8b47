// A program for a guest thread (test/threaded.test.ts): its first step that
// moves the clock writes page 5, then works on for 1.5 s before it ends, as
// a step applying a trace's burst on a busy core does. Loaded by the thread,
// so plain JavaScript over dist/.
import { Guest } from "../../dist/guest/guest.js";

export async function openSlowWriter() {
  const guest = new Guest(64, 4096);
  let now = 0;
  let wrote = false;
  return {
    name: "slow writer",
    guest,
    throttle: 1,
    get now() {
      return now;
    },
    get workTime() {
      return now;
    },
    async advance(to) {
      if (!wrote && to > 0) {
        wrote = true;
        guest.write(5, new Uint8Array(4096).fill(7));
        for (const until = performance.now() + 1500; performance.now() < until; );
      }
      now = to;
      return { ran: 0, writes: 0, overwrites: 0, reads: 0 };
    },
    async close() {},
  };
}
