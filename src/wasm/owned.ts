// Objects that hold linear memory until dispose(). The heap hands freed
// memory to the next allocation, so a method that ran on a disposed object
// would read or write another object's memory: every method calls live()
// first and throws DisposedError instead.

import { DisposedError } from "../errors.js";

export abstract class Owned {
  private released = false;

  /** True once dispose() ran. */
  get disposed(): boolean {
    return this.released;
  }

  /** Gives the memory back; every method throws DisposedError afterwards. Calling it again does nothing. */
  dispose(): void {
    if (this.released) return;
    this.released = true;
    this.release();
  }

  /** Throws DisposedError once dispose() ran. */
  protected live(): void {
    if (this.released) throw new DisposedError(this.constructor.name);
  }

  /** Frees what the object holds; called once, by dispose(). */
  protected abstract release(): void;
}
