/**
 * A response head as field lines (`[name, value, name, value, ...]`, names
 * in the case they came in), the form the relay hands to writeHead.
 */

/** The lines whose field name, lower-cased, is not in `names`: every repeat, any case. */
export function withoutFields(lines: readonly string[], names: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i += 2) if (!names.has(lines[i]!.toLowerCase())) kept.push(lines[i]!, lines[i + 1]!);
  return kept;
}

/** A Transfer-Encoding of chunked alone: framing, no coding applied to the bytes. */
export function isChunkedOnly(value: string): boolean {
  return value.trim().toLowerCase() === 'chunked';
}
