/**
 * Rendezvous (highest random weight) hashing: each upstream gets a weight
 * from the key and its own identity, and the heaviest usable one wins. When
 * an upstream is taken out, only the keys it won move (each to its own
 * runner-up), and they move back when it returns; nothing else is reshuffled,
 * which a modulo over the list would do.
 */
export function rendezvous(key: string, targets: readonly URL[], usable: (target: URL) => boolean): URL | undefined {
  let best: URL | undefined;
  let bestWeight = -1;
  for (const target of targets) {
    if (!usable(target)) continue;
    const weight = weightOf(key, target.href);
    if (weight > bestWeight) {
      best = target;
      bestWeight = weight;
    }
  }
  return best;
}

/**
 * FNV-1a over key and identity, then murmur3's finaliser: FNV alone leaves
 * keys that differ in their last character (127.0.0.2, 127.0.0.3) with
 * weights too alike to spread. Not a secret: a client that picks its key can
 * pick its upstream, as with nginx's hash.
 */
function weightOf(key: string, identity: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  hash = Math.imul(hash ^ 0x0a, 0x01000193);
  for (let i = 0; i < identity.length; i++) hash = Math.imul(hash ^ identity.charCodeAt(i), 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
