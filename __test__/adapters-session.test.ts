import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import session from 'express-session';
import request from 'supertest';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { RedisSessionStore, type StoredSession } from 'nestjs-redis-native/adapters';
import { prefixedClients, sleep, stopSharedRedis } from './support/redis-server';

declare module 'express-session' {
  interface SessionData {
    passport: { user: string };
    views: number;
  }
}

let client: RedisClient;
let redis: RedisService;
let closeClients: () => Promise<void>;
let n = 0;
/** An express-session id no other test uses. */
const sid = () => `sid-${++n}`;
const isInvalid = (e: { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT';

before(async () => {
  ({ client, redis, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

/** A session as express-session hands it to a store: a cookie expiring in `ms`, and data. */
function sessionFor(ms: number | null, data: Record<string, unknown> = {}): StoredSession {
  const expires = ms === null ? null : new Date(Date.now() + ms);
  return { cookie: { originalMaxAge: ms, expires, httpOnly: true, path: '/' } as StoredSession['cookie'], ...data };
}

/** A login app: express-session on `store`, passport-style user in `session.passport.user`. */
function loginApp(store: RedisSessionStore, maxAge = 60_000) {
  const app = express();
  app.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false, cookie: { maxAge } }));
  app.post('/login/:user', (req, res, next) => {
    // a new session id at login (no session fixation), as passport does
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.passport = { user: req.params.user };
      req.session.save((saveErr) => (saveErr ? next(saveErr) : res.json({ sid: req.sessionID })));
    });
  });
  app.get('/me', (req, res) => {
    if (!req.session.passport) return res.status(401).json({ error: 'not logged in' });
    req.session.views = (req.session.views ?? 0) + 1;
    res.json({ user: req.session.passport.user, views: req.session.views, sid: req.sessionID });
  });
  app.get('/whoami', (req, res) => {
    // reads the session without changing it: express-session then only touches it
    if (!req.session.passport) return res.status(401).json({ error: 'not logged in' });
    res.json({ user: req.session.passport.user });
  });
  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })));
  });
  return app;
}

describe('RedisSessionStore under express-session', () => {
  let store: RedisSessionStore;
  before(() => {
    store = new RedisSessionStore(client, { prefix: 'web:' });
  });

  it('login sets a cookie, and the session is read back on the next requests', async () => {
    const agent = request.agent(loginApp(store));
    const login = await agent.post('/login/ada').expect(200);
    assert.match(String(login.headers['set-cookie']), /connect\.sid=/);
    assert.deepEqual((await agent.get('/me').expect(200)).body, { user: 'ada', views: 1, sid: login.body.sid });
    assert.equal((await agent.get('/me').expect(200)).body.views, 2);
  });

  it('a logged-in session shows up in SessionService under its user, who is online', async () => {
    const agent = request.agent(loginApp(store));
    const { sid } = (await agent.post('/login/grace').expect(200)).body;
    const listed = await store.sessions.listUserSessions('grace');
    assert.deepEqual(
      listed.map((s) => s.sessionId),
      [`web:${sid}`],
    );
    assert.equal(await store.sessions.isUserOnline('grace'), true);
  });

  it('logout destroys the session in Redis and under its user', async () => {
    const agent = request.agent(loginApp(store));
    const { sid } = (await agent.post('/login/linus').expect(200)).body;
    await agent.post('/logout').expect(200);
    await agent.get('/me').expect(401);
    assert.equal(await store.get(sid), null);
    assert.deepEqual(await store.sessions.listUserSessions('linus'), []);
  });

  it('req.session.regenerate replaces the session id: the old one is gone', async () => {
    const agent = request.agent(loginApp(store));
    const first = (await agent.post('/login/barbara').expect(200)).body.sid;
    const second = (await agent.post('/login/barbara').expect(200)).body.sid;
    assert.notEqual(first, second);
    assert.equal(await store.get(first), null);
    assert.equal((await agent.get('/me').expect(200)).body.sid, second);
  });

  it('SessionService.destroyUserSessions logs the user out on every device', async () => {
    const app = loginApp(store);
    const phone = request.agent(app);
    const laptop = request.agent(app);
    await phone.post('/login/ken').expect(200);
    await laptop.post('/login/ken').expect(200);
    assert.equal(await store.sessions.destroyUserSessions('ken'), 2);
    await phone.get('/me').expect(401);
    await laptop.get('/me').expect(401);
  });

  it('a session expires in Redis when its cookie does', async () => {
    const app = loginApp(store, 1_000);
    const login = await request(app).post('/login/dennis').expect(200);
    // the cookie is sent by hand: a cookie jar would drop it by itself once expired
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    await request(app).get('/whoami').set('Cookie', cookie).expect(200);
    await sleep(1_300);
    await request(app).get('/whoami').set('Cookie', cookie).expect(401);
    assert.equal(await store.get(login.body.sid), null);
  });

  it('each request pushes the expiry back (touch), so an active session stays', async () => {
    const app = loginApp(store, 1_000);
    const login = await request(app).post('/login/margaret').expect(200);
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    for (let i = 0; i < 4; i++) {
      await sleep(600);
      await request(app).get('/whoami').set('Cookie', cookie).expect(200);
    }
  });
});

