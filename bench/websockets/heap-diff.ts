// What a set of open WebSockets keeps, from two heap snapshots of one proxy
// (bench/websockets.ts --snapshots DIR writes them):
//   node bench/websockets/heap-diff.ts before.heapsnapshot open.heapsnapshot 500
// Groups every node by kind and name (closures also by where they were
// defined), subtracts the two snapshots and prints the groups that grew, per
// WebSocket: how many objects and how many bytes of their own each one adds.
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]]; location_fields: string[] } };
  nodes: number[];
  edges: number[];
  strings: string[];
  locations: number[];
}

/**
 * A better name for two kinds of node: the file each closure was defined in
 * (closure -> `shared`, its SharedFunctionInfo -> `script`, whose node name is
 * the script's URL; Node's own modules keep their `node:` names, ours become
 * paths), and the keys of each plain object.
 */
function describeNodes(data: Snapshot): Map<number, string> {
  const { node_fields, node_types, edge_fields, edge_types } = data.snapshot.meta;
  const width = node_fields.length;
  const edgeWidth = edge_fields.length;
  const [typeAt, nameAt, edgeCountAt] = [node_fields.indexOf('type'), node_fields.indexOf('name'), node_fields.indexOf('edge_count')];
  const firstEdge = new Map<number, number>();
  for (let i = 0, edge = 0; i < data.nodes.length; i += width) {
    firstEdge.set(i, edge);
    edge += data.nodes[i + edgeCountAt]! * edgeWidth;
  }
  const named = (node: number, edgeName: string): number | undefined => {
    const from = firstEdge.get(node)!;
    for (let e = from; e < from + data.nodes[node + edgeCountAt]! * edgeWidth; e += edgeWidth) {
      const type = edge_types[0][data.edges[e]!];
      if (type !== 'element' && type !== 'hidden' && data.strings[data.edges[e + 1]!] === edgeName) return data.edges[e + 2];
    }
    return undefined;
  };
  const files = new Map<number, string>();
  for (let i = 0; i < data.nodes.length; i += width) {
    if (node_types[0][data.nodes[i + typeAt]!] === 'object' && data.strings[data.nodes[i + nameAt]!] === 'Object') {
      // A plain object is named by its keys: {client, upstream} says more than "Object".
      const from = firstEdge.get(i)!;
      const keys: string[] = [];
      for (let e = from; e < from + data.nodes[i + edgeCountAt]! * edgeWidth; e += edgeWidth) {
        if (edge_types[0][data.edges[e]!] === 'property' && data.strings[data.edges[e + 1]!] !== '__proto__') keys.push(data.strings[data.edges[e + 1]!]!);
      }
      files.set(i, `{${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', ...' : ''}}`);
      continue;
    }
    if (node_types[0][data.nodes[i + typeAt]!] !== 'closure') continue;
    const shared = named(i, 'shared');
    const script = shared === undefined ? undefined : named(shared, 'script');
    if (script !== undefined) files.set(i, data.strings[data.nodes[script + nameAt]!]!.replace(/^file:\/\/.*?\/(src|bench|node_modules)\//, '$1/'));
  }
  return files;
}

interface Group {
  count: number;
  bytes: number;
}

/** kind:name[@script:line] -> count and self size of the nodes in that group. */
function groups(file: string): Map<string, Group> {
  const data = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  // Where each closure was defined: locations are [node index, script id, line, column].
  const locationWidth = data.snapshot.meta.location_fields.length;
  const files = describeNodes(data);
  const where = new Map<number, string>();
  for (let i = 0; i < data.locations.length; i += locationWidth) {
    const node = data.locations[i]!;
    where.set(node, `${files.get(node) ?? `script ${data.locations[i + 1]}`}:${data.locations[i + 2]! + 1}`);
  }
  const result = new Map<string, Group>();
  for (let i = 0; i < data.nodes.length; i += width) {
    const type = types[data.nodes[i + typeAt]!]!;
    let name = data.strings[data.nodes[i + nameAt]!]!;
    // Strings and numbers are grouped by kind only: their names are their values.
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'number') name = '';
    if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const location = type === 'closure' ? where.get(i) : undefined;
    const keys = type === 'object' && name === 'Object' ? files.get(i) : undefined;
    const key = `${type}:${name}${location ? ` @${location}` : ''}${keys ? ` ${keys}` : ''}`;
    const group = result.get(key) ?? { count: 0, bytes: 0 };
    group.count++;
    group.bytes += data.nodes[i + sizeAt]!;
    result.set(key, group);
  }
  return result;
}

const [beforeFile, afterFile, countArg, limitArg] = process.argv.slice(2);
if (!beforeFile || !afterFile || !countArg) {
  console.error('usage: heap-diff.ts <before.heapsnapshot> <open.heapsnapshot> <open WebSockets> [rows]');
  process.exit(2);
}
const count = Number(countArg);
const before = groups(beforeFile);
const after = groups(afterFile);
const rows = [...after]
  .map(([key, { count: n, bytes }]) => ({ key, count: (n - (before.get(key)?.count ?? 0)) / count, bytes: (bytes - (before.get(key)?.bytes ?? 0)) / count }))
  .filter((row) => row.bytes > 1)
  .sort((a, b) => b.bytes - a.bytes);
const total = rows.reduce((sum, row) => sum + row.bytes, 0);
console.log(`grown per WebSocket: ${total.toFixed(0)} bytes in the groups below (self sizes)`);
console.log('bytes/WS  objects/WS  kind:name');
for (const row of rows.slice(0, Number(limitArg ?? 60))) console.log(`${row.bytes.toFixed(0).padStart(8)}  ${row.count.toFixed(2).padStart(10)}  ${row.key}`);
