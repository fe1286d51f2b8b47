// The side tasks of one end of a migration (a frame receiver, a request
// server, the program at the destination): each runs on its own, and the
// first to fail fails the migration.

export class Tasks {
  private failWith!: (error: unknown) => void;
  /** Rejects with the first side task's failure; never resolves. */
  readonly failed: Promise<never>;

  constructor() {
    this.failed = new Promise<never>((_, reject) => (this.failWith = reject));
    this.failed.catch(() => {});
  }

  /** Runs `task` on the side: its failure fails the migration. */
  spawn(task: Promise<unknown>): void {
    task.catch(this.failWith);
  }
}
