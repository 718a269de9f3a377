// `node docs/examples/preview-platform/main.ts` (Node >= 22.18, or
// `npm run example:preview-platform` on the project's own Node 24): the
// platform on 127.0.0.1:8080 with two sandboxes, and how to try it.
import { randomBytes } from 'node:crypto';
import { startPreviewPlatform } from './platform.ts';

const token = process.env.PREVIEW_TOKEN ?? randomBytes(16).toString('base64url');
const platform = await startPreviewPlatform({
  port: Number(process.env.PORT ?? 8080),
  tokens: { [token]: 'ada' },
  sandboxes: ['alpha', 'beta'],
  // Short enough to watch: alpha stops after a minute without traffic.
  activityIntervalMs: 10_000,
  idleAfterMs: 60_000,
  idleCheckMs: 5_000,
});

const base = `http://127.0.0.1:${platform.port}`;
const alpha = platform.previewHost('alpha');
console.log(`preview platform on ${base}; sandboxes alpha and beta; token for user "ada": ${token}

  curl -i -H 'Host: ${alpha}' ${base}/                                  # 401: no token
  curl -i -H 'Host: ${alpha}' -H 'Authorization: Bearer ${token}' ${base}/
      # the sandbox echoes what it got: no authorization, x-preview-user: ada
  curl -i -H 'Host: ${alpha}' -H 'Cookie: __Host-preview_session=${token}; theme=dark' '${base}/page?preview_token=${token}&tab=2'
      # it gets cookie "theme=dark" and url "/page?tab=2"
  curl -i -H 'Host: ${platform.previewHost('nobody')}' -H 'Authorization: Bearer ${token}' ${base}/   # 404: no such sandbox
  curl -s ${base}/metrics | grep honest_proxy_requests_total

  After a minute without traffic alpha is stopped: the next request gets 503 with
  Retry-After and wakes it, and one sent while it boots waits for it (startupGrace).
  In a browser: http://${alpha}:${platform.port}/?preview_token=${token}, and in its console
  new WebSocket('ws://${alpha}:${platform.port}/?preview_token=${token}').onmessage = (e) => console.log(e.data)
Ctrl-C stops it.`);

const stop = () => void platform.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
