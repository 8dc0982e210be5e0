/**
 * Step runner for lab scenarios: prints one line per step and remembers
 * whether every step held.
 */
export class ScenarioSteps {
  private failures = 0;

  constructor(private readonly print: (line: string) => void) {}

  get passed(): boolean {
    return this.failures === 0;
  }

  /** Runs a check; a falsy result or a thrown error fails the step. Returns the detail. */
  async check(title: string, run: () => Promise<string | boolean>): Promise<boolean> {
    const startedAtMs = performance.now();
    try {
      const outcome = await run();
      const elapsedMs = Math.round(performance.now() - startedAtMs);
      if (outcome === false) {
        this.fail(title, 'check did not hold');
        return false;
      }
      const detail = typeof outcome === 'string' && outcome !== '' ? `: ${outcome}` : '';
      this.print(`ok    ${title}${detail} (${elapsedMs} ms)`);
      return true;
    } catch (error) {
      this.fail(title, (error as Error).message);
      return false;
    }
  }

  private fail(title: string, reason: string): void {
    this.failures += 1;
    this.print(`FAIL  ${title}: ${reason}`);
  }
}

/** Throws with `message` unless `condition` holds; for use inside a step. */
export function expectThat(condition: boolean, message: string): void {
  if (!condition) {
    throw new Error(message);
  }
}
