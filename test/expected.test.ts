import { afterEach, describe, expect, it } from 'vitest';
import { expected } from '../src/expected.js';

describe('expected', () => {
  const seen: unknown[] = [];
  const listener = (reason: unknown): void => void seen.push(reason);
  afterEach(() => {
    process.off('unhandledRejection', listener);
    seen.length = 0;
  });

  /** Lets Node decide which rejections went unhandled (it does so after the microtasks, then a macrotask). */
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 10));

  it('keeps an unawaited rejection from being unhandled, while the promise still rejects for whoever awaits it', async () => {
    process.on('unhandledRejection', listener);
    const failure = new Error('the peer went away');
    const p = expected(Promise.reject(failure));
    await settle();
    expect(seen).toEqual([]);
    await expect(p).rejects.toBe(failure);
  });

  it('is needed: the same rejection without it is unhandled', async () => {
    process.on('unhandledRejection', listener);
    const failure = new Error('the peer went away');
    const p = Promise.reject(failure);
    await settle();
    expect(seen).toEqual([failure]);
    await expect(p).rejects.toBe(failure); // handled late, so that it does not fail the test run
  });

  it('passes a value through', async () => {
    await expect(expected(Promise.resolve(7))).resolves.toBe(7);
  });
});
