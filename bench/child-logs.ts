// Children write stdout/stderr to one file each in a temp dir (see
// ipc/parent.ts). Afterwards only a summary survives: which child said
// something, how much, and its first line.
import { closeSync, openSync, readdirSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface ChildOutput {
  child: string;
  lines: number;
  firstLine: string;
}

const READ_CHUNK = 1024 * 1024;

/** Counts lines by streaming through the file: an error-path log can be tens of MB. */
function scan(path: string): ChildOutput | undefined {
  const size = statSync(path).size;
  if (size === 0) return undefined;
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(Math.min(READ_CHUNK, size));
    let lines = 0;
    let firstLine: string | undefined;
    for (let offset = 0; offset < size; ) {
      const read = readSync(fd, buffer, 0, buffer.length, offset);
      if (read === 0) break;
      const chunk = buffer.subarray(0, read);
      firstLine ??= chunk.toString('utf8', 0, Math.min(read, 4096)).split('\n')[0];
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
      offset += read;
    }
    return { child: '', lines: Math.max(lines, 1), firstLine: firstLine ?? '' };
  } finally {
    closeSync(fd);
  }
}

export function summarizeChildLogs(dir: string): ChildOutput[] {
  return readdirSync(dir)
    .sort()
    .flatMap((file) => {
      const found = scan(join(dir, file));
      return found ? [{ ...found, child: file.replace(/\.log$/, '') }] : [];
    });
}

/** Removes the run's temp dir: the logs and anything else kept beside them. */
export function removeChildLogs(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
