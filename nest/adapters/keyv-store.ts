import { EventEmitter } from 'node:events';
import { RedisService, type RedisClient } from 'nestjs-redis-native';
import { invalidArgument } from '../redis.errors';

/** Options of `new KeyvRedisStore(client, options)`. */
export interface KeyvRedisStoreOptions {
  /**
   * The namespace of the keys when Keyv gives none (Keyv gives its own, `'keyv'` by
   * default, and this store then uses that one). `clear()` and `iterator()` act on the
   * keys of the namespace only.
   */
  namespace?: string;
}

/** Keys read per MGET while iterating. */
const ITERATOR_BATCH = 500;

/** Escapes the glob characters of a SCAN pattern, so a namespace matches literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * A Keyv storage adapter on Redis: `new Keyv({ store: new KeyvRedisStore(client) })`, and
 * so `cache-manager` (v6+) and `@nestjs/cache-manager`'s `CacheModule` run on it.
 *
 * Keyv hands the store its keys with the namespace in front (`keyv:<key>`) and its values
 * already serialized; each is one Redis string (after the client's `keyPrefix`), with
 * Keyv's ttl as the Redis expiry. `clear()` deletes the current namespace's keys only
 * (SCAN, never KEYS), and refuses to run without a namespace rather than empty the
 * database.
 */
export class KeyvRedisStore extends EventEmitter {
  /** What Keyv reads (and may write, e.g. `deserialize`): the options this store was given. */
  readonly opts: KeyvRedisStoreOptions & Record<string, unknown>;
  /** The current namespace: set by Keyv to its own. */
  namespace?: string;
  private readonly redis: RedisService;

  constructor(client: RedisClient, options: KeyvRedisStoreOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('KeyvRedisStore options must be an object');
    }
    if (options.namespace !== undefined && (typeof options.namespace !== 'string' || options.namespace === '')) {
      throw invalidArgument('KeyvRedisStore option `namespace` must be a non-empty string');
    }
    this.redis = new RedisService(client);
    this.opts = { ...options, dialect: 'redis' };
    this.namespace = options.namespace;
  }

  /** The stored (serialized) value of `key`, or `undefined`. */
  async get(key: string): Promise<string | undefined> {
    return (await this.redis.get(key)) ?? undefined;
  }

  /** The stored values of `keys`, in order, `undefined` for each missing one. */
  async getMany(keys: string[]): Promise<(string | undefined)[]> {
    if (keys.length === 0) return [];
    return (await this.redis.mget(keys)).map((v) => v ?? undefined);
  }

  /** Stores `value` (Keyv serialized it) at `key`, expiring after `ttl` ms when given (> 0). */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    if (text === undefined) throw invalidArgument(`KeyvRedisStore: the value of \`${key}\` cannot be stored`);
    await this.redis.set(key, text, typeof ttl === 'number' && ttl > 0 ? ttl / 1000 : undefined);
    return true;
  }

  /** Stores several entries, side by side in one round trip. */
  async setMany(entries: { key: string; value: unknown; ttl?: number }[]): Promise<void> {
    await Promise.all(entries.map((e) => this.set(e.key, e.value, e.ttl)));
  }

  /** Deletes `key`; `true` when it existed. */
  async delete(key: string): Promise<boolean> {
    return (await this.redis.del(key)) > 0;
  }

  /** Deletes `keys`; `true` when any of them existed. */
  async deleteMany(keys: string[]): Promise<boolean> {
    if (keys.length === 0) return false;
    return (await this.redis.del(keys)) > 0;
  }

  /** Whether `key` exists. */
  has(key: string): Promise<boolean> {
    return this.redis.exists(key);
  }

  /** Whether each of `keys` exists, in order. */
  async hasMany(keys: string[]): Promise<boolean[]> {
    return (await this.getMany(keys)).map((v) => v !== undefined);
  }

  /** Deletes every key of the current namespace (SCAN + UNLINK in batches). */
  async clear(): Promise<void> {
    await this.redis.deletePattern(this.pattern('clear'));
  }

  /** The `[key, stored value]` pairs of `namespace` (default the current one). */
  async *iterator(namespace?: string): AsyncGenerator<[string, string], void> {
    const keys = await this.redis.keys(this.pattern('iterator', namespace));
    for (let i = 0; i < keys.length; i += ITERATOR_BATCH) {
      const batch = keys.slice(i, i + ITERATOR_BATCH);
      const values = await this.redis.mget(batch);
      for (let j = 0; j < batch.length; j++) {
        const value = values[j];
        if (value !== null) yield [batch[j], value];
      }
    }
  }

  /** Nothing to do: the client belongs to whoever created it (close it there). */
  async disconnect(): Promise<void> {}

  private pattern(what: string, namespace = this.namespace): string {
    if (!namespace) {
      throw invalidArgument(
        `KeyvRedisStore ${what}() needs a namespace (Keyv gives 'keyv' unless told otherwise): without one it would act on the whole database`,
      );
    }
    return `${escapeGlob(namespace)}:*`;
  }
}
