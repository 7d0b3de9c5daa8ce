import { EventEmitter } from 'node:events';
import { RedisService, SessionService, type RedisClient, type SessionServiceOptions } from 'nestjs-redis-native';
import { invalidArgument } from '../redis.errors';

/** An express-session session as the store sees it: its cookie and your fields. */
export interface StoredSession {
  cookie?: { expires?: Date | string | null; maxAge?: number | null; originalMaxAge?: number | null };
  [field: string]: unknown;
}

/** How sessions are turned into text and back (default `JSON`). */
export interface SessionSerializer {
  stringify(session: StoredSession): string;
  parse(text: string): StoredSession;
}

/** Options of `new RedisSessionStore(client, options)`; the names are connect-redis's. */
export interface RedisSessionStoreOptions {
  /**
   * Put in front of express-session's session ids to make this store's session ids (as
   * `SessionService` and `listUserSessions` know them). Default `'sess:'`.
   */
  prefix?: string;
  /**
   * Seconds a session lives when its cookie has no expiry (default 86400), or a function
   * of the session giving them (then used for every session).
   */
  ttl?: number | ((session: StoredSession) => number);
  /** When true, `touch` does nothing: a session expires `ttl` after it was last saved. */
  disableTouch?: boolean;
  /** Default `JSON`. */
  serializer?: SessionSerializer;
  /**
   * The user a session belongs to (a non-empty string or a number), so that
   * `SessionService.listUserSessions` / `destroyUserSessions` / `isUserOnline` see it.
   * Default: `session.passport.user` (what passport stores) or else `session.userId`,
   * when it is a string or a number.
   */
  userId?: (session: StoredSession) => string | number | null | undefined;
  /** Options of the `SessionService` the store is built on (`maxSessionsPerUser`, ...). */
  sessions?: SessionServiceOptions;
}

// The session arguments and results are express-session's `SessionData`, which each app
// declares for itself (`declare module 'express-session'`): typed `any` here so that the
// store fits `session({ store })` whatever the app declared.
type Callback<T> = (err: any, value?: T) => void;
type AnySession = any;

/** The stored form of a session: the serialized session, and its user. */
interface Stored {
  data?: unknown;
  userId?: string | number;
}

const DEFAULT_TTL = 86_400;
const DEFAULT_PREFIX = 'sess:';
/** Sessions read or destroyed at once by `all` and `clear`. */
const BATCH = 100;

type ExpressSession = typeof import('express-session');
let expressSession: ExpressSession | undefined;
/** express-session itself, loaded only when a store needs its `Store` behaviour. */
function storeBase(): ExpressSession['Store'] {
  expressSession ??= require('express-session') as ExpressSession;
  return expressSession.Store;
}

function defaultUserId(session: StoredSession): unknown {
  const passport = session.passport as { user?: unknown } | undefined;
  return passport?.user ?? session.userId;
}

/** Runs `work`, reporting to `callback` when one is given; the Promise either way. */
function settle<T>(work: Promise<T>, callback?: Callback<T>): Promise<T> {
  if (callback) {
    // called outside the Promise chain: a callback that throws is the caller's own error,
    // as with any callback API, not an unhandled rejection here
    work.then(
      (value) => process.nextTick(callback, null, value),
      (err) => process.nextTick(callback, err),
    );
    // the caller handed errors to the callback: the Promise must not report them again
    return work.catch(() => undefined as T);
  }
  return work;
}

/** Escapes the glob characters of a SCAN pattern. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * A store for `express-session` on Redis: `session({ store: new RedisSessionStore(client),
 * secret, ... })`. The options are connect-redis's where they apply (`prefix`, `ttl`,
 * `disableTouch`, `serializer`); every method also returns a Promise.
 *
 * Each session is a `SessionService` session with id `<prefix><express-session id>`, so
 * when it carries a user (see the `userId` option) `SessionService.listUserSessions`,
 * `destroyUserSessions` (log out everywhere), `isUserOnline` and `getOnlineUsers` see it.
 * A session lives until its cookie expires (or `ttl` seconds when the cookie has none);
 * `touch` pushes that back and marks its user online.
 */
export class RedisSessionStore extends EventEmitter {
  /** The `SessionService` the sessions are kept in. */
  readonly sessions: SessionService;
  private readonly redis: RedisService;
  private readonly prefix: string;
  private readonly ttl: number | ((session: StoredSession) => number);
  private readonly disableTouch: boolean;
  private readonly serializer: SessionSerializer;
  private readonly userIdOf: (session: StoredSession) => unknown;

  constructor(client: RedisClient, options: RedisSessionStoreOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') throw invalidArgument('RedisSessionStore options must be an object');
    const known = new Set(['prefix', 'ttl', 'disableTouch', 'serializer', 'userId', 'sessions']);
    for (const name of Object.keys(options)) {
      if (!known.has(name)) throw invalidArgument(`RedisSessionStore: unknown option \`${name}\` (${[...known].join(', ')})`);
    }
    const { prefix = DEFAULT_PREFIX, ttl = DEFAULT_TTL, disableTouch = false, serializer = JSON, userId } = options;
    if (typeof prefix !== 'string') throw invalidArgument('RedisSessionStore option `prefix` must be a string');
    if (typeof ttl !== 'function' && !(typeof ttl === 'number' && Number.isFinite(ttl) && ttl > 0)) {
      throw invalidArgument('RedisSessionStore option `ttl` must be a number of seconds > 0 or a function');
    }
    if (typeof serializer?.stringify !== 'function' || typeof serializer.parse !== 'function') {
      throw invalidArgument('RedisSessionStore option `serializer` must have `stringify` and `parse`');
    }
    if (userId !== undefined && typeof userId !== 'function') {
      throw invalidArgument('RedisSessionStore option `userId` must be a function of the session');
    }
    this.sessions = new SessionService(client, options.sessions);
    this.redis = new RedisService(client);
    this.prefix = prefix;
    this.ttl = ttl;
    this.disableTouch = disableTouch === true;
    this.serializer = serializer;
    this.userIdOf = userId ?? defaultUserId;
  }

