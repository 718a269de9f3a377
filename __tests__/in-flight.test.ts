import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { InFlightResponses } from '../src/lifecycle/in-flight.ts';

function response(): ServerResponse {
  return new ServerResponse(new IncomingMessage(new Socket()));
}

describe('InFlightResponses', () => {
  it('counts and lists what was added and not removed, newest first', () => {
    const list = new InFlightResponses();
    const [a, b, c] = [response(), response(), response()];
    const removeA = list.add(a);
    const removeB = list.add(b);
    list.add(c);
    expect(list.size).toBe(3);
    expect([...list]).toEqual([c, b, a]);

    removeB();
    expect(list.size).toBe(2);
    expect([...list]).toEqual([c, a]);
    removeA();
    expect([...list]).toEqual([c]);
  });

  it('removes an entry once, however often its remover is called', () => {
    const list = new InFlightResponses();
    const remove = list.add(response());
    const kept = response();
    list.add(kept);
    remove();
    remove();
    expect(list.size).toBe(1);
    expect([...list]).toEqual([kept]);
  });

  it('lets a consumer remove the entry it is at while iterating (a shutdown destroying each)', () => {
    const list = new InFlightResponses();
    const removers = new Map<ServerResponse, () => void>();
    for (let i = 0; i < 4; i++) {
      const res = response();
      removers.set(res, list.add(res));
    }
    const seen: ServerResponse[] = [];
    for (const res of list) {
      seen.push(res);
      removers.get(res)!();
    }
    expect(seen).toHaveLength(4);
    expect(new Set(seen).size).toBe(4);
    expect(list.size).toBe(0);
    expect([...list]).toEqual([]);
  });
});
