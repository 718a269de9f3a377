import request from 'supertest';
import { startDemo, type Demo } from '../docs/demo/demo.ts';
import { closedPort } from './helpers/servers.ts';

// README promises these three outcomes from `npm start`; same code, ephemeral ports.
describe('the README demo', () => {
  let demo: Demo;
  let stoppedPort: number;
  beforeAll(async () => {
    stoppedPort = await closedPort();
    demo = await startDemo({ port: 0, upstreamPort: 0, stoppedPort, quiet: true });
  });
  afterAll(() => demo.close());

  const base = () => `http://127.0.0.1:${demo.port}`;

  it('passes the app through, including its own 404', async () => {
    const hello = await request(base()).get('/preview/api/hello').set('Host', `${demo.upstreamPort}-demo.localhost`);
    expect(hello.status).toBe(200);
    expect(hello.text).toBe('{"hello":"world"}\n');
    const missing = await request(base()).get('/preview/missing').set('Host', `${demo.upstreamPort}-demo.localhost`);
    expect(missing.status).toBe(404);
    expect(missing.text).toBe('{"error": "not found"}\n');
    expect(missing.headers['proxy-status']).toBeUndefined();
  });

  it('answers an unknown host with a proxy 404 and a stopped app with a 502', async () => {
    const unknown = await request(base()).get('/preview/').set('Host', '9999-nobody.localhost');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['proxy-status']).toBe('proxy; error=destination_not_found');
    const stopped = await request(base()).get('/preview/').set('Host', `${stoppedPort}-demo.localhost`);
    expect(stopped.status).toBe(502);
    expect(stopped.text).toBe('Bad Gateway');
    expect(stopped.headers['proxy-status']).toBe('proxy; error=connection_refused');
  });
});
