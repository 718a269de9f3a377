import net from 'node:net';

/** A loopback port that refuses connections, for the error path. Checked, not assumed. */
export async function closedPort(): Promise<number> {
  const port = await new Promise<number>((resolve, reject) => {
    const server = net.createServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      reject(new Error(`port ${port} unexpectedly accepts connections`));
    });
    socket.once('error', () => resolve());
  });
  return port;
}
