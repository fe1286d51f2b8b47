// The content a guest's pages had at the switch-over, kept only for the
// pages a program changes afterwards (copy-on-write): what a source that
// shares one memory with the running program still sends, and what a
// destination checks arrivals against.

import type { Guest } from "../guest/guest.js";

export class SwitchoverView {
  private readonly saved = new Map<number, Uint8Array>();

  constructor(private readonly guest: Guest) {}

  /** The program is about to change page `p`: keep its switch-over content (once). */
  preserve(p: number): void {
    if (!this.saved.has(p)) this.saved.set(p, this.guest.page(p).slice());
  }

  /** Page `p` as it was at switch-over. */
  page(p: number): Uint8Array {
    return this.saved.get(p) ?? this.guest.page(p);
  }

  /** The copy of page `p` is no longer needed (it arrived as sent). */
  release(p: number): void {
    this.saved.delete(p);
  }

  /** The saved copy of page `p`, if the program has changed the page since. */
  changed(p: number): Uint8Array | undefined {
    return this.saved.get(p);
  }

  /** The pages changed since (whose earlier content is kept). */
  pages(): IterableIterator<number> {
    return this.saved.keys();
  }

  get size(): number {
    return this.saved.size;
  }
}
