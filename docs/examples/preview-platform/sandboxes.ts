// The platform's sandbox records, standing in for its database: every lookup
// costs `latencyMs` (the reason for the proxy's route cache), and each
// sandbox's app is a real server on 127.0.0.1. A change of state is announced
// ('changed') so the platform can drop what its route cache holds for it.
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSandboxApp, type Received, type SandboxApp } from './sandbox-app.ts';

/** `booting`: woken, its app not listening yet. */
export type SandboxState = 'running' | 'booting' | 'stopped';

export interface Sandbox {
  readonly id: string;
  readonly state: SandboxState;
  /** Where its app listens (or will, once booted): kept while stopped, as a VM keeps its address. */
  readonly origin: string;
  /** Date.now() of the last activity the proxy reported, or of its (re)start. */
  readonly lastActiveAt: number;
}

export interface SandboxStoreOptions {
  /** ms each lookup takes, as a query to a database or an API would. */
  latencyMs: number;
  /** ms from wake() until its app listens. */
  bootMs: number;
}

interface SandboxRecord {
  id: string;
  state: SandboxState;
  port: number;
  lastActiveAt: number;
  app?: SandboxApp;
  booting?: NodeJS.Timeout;
  received: Received[];
}

export class SandboxStore extends EventEmitter<{ changed: [id: string] }> {
  readonly #records = new Map<string, SandboxRecord>();
  readonly #options: SandboxStoreOptions;
  #closed = false;
  /** How many times find() ran: what the route cache saves. */
  lookups = 0;

  constructor(options: SandboxStoreOptions) {
    super();
    this.#options = options;
  }

  /** A new sandbox, running, its app on a free port. */
  async create(id: string): Promise<Sandbox> {
    if (this.#records.has(id)) throw new Error(`sandbox ${id} exists`);
    const received: Received[] = [];
    const app = await startSandboxApp(id, 0, received);
    const record: SandboxRecord = { id, state: 'running', port: app.port, lastActiveAt: Date.now(), app, received };
    this.#records.set(id, record);
    return this.#view(record);
  }

  /** The lookup the proxy's resolver makes; `signal` cancels it when nobody waits for the answer any more. */
  async find(id: string, signal?: AbortSignal): Promise<Sandbox | undefined> {
    this.lookups++;
    await sleep(this.#options.latencyMs, undefined, { signal });
    const record = this.#records.get(id);
    return record && this.#view(record);
  }

  list(): Sandbox[] {
    return [...this.#records.values()].map((record) => this.#view(record));
  }

  /** What the sandbox's app has received, for the curious (and the tests). */
  received(id: string): readonly Received[] {
    return this.#records.get(id)?.received ?? [];
  }

  touch(id: string): void {
    const record = this.#records.get(id);
    if (record) record.lastActiveAt = Date.now();
  }

  async stop(id: string): Promise<void> {
    const record = this.#records.get(id);
    if (!record || record.state === 'stopped') return;
    clearTimeout(record.booting);
    const { app } = record;
    record.state = 'stopped';
    record.app = undefined;
    // Announced before the app is gone: from now on requests are told it is stopped.
    this.emit('changed', id);
    await app?.close();
  }

  /** Starts a stopped sandbox: `booting` at once, its app listening `bootMs` later. */
  wake(id: string): void {
    const record = this.#records.get(id);
    if (record?.state !== 'stopped') return;
    record.state = 'booting';
    this.emit('changed', id);
    record.booting = setTimeout(async () => {
      record.booting = undefined;
      try {
        const app = await startSandboxApp(id, record.port, record.received);
        if (this.#closed) return void (await app.close());
        record.app = app;
        record.state = 'running';
        record.lastActiveAt = Date.now();
      } catch {
        // Its port was taken meanwhile. A real platform would place it elsewhere (and announce the move).
        record.state = 'stopped';
      }
      this.emit('changed', id);
    }, this.#options.bootMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const record of this.#records.values()) clearTimeout(record.booting);
    await Promise.all([...this.#records.values()].map((record) => record.app?.close()));
    this.#records.clear();
  }

  #view(record: SandboxRecord): Sandbox {
    return { id: record.id, state: record.state, origin: `http://127.0.0.1:${record.port}`, lastActiveAt: record.lastActiveAt };
  }
}
