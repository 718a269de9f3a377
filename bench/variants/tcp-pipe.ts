// The ceiling for any proxy written in Node on this machine: no HTTP at all,
// each client connection piped byte for byte to one upstream connection of its
// own. What it loses against `direct` is the second hop (a second pair of
// sockets, a second copy through the kernel, a third process on the cores),
// which every proxy pays before it parses a single header. Not a proxy anyone
// should run: it cannot route, answer an error or see a request.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { StartVariant } from './listen.ts';

export const start: StartVariant = async (target) => {
  const { hostname, port } = new URL(target);
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    // pipe() passes each side's end on to the other; a failure on either
    // side ends both, as there is no HTTP here to answer with.
    client.pipe(upstream);
    upstream.pipe(client);
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    // Declared, not observed: there is no node:http client to observe.
    pool: { client: 'node:net, one upstream connection per client connection', keepAlive: true, maxSockets: null, maxFreeSockets: null, note: 'no pool: the client\'s own connections carried through' },
  };
};