describe('RedisSessionStore, the store contract', () => {
  it('set then get returns the session; an unknown id gives null', async () => {
    const store = new RedisSessionStore(client, { prefix: 'contract:' });
    const id = sid();
    const saved = sessionFor(60_000, { cart: [1, 2], user: { name: 'Ada' } });
    await store.set(id, saved);
    assert.deepEqual(await store.get(id), JSON.parse(JSON.stringify(saved)));
    assert.equal(await store.get(sid()), null);
  });

  it('answers through callbacks as well as Promises', async () => {
    const store = new RedisSessionStore(client, { prefix: 'callbacks:' });
    const id = sid();
    await new Promise<void>((resolve, reject) =>
      store.set(id, sessionFor(60_000, { a: 1 }), (err) => (err ? reject(err) : resolve())),
    );
    const got = await new Promise((resolve, reject) => store.get(id, (err, s) => (err ? reject(err) : resolve(s))));
    assert.equal((got as { a: number }).a, 1);
    const length = await new Promise((resolve, reject) => store.length((err, l) => (err ? reject(err) : resolve(l))));
    assert.equal(length, 1);
  });

  it('the ttl is the cookie’s remaining life, else the ttl option (seconds), or a function of the session', async () => {
    const fromCookie = new RedisSessionStore(client, { prefix: 'ttl-cookie:' });
    const fromOption = new RedisSessionStore(client, { prefix: 'ttl-option:', ttl: 120 });
    const fromFunction = new RedisSessionStore(client, { prefix: 'ttl-fn:', ttl: (s) => (s.vip ? 300 : 30) });
    const ttlOf = async (store: RedisSessionStore, id: string) =>
      ((await store.sessions.getSessionInfo(store.sessionId(id)))!.expiresAt - Date.now()) / 1000;
    const [a, b, c] = [sid(), sid(), sid()];
    await fromCookie.set(a, sessionFor(45_000));
    await fromOption.set(b, sessionFor(null));
    await fromFunction.set(c, sessionFor(45_000, { vip: true }));
    assert.ok(Math.abs((await ttlOf(fromCookie, a)) - 45) < 2);
    assert.ok(Math.abs((await ttlOf(fromOption, b)) - 120) < 2);
    assert.ok(Math.abs((await ttlOf(fromFunction, c)) - 300) < 2);
  });

  it('saving a session whose cookie already expired destroys it', async () => {
    const store = new RedisSessionStore(client, { prefix: 'expired:' });
    const id = sid();
    await store.set(id, sessionFor(60_000));
    await store.set(id, sessionFor(-1_000));
    assert.equal(await store.get(id), null);
  });

  it('touch pushes the expiry back as the cookie says; with disableTouch it does nothing', async () => {
    const touching = new RedisSessionStore(client, { prefix: 'touch:' });
    const fixed = new RedisSessionStore(client, { prefix: 'touch:', disableTouch: true });
    const [a, b] = [sid(), sid()];
    await touching.set(a, sessionFor(300));
    await touching.set(b, sessionFor(300));
    await touching.touch(a, sessionFor(60_000));
    await fixed.touch(b, sessionFor(60_000));
    await sleep(1_200); // express-session's ttl is in whole seconds: 300 ms is 1 s
    assert.notEqual(await touching.get(a), null);
    assert.equal(await touching.get(b), null);
  });

  it('ids, all, length and clear see this prefix’s sessions only', async () => {
    const mine = new RedisSessionStore(client, { prefix: 'listing:' });
    const theirs = new RedisSessionStore(client, { prefix: 'listing-other:' });
    const ids = [sid(), sid(), sid()];
    for (const id of ids) await mine.set(id, sessionFor(60_000, { n: id }));
    const kept = sid();
    await theirs.set(kept, sessionFor(60_000));
    assert.deepEqual((await mine.ids()).sort(), [...ids].sort());
    assert.equal(await mine.length(), 3);
    assert.deepEqual((await mine.all()).map((s) => [s.id, s.n]).sort(), ids.map((id) => [id, id]).sort());
    await mine.clear();
    assert.equal(await mine.length(), 0);
    assert.deepEqual(await theirs.ids(), [kept]);
  });

  it('50 concurrent saves of different sessions are all there', async () => {
    const store = new RedisSessionStore(client, { prefix: 'concurrent:' });
    await Promise.all(Array.from({ length: 50 }, () => store.set(sid(), sessionFor(60_000))));
    assert.equal(await store.length(), 50);
  });

  it('a custom serializer writes and reads the session', async () => {
    const serializer = {
      stringify: (s: StoredSession) => Buffer.from(JSON.stringify(s)).toString('base64'),
      parse: (text: string) => JSON.parse(Buffer.from(text, 'base64').toString()) as StoredSession,
    };
    const store = new RedisSessionStore(client, { prefix: 'serializer:', serializer });
    const id = sid();
    await store.set(id, sessionFor(60_000, { secret: 'x' }));
    assert.equal((await store.get(id))?.secret, 'x');
    const stored = await store.sessions.getSession<{ data: string }>(store.sessionId(id));
    assert.doesNotMatch(stored!.data, /secret/);
  });

  it('the userId option tells whose session it is', async () => {
    const store = new RedisSessionStore(client, { prefix: 'owner:', userId: (s) => (s.account as { id: number }).id });
    const id = sid();
    await store.set(id, sessionFor(60_000, { account: { id: 77 } }));
    assert.deepEqual(
      (await store.sessions.listUserSessions('77')).map((s) => s.sessionId),
      [`owner:${id}`],
    );
    // the session itself is returned as it was saved
    assert.equal((await store.get(id))?.userId, undefined);
  });

  it('a session without a user is stored all the same, under no user', async () => {
    const store = new RedisSessionStore(client, { prefix: 'anonymous:' });
    const id = sid();
    await store.set(id, sessionFor(60_000, { passport: { user: { id: 1 } } }));
    assert.notEqual(await store.get(id), null);
    assert.equal((await store.sessions.getSessionInfo(store.sessionId(id)))?.userId, undefined);
  });

  it('refuses bad options with ERR_INVALID_ARGUMENT', () => {
    for (const bad of [
      null,
      { ttl: 0 },
      { ttl: '60' },
      { prefix: 1 },
      { serializer: {} },
      { userId: 'id' },
      { disableTTL: true },
      { scanCount: 100 },
    ]) {
      assert.throws(() => new RedisSessionStore(client, bad as never), isInvalid, JSON.stringify(bad));
    }
  });

  it('refuses an empty session id with ERR_INVALID_ARGUMENT', async () => {
    const store = new RedisSessionStore(client, { prefix: '' });
    await assert.rejects(store.get(''), isInvalid);
  });

  it('keeps the sessions under the client’s keyPrefix', async () => {
    const store = new RedisSessionStore(client, { prefix: 'keys:' });
    const id = sid();
    await store.set(id, sessionFor(60_000));
    assert.deepEqual(await redis.keys(`session:{keys:*`), [`session:{keys:${id}}`]);
  });
});
