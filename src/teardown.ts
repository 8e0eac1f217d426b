/** A step of a Teardown that threw or rejected. */
export interface StepFailure {
  readonly name: string;
  readonly err: unknown;
}

interface Step {
  readonly name: string;
  readonly run: () => unknown;
}

/**
 * What to undo, as one ordered list: whatever is opened defers the step that closes it, and `run()` runs
 * the steps in reverse, the last deferred first. A node's stop() runs it, and so does a start-up that
 * fails halfway, so what it had opened (a port, LMDB, the broker) is closed either way, in the same order.
 */
export class Teardown {
  private readonly steps: Step[] = [];
  private running: Promise<readonly StepFailure[]> | undefined;
  private started = false;

  /** Whether run() was called, from before its first step on (/health and /ready say 'stopping'). */
  get stopping(): boolean {
    return this.started;
  }

  /** Adds a step (a function, or one that returns a promise); it will run before every step deferred earlier. */
  defer(name: string, run: () => unknown): void {
    this.steps.push({ name, run });
  }

  /**
   * Runs the steps, the last deferred first, each once the one before it has settled, and resolves with
   * the steps that failed. A step that fails does not keep the ones after it from running: a port that
   * would not close must not leave LMDB open. Runs once; later calls get the first call's result.
   */
  run(): Promise<readonly StepFailure[]> {
    this.running ??= this.runSteps();
    return this.running;
  }

  /** The first steps run at once, before run() returns, up to the first that waits. */
  private async runSteps(): Promise<readonly StepFailure[]> {
    this.started = true;
    const failures: StepFailure[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.run();
      } catch (err) {
        failures.push({ name: step.name, err });
      }
    }
    return failures;
  }
}
