/**
 * Challenge solvers. Contract: `present` makes the challenge answerable and resolves when it is;
 * `cleanup` removes what `present` made, is safe to call after a failed or partial `present`, and
 * must not throw for "already gone". Tokens reach a solver only after checkToken passed.
 */
import type { ChallengeType, Identifier } from '../../protocol/types.js';

export interface ChallengeInput {
  identifier: Identifier;
  wildcard: boolean;
  type: ChallengeType;
  token: string;
  keyAuthorization: string;
}

export interface Solver {
  readonly type: ChallengeType;
  present(ch: ChallengeInput): Promise<void>;
  cleanup(ch: ChallengeInput): Promise<void>;
  /** Releases listeners and the like once the whole issuance is over. */
  close?(): Promise<void>;
}