  /** The `SessionService` id of express-session's session `sid`. */
  sessionId(sid: string): string {
    return this.prefix + sid;
  }

  /** The session `sid`, or `null` when there is none (or it expired). */
  get(sid: string, callback?: Callback<AnySession>): Promise<AnySession> {
    return settle(this.read(sid), callback);
  }

  /** Saves session `sid`, for as long as its cookie lives (or `ttl`). */
  set(sid: string, session: AnySession, callback?: (err?: any) => void): Promise<void> {
    return settle(this.write(sid, session), callback);
  }

  /** Destroys session `sid` (and takes it out of its user's sessions). */
  destroy(sid: string, callback?: (err?: any) => void): Promise<void> {
    return settle(this.sessions.destroySession(this.sessionId(sid)), callback);
  }

  /** Pushes session `sid`'s expiry back (as its cookie says) and marks its user online. */
  touch(sid: string, session: AnySession, callback?: (err?: any) => void): Promise<void> {
    return settle(this.refresh(sid, session), callback);
  }

  /** The ids (express-session's) of every session of this store. */
  ids(callback?: Callback<string[]>): Promise<string[]> {
    return settle(this.allIds(), callback);
  }

  /** Every session of this store, each with its `id`. */
  all(callback?: Callback<AnySession[]>): Promise<(AnySession & { id: string })[]> {
    return settle(this.readAll(), callback);
  }

  /** How many sessions this store holds. */
  length(callback?: Callback<number>): Promise<number> {
    return settle(
      this.allIds().then((ids) => ids.length),
      callback,
    );
  }

  /** Destroys every session of this store. */
  clear(callback?: (err?: any) => void): Promise<void> {
    return settle(this.destroyAll(), callback);
  }

  /** express-session's own `Store#regenerate`. */
  regenerate(req: any, callback: (err?: any) => any): void {
    storeBase().prototype.regenerate.call(this, req, callback);
  }

  /** express-session's own `Store#load`. */
  load(sid: string, callback: (err: any, session?: any) => any): void {
    storeBase().prototype.load.call(this, sid, callback);
  }

  /** express-session's own `Store#createSession`. */
  createSession(req: any, session: any): any {
    return storeBase().prototype.createSession.call(this, req, session);
  }

  private async read(sid: string): Promise<StoredSession | null> {
    const stored = await this.sessions.getSession<Stored>(this.sessionId(sid));
    if (typeof stored?.data !== 'string') return null;
    return this.serializer.parse(stored.data);
  }

  private async write(sid: string, session: StoredSession): Promise<void> {
    const ttl = this.ttlOf(session);
    if (!(ttl > 0)) {
      await this.sessions.destroySession(this.sessionId(sid));
      return;
    }
    const stored: Stored = { data: this.serializer.stringify(session) };
    const user = this.userIdOf(session);
    if ((typeof user === 'string' && user !== '') || (typeof user === 'number' && Number.isFinite(user))) {
      stored.userId = user;
    }
    await this.sessions.createSession(this.sessionId(sid), stored as Record<string, unknown>, ttl);
  }

  private async refresh(sid: string, session: StoredSession): Promise<void> {
    if (this.disableTouch) return;
    const ttl = this.ttlOf(session);
    if (ttl > 0) {
      await this.sessions.touchSession(this.sessionId(sid), ttl);
    } else {
      await this.sessions.destroySession(this.sessionId(sid));
    }
  }

  /** connect-redis's rule: the cookie's expiry, else `ttl`. */
  private ttlOf(session: StoredSession): number {
    if (typeof this.ttl === 'function') return this.ttl(session);
    const expires = session.cookie?.expires;
    if (expires) return Math.ceil((new Date(expires).getTime() - Date.now()) / 1000);
    return this.ttl;
  }

  private async allIds(): Promise<string[]> {
    const head = 'session:{';
    const keys = await this.redis.keys(`${head}${escapeGlob(this.prefix)}*`);
    return keys.flatMap((key) => {
      let id = key.slice(head.length, -1);
      if (id.startsWith('\\')) id = id.slice(1);
      return id.startsWith(this.prefix) ? [id.slice(this.prefix.length)] : [];
    });
  }

  private async readAll(): Promise<(StoredSession & { id: string })[]> {
    const ids = await this.allIds();
    const out: (StoredSession & { id: string })[] = [];
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      const sessions = await Promise.all(batch.map((sid) => this.read(sid)));
      sessions.forEach((session, j) => {
        if (session) out.push({ ...session, id: batch[j] });
      });
    }
    return out;
  }

  private async destroyAll(): Promise<void> {
    const ids = await this.allIds();
    for (let i = 0; i < ids.length; i += BATCH) {
      await Promise.all(ids.slice(i, i + BATCH).map((sid) => this.sessions.destroySession(this.sessionId(sid))));
    }
  }
}
