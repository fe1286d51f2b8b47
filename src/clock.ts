// Time as strategies see it. A strategy is an ordinary async function that
// reads `now()` and awaits `sleep`/`waitUntil`; it never learns whether the
// seconds are real or simulated.
//
// VirtualClock is a discrete-event simulator built on the JavaScript event
// loop: every task that waits on the clock parks a timer in a heap; `run()`
// lets all runnable tasks go (one macrotask turn drains every microtask),
// then jumps time to the earliest timer and wakes it. Ties wake in the order
// they were scheduled, so a run is deterministic: the same inputs give the
// same event order and the same timestamps, on any machine.

import { PagemillError } from "./errors.js";

export interface Clock {
  /**
   * True when time is simulated: work that takes real CPU time is charged
   * to it from the cost model. False on a real clock, where the work itself
   * takes the time.
   */
  readonly virtual: boolean;
  /** Seconds since the clock's origin. */
  now(): number;
  /** Resolves once `now() >= t` (at once when t is already past). */
  waitUntil(t: number): Promise<void>;
  /** Resolves after `seconds` (≥ 0). */
  sleep(seconds: number): Promise<void>;
  /**
   * Runs `main` (and whatever tasks it starts) to completion on this clock.
   * Every strategy is started through here, so a virtual clock can drive time.
   */
  run<T>(main: () => Promise<T>): Promise<T>;
  /**
   * Awaits work that takes no time on this clock but real time to finish
   * (reading a trace file behind a simulated guest). A virtual clock does not
   * move while such work is pending, so file I/O never reorders events.
   */
  settle<T>(work: Promise<T>): Promise<T>;
}

/** The clock stalled: tasks are waiting but no timer can ever wake them. */
export class DeadlockError extends PagemillError {}

/** A run on a VirtualClock would pass the time limit the clock was given. */
export class TimeLimitError extends PagemillError {}

interface Timer {
  readonly t: number;
  readonly seq: number;
  readonly wake: () => void;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function checkTime(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${value}`);
}

/** Simulated time: jumps from event to event; a run of hours takes milliseconds. */
export class VirtualClock implements Clock {
  readonly virtual = true;
  /** `limit`: seconds a run may reach; a timer due later ends the run with a TimeLimitError. */
  constructor(readonly limit = Infinity) {
    if (!(limit > 0)) throw new RangeError(`limit must be a number of seconds above 0, got ${limit}`);
  }
  private current = 0;
  private seq = 0;
  private readonly heap: Timer[] = [];
  private running = false;
  private outside = 0;
  private outsideDone: (() => void) | undefined;
  /** Events woken so far (for tests and progress). */
  events = 0;

  now(): number {
    return this.current;
  }

  sleep(seconds: number): Promise<void> {
    checkTime("seconds", seconds);
    return this.waitUntil(this.current + seconds);
  }

  waitUntil(t: number): Promise<void> {
    if (Number.isNaN(t)) throw new RangeError("t must be a number, got NaN");
    return new Promise((wake) => this.push({ t: Math.max(t, this.current), seq: this.seq++, wake }));
  }

  async settle<T>(work: Promise<T>): Promise<T> {
    this.outside++;
    try {
      return await work;
    } finally {
      if (--this.outside === 0) this.outsideDone?.();
    }
  }

  async run<T>(main: () => Promise<T>): Promise<T> {
    if (this.running) throw new PagemillError("VirtualClock.run is already running");
    this.running = true;
    let settled = false;
    let value: T | undefined;
    let failure: { error: unknown } | undefined;
    main().then(
      (v) => {
        settled = true;
        value = v;
      },
      (error: unknown) => {
        settled = true;
        failure = { error };
      },
    );
    try {
      for (;;) {
        // One macrotask turn: every task that can run without time passing does.
        await nextTurn();
        if (this.outside > 0) {
          await new Promise<void>((resolve) => (this.outsideDone = resolve));
          this.outsideDone = undefined;
          continue;
        }
        if (settled) break;
        const timer = this.pop();
        if (!timer) throw new DeadlockError(`virtual clock stalled at t=${this.current}s: tasks wait but no timer is pending`);
        if (timer.t > this.limit) throw new TimeLimitError(`the run is still going at the time limit of ${this.limit} s of virtual time (next event at ${timer.t.toPrecision(6)} s)`);
        this.current = timer.t;
        this.events++;
        timer.wake();
        // Wake every other timer due at the same instant, in scheduling order.
        while (this.heap.length && this.heap[0]!.t === this.current) {
          this.events++;
          this.pop()!.wake();
        }
      }
    } finally {
      this.running = false;
      // Timers left by background tasks of a finished run are dropped.
      this.heap.length = 0;
    }
    if (failure) throw failure.error;
    return value as T;
  }

  private less(a: Timer, b: Timer): boolean {
    return a.t < b.t || (a.t === b.t && a.seq < b.seq);
  }

  private push(timer: Timer): void {
    const h = this.heap;
    h.push(timer);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Timer | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Wall-clock time (performance.now), for migrations between real processes. */
/**
 * Seconds since the epoch to the microsecond, for times two processes on one
 * machine compare (a downtime measured from the source's stop to the
 * destination's resume). Date.now() counts whole milliseconds: up to 2 ms
 * off on a downtime of 20-30 ms.
 */
export function wallTime(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

export class RealClock implements Clock {
  readonly virtual = false;
  private readonly origin = performance.now();

  now(): number {
    return (performance.now() - this.origin) / 1000;
  }

  sleep(seconds: number): Promise<void> {
    checkTime("seconds", seconds);
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  waitUntil(t: number): Promise<void> {
    return this.sleep(Math.max(0, t - this.now()));
  }

  run<T>(main: () => Promise<T>): Promise<T> {
    return main();
  }

  settle<T>(work: Promise<T>): Promise<T> {
    return work;
  }
}
