// Mutation testing (StrykerJS) of the modules whose every branch a test
// should pin down. Run from the project root (paths here are relative to it):
//
//   npm run mutate                                   every module below
//   MUTATE=src/upstream/retry.ts npm run mutate      one module, against its own test files
//   npm run mutate -- --incremental                  reuse the last run's results where nothing changed
//
// (--incremental is for a quick look while writing tests: it reuses static
// mutants' results, those in module-level constants, even when a new test
// would kill them. Scores for docs/testing.md come from full runs.)
//
// Not part of `npm test`. docs/testing.md has the scores, and each surviving
// mutant explained. Each mutant runs only the tests that executed its code
// (perTest coverage), in two jest workers, in ESM mode as `npm test` runs it,
// and only among the test files that target its module: nearly every test in
// the suite passes through validate.ts and connection.ts, and against the
// whole suite a run takes hours on two cores.

/** Each mutated module, and the test files that target it. */
const TARGETS = {
  'src/request/validate.ts': ['hostile-client'],
  'src/client/connection.ts': ['pipelining', 'lingering-close', 'hostile-client'],
  'src/upstream/retry.ts': ['keep-alive'],
  'src/guards/body-limit.ts': ['body-limit', 'options', 'streaming'],
  'src/lifecycle/*.ts': ['lifecycle', 'in-flight'],
  'src/upstream/connect-retry.ts': ['upstream-health', 'websocket', 'balancer'],
};

const only = process.env.MUTATE;
if (only !== undefined && !(only in TARGETS)) {
  throw new Error(`MUTATE must be one of ${Object.keys(TARGETS).join(', ')}; got ${JSON.stringify(only)}`);
}
const chosen = only === undefined ? Object.keys(TARGETS) : [only];
const testFiles = [...new Set(chosen.flatMap((module) => TARGETS[module]))];
// One report and one incremental record per module (or 'all'), so runs of different modules keep theirs.
const name = only === undefined ? 'all' : only.replace(/^src\//, '').replace(/\W+/g, '-').replace(/-ts$/, '');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'jest',
  testRunnerNodeArgs: ['--experimental-vm-modules'],
  jest: {
    configFile: 'package.json',
    config: { testMatch: testFiles.map((file) => `<rootDir>/__tests__/${file}.test.ts`) },
  },
  coverageAnalysis: 'perTest',
  concurrency: 2,
  mutate: chosen,
  // Not copied into the sandbox: build output and benchmark results play no part in a test.
  ignorePatterns: ['dist', 'coverage', 'bench/results', '*.cpuprofile'],
  // Real sockets and timers: a mutant that hangs is cut this long after the tests' own time.
  timeoutMS: 5_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  incrementalFile: `reports/stryker-incremental-${name}.json`,
  // Scores are read in docs/testing.md, not a gate: a run never fails on a number.
  thresholds: { high: 90, low: 75, break: null },
};
