import type { Args } from '../protocol/args.js';
import type { Command } from './context.js';

export interface QuitRequest {
  readonly kind: 'quit';
}

export default {
  names: ['QUIT'],
  access: 'public',
  requires: 'no arguments',
  parse(args: Args): QuitRequest {
    args.end();
    return { kind: 'quit' };
  },
  execute(): 'close' {
    return 'close';
  },
} as const satisfies Command<QuitRequest>;
