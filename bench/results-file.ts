// Where every bench writes its results, and how: a reader never sees half a file.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';

const RESULTS_DIR = new URL('./results/', import.meta.url);

/** Writes bench/results/<name> through a temporary file and a rename; returns its path. */
export function writeResult(name: string, text: string): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = new URL(name, RESULTS_DIR);
  const tmp = new URL(`${name}.tmp`, RESULTS_DIR);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
  return path.pathname;
}
