/**
 * Anvil's public library API. Only what is exported here is public (package.json "exports").
 */
export { AcmeProblem, PROBLEM_TYPES, ACME_ERROR_PREFIX, type ProblemType, type ProblemDocument } from './protocol/problems.js';
export type * from './protocol/types.js';
export { startServer, type RunningServer, type ServerDeps } from './server/main.js';
export { parseServerConfig, loadServerConfig, ServerConfigSchema, type ServerConfig } from './server/config.js';
