import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { startRedis, sleep, type PrivateRedis } from './support/local-redis';

/**
 * Differential test of the in-process store (`memory://`) against a real redis-server.
 * A seeded PRNG writes sequences of commands, from the subset memory:// supports, over a
 * few overlapping keys (so wrong types happen), with expiries, edge values (empty,
 * negative, near 2^63, floats, bytes that are not UTF-8) and small Lua scripts. Each
 * command goes to both through the raw `command()` and the replies must be equal, but for
 * what must differ: a remaining TTL within a tolerance, unordered replies (HGETALL,
 * SMEMBERS, ...) sorted. Errors compare by their code and message.
 *
 * DIFF_SEQUENCES (default 200) sequences of DIFF_COMMANDS (default 100) commands, seeds
 * DIFF_BASE_SEED (default 1) onwards; DIFF_SEED=<seed> replays one sequence and prints
 * every step. A sequence stops at its first mismatch (the states differ after it); the test
 * fails with every mismatch, grouped by command and how each side answered, each with its
 * seed, its step and both replies. To look past known mismatches: DIFF_SKIP=INCRBYFLOAT,...
 * (commands left out), DIFF_SKIP_SCRIPTS=cjson,... (scripts containing these texts left
 * out), DIFF_ERRORS=loose (errors compare by their first word only). With
 * DIFF_AGAINST=redis a second redis-server stands in for `memory://`, which checks the test
 * itself: two redis-servers must always agree.
 */

type Arg = string | Buffer;

/** The PRNG of a sequence: mulberry32. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How a reply is compared. */
type Kind =
  | 'exact'
  | 'unordered' // an array whose order is not defined: sorted
  | 'pairs' // a flat [field, value, ...] array whose pair order is not defined: pairs sorted
  | 'ttl-ms' // a remaining time or an expiry time in ms: within TTL_TOLERANCE_MS
  | 'ttl-s'; // the same in seconds: within 1

const TTL_TOLERANCE_MS = 1000;

class Gen {
  readonly now = Date.now();
  constructor(
    readonly rng: () => number,
    readonly keyNames: string[],
  ) {}
  int(n: number): number {
    return Math.floor(this.rng() * n);
  }
  chance(p: number): boolean {
    return this.rng() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** The keys the current command is about (those of its type); others now and then. */
  home: string[] = [];
  key(): string {
    return this.home.length && this.chance(0.8) ? this.pick(this.home) : this.pick(this.keyNames);
  }
  keys(min: number, max: number): string[] {
    return Array.from({ length: min + this.int(max - min + 1) }, () => this.key());
  }
  value(): Arg {
    if (this.chance(0.5)) return this.pick(VALUES);
    if (this.chance(0.3)) return this.pick(BINARY);
    if (this.chance(0.02)) return 'x'.repeat(1 + this.int(3000));
    return Array.from({ length: this.int(12) }, () => String.fromCharCode(32 + this.int(95))).join('');
  }
  integer(): string {
    return this.chance(0.6) ? String(this.int(2001) - 1000) : this.pick(INTEGERS);
  }
  float(): string {
    if (this.chance(0.5)) return this.pick(FLOATS);
    return String(Math.round((this.rng() * 2000 - 1000) * 1000) / 1000);
  }
  score(): string {
    if (this.chance(0.5)) return String(this.int(21) - 10);
    return this.pick(SCORES);
  }
  bound(): string {
    return this.pick(BOUNDS);
  }
  field(): Arg {
    return this.pick(FIELDS);
  }
  member(): Arg {
    return this.pick(MEMBERS);
  }
  index(): string {
    return String(this.int(13) - 6);
  }
  /** Seconds of an expiry: mostly far in the future; sometimes invalid. */
  seconds(): string {
    return this.chance(0.9) ? String(100_000 + this.int(100_000)) : this.pick(['0', '-5', 'abc', '9223372036854775807', '1.5']);
  }
  millis(): string {
    return this.chance(0.9) ? String(100_000_000 + this.int(100_000_000)) : this.pick(['0', '-5', 'abc', '9223372036854775807']);
  }
  /** An absolute expiry, ms: in the past (deletes at once) or far in the future. */
  atMillis(): string {
    return this.chance(0.3)
      ? this.pick(['1', String(this.now - 1_000_000)])
      : String(this.now + 100_000_000 + this.int(1000) * 1000);
  }
  atSeconds(): string {
    return String(Math.floor(Number(this.atMillis()) / 1000));
  }
}

const VALUES: Arg[] = [
  '',
  '0',
  '1',
  '-1',
  '42',
  '-42',
  '007',
  '+3',
  ' 5',
  '5 ',
  '3.14',
  '-0.5',
  '1e3',
  '0x10',
  'inf',
  'nan',
  '9223372036854775807',
  '-9223372036854775808',
  '9223372036854775806',
  '9223372036854775808',
  '18446744073709551616',
  'abc',
  'héllo 🔑',
  'a b',
  '\n',
];
const BINARY: Buffer[] = [
  Buffer.from([0xff, 0xfe, 0x00, 0x41]),
  Buffer.from([0x00]),
  Buffer.from([0xc3]),
  Buffer.from([0x80, 0x31]),
];
const INTEGERS = [
  '0',
  '1',
  '-1',
  '9223372036854775807',
  '-9223372036854775808',
  '9223372036854775806',
  '4611686018427387904',
  '-4611686018427387904',
  '9223372036854775808',
  '1.5',
  'x',
  '',
  ' 1',
];
const FLOATS = [
  '0.1',
  '-0.1',
  '0.2',
  '1e3',
  '1.5e-5',
  '3',
  '-3',
  '1e308',
  '-1e308',
  'inf',
  'nan',
  '.5',
  '5.',
  '5.0e3',
  '1e-320',
  'x',
  '',
];
const SCORES = ['0', '1.5', '-2.25', '1e3', 'inf', '-inf', '+inf', '0.1', '-0', '1e308', 'nan', 'abc', ''];
const BOUNDS = ['-inf', '+inf', 'inf', '0', '1', '(1', '(1.5', '-2.25', '5', '(5', '[1', 'x', '10', '(-inf'];
const FIELDS: Arg[] = ['f1', 'f2', 'f3', '', 'ü', Buffer.from([0xfe])];
const MEMBERS: Arg[] = ['a', 'b', 'c', 'd', '', 'héllo', Buffer.from([0xff])];

/**
 * Small scripts, with how many keys they take and their ARGV, for the EVAL commands of the
 * sequences and for the Lua test below. What they exercise: redis.call/pcall, error and
 * status replies, the conversion of Lua values (numbers truncated, booleans, nested
 * tables, tables with nil holes), errors raised in scripts.
 */
const SCRIPTS: { body: string; keys: number; argv?: (g: Gen) => Arg[] }[] = [
  { body: "return redis.call('GET', KEYS[1])", keys: 1 },
  { body: "return redis.pcall('INCR', KEYS[1])", keys: 1 },
  {
    body: "local r = redis.pcall('INCR', KEYS[1]); if type(r) == 'table' then return {'err', r.err} end; return {'ok', r}",
    keys: 1,
  },
  { body: "return redis.error_reply('MYERR custom failure')", keys: 0 },
  { body: "return redis.error_reply('no code here')", keys: 0 },
  { body: "return redis.status_reply('FINE')", keys: 0 },
  { body: 'return 3.99', keys: 0 },
  { body: 'return -3.99', keys: 0 },
  { body: 'return 0.5', keys: 0 },
  { body: 'return 9007199254740993', keys: 0 },
  { body: 'return true', keys: 0 },
  { body: 'return false', keys: 0 },
  { body: 'return nil', keys: 0 },
  { body: "return {1, 2, {3, 'x', {}}, 'y'}", keys: 0 },
  { body: 'return {1, nil, 3}', keys: 0 },
  { body: "return {1.9, 'a', true, false, 'b'}", keys: 0 },
  { body: "local x = {}; x[1] = 'a'; x[3] = 'c'; return x", keys: 0 },
  { body: 'return {1, 2, 3, n = 4}', keys: 0 },
  { body: "return {err = 'WRONG thing'}", keys: 0 },
  { body: "return {ok = 'STATUS'}", keys: 0 },
  { body: "return type(redis.call('GET', KEYS[1]))", keys: 1 },
  { body: "return redis.call('GET', KEYS[1]) == false", keys: 1 },
  { body: "local t = redis.call('HGETALL', KEYS[1]); table.sort(t); return t", keys: 1 },
  { body: "local t = redis.call('SMEMBERS', KEYS[1]); table.sort(t); return t", keys: 1 },
  { body: "return redis.call('SET', KEYS[1], ARGV[1])", keys: 1, argv: (g) => [g.value()] },
  { body: "return redis.call('SET', KEYS[1], 'v', 'GET')", keys: 1 },
  { body: "return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])", keys: 1, argv: (g) => [g.float()] },
  { body: "return tostring(redis.call('INCRBY', KEYS[1], ARGV[1]))", keys: 1, argv: (g) => [g.integer()] },
  { body: "return redis.call('INCR', KEYS[1]) + 0.5", keys: 1 },
  { body: "return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')", keys: 1 },
  { body: "return redis.call('ZSCORE', KEYS[1], 'b')", keys: 1 },
  { body: "return redis.call('ZADD', KEYS[1], ARGV[1], 'm')", keys: 1, argv: (g) => [g.score()] },
  { body: "return redis.call('TYPE', KEYS[1])", keys: 1 },
  { body: "return redis.call('EXISTS', KEYS[1]) == 1", keys: 1 },
  { body: "local n = redis.call('INCR', KEYS[1]); redis.call('PEXPIRE', KEYS[1], 100000000); return n", keys: 1 },
  { body: "return {redis.call('HGET', KEYS[1], 'f1'), redis.call('HINCRBY', KEYS[1], 'f2', 3)}", keys: 1 },
  { body: "redis.call('SET', KEYS[1], 'x'); return redis.call('HSET', KEYS[1], 'f', 'v')", keys: 1 },
  { body: "return #redis.call('MGET', KEYS[1], KEYS[2])", keys: 2 },
  { body: "return redis.call('DEL', KEYS[1], KEYS[2])", keys: 2 },
  { body: "return redis.call('PTTL', KEYS[1]) >= -2", keys: 1 },
  { body: "return redis.call('NOSUCHCMD', KEYS[1])", keys: 1 },
  { body: "return redis.pcall('NOSUCHCMD')", keys: 0 },
  { body: "return redis.call('GET')", keys: 0 },
  { body: "error('boom')", keys: 0 },
  { body: "error({err = 'TABLEERR raised'})", keys: 0 },
  { body: 'return {ARGV[1], #ARGV, #KEYS}', keys: 1, argv: (g) => [g.value(), g.value()] },
  { body: 'return tonumber(ARGV[1])', keys: 0, argv: (g) => [g.float()] },
  { body: 'return math.floor(tonumber(ARGV[1]) or -1)', keys: 0, argv: (g) => [g.float()] },
  { body: 'return string.len(ARGV[1])', keys: 0, argv: (g) => [g.value()] },
  { body: 'return ARGV[1]', keys: 0, argv: (g) => [g.value()] },
  { body: "return string.format('%d:%s', 5, ARGV[1])", keys: 0, argv: (g) => [g.value()] },
  { body: 'return redis.sha1hex(ARGV[1])', keys: 0, argv: (g) => [g.value()] },
  // Not here: scripts using Redis's cjson, cmsgpack, bit and struct libraries. memory:// does
  // not embed them (a documented absence: ARCHITECTURE.md, memory:// limits), so such a
  // script fails there with "nonexistent global variable 'cjson'" where Redis runs it.
  { body: 'return tostring(unpack({1, 2}))', keys: 0 },
  { body: "return redis.call('EVAL', 'return 1', 0)", keys: 0 },
  { body: 'x = 1; return x', keys: 0 },
  { body: 'return os ~= nil', keys: 0 },
  { body: 'return redis.sha1hex()', keys: 0 },
  {
    body: "local t = redis.call('TIME'); return {#t, type(t[1]), tonumber(t[1]) > 1600000000, tonumber(t[2]) < 1000000}",
    keys: 0,
  },
  {
    body: "local t = redis.call('TIME'); redis.call('PEXPIREAT', KEYS[1], t[1] * 1000 + 100000000); return redis.call('PTTL', KEYS[1]) > 99000000",
    keys: 1,
  },
];

/**
 * The commands of the sequences, in one place: each makes its arguments from the PRNG,
 * and says how its reply is compared. Commands this build's memory:// does not support
 * (it refuses them with "does not support") are dropped at the start, and named.
 */
const COMMANDS: {
  name: string;
  weight: number;
  kind?: Kind;
  gen: (g: Gen) => Arg[];
  /** Arguments to ask memory:// whether it supports the command (default: made by gen). */
  probe?: Arg[];
  sleepAfter?: (args: Arg[]) => number;
}[] = [
  // strings
  {
    name: 'SET',
    weight: 8,
    gen: (g) => {
      const args: Arg[] = [g.key(), g.value()];
      if (g.chance(0.3)) args.push(g.pick(['NX', 'XX']));
      if (g.chance(0.4)) {
        const e = g.pick(['EX', 'PX', 'EXAT', 'PXAT', 'KEEPTTL', 'SHORT']);
        if (e === 'EX') args.push('EX', g.seconds());
        else if (e === 'PX') args.push('PX', g.millis());
        else if (e === 'EXAT') args.push('EXAT', g.atSeconds());
        else if (e === 'PXAT') args.push('PXAT', g.atMillis());
        else if (e === 'KEEPTTL') args.push('KEEPTTL');
        else args.push('PX', String(1 + g.int(5)));
      }
      if (g.chance(0.2)) args.push('GET');
      if (g.chance(0.02)) args.push(g.pick(['NX', 'XX', 'EX', 'BOGUS']));
      return args;
    },
    // a PX of a few ms: wait until it has expired on both sides
    sleepAfter: (args) => {
      const i = args.indexOf('PX');
      return i > 0 && Number(args[i + 1]) < 10 ? 15 : 0;
    },
  },
  { name: 'GET', weight: 8, gen: (g) => [g.key()] },
  { name: 'MGET', weight: 3, gen: (g) => g.keys(1, 4) },
  { name: 'MSET', weight: 3, gen: (g) => g.keys(1, 3).flatMap((k) => [k, g.value()]) },
  { name: 'MSETNX', weight: 1, gen: (g) => g.keys(1, 3).flatMap((k) => [k, g.value()]) },
  { name: 'DEL', weight: 3, gen: (g) => g.keys(1, 3) },
  { name: 'UNLINK', weight: 1, gen: (g) => g.keys(1, 3) },
  { name: 'EXISTS', weight: 3, gen: (g) => g.keys(1, 4) },
  { name: 'TYPE', weight: 3, gen: (g) => [g.key()] },
  { name: 'INCR', weight: 4, gen: (g) => [g.key()] },
  { name: 'DECR', weight: 2, gen: (g) => [g.key()] },
  { name: 'INCRBY', weight: 4, gen: (g) => [g.key(), g.integer()] },
  { name: 'DECRBY', weight: 3, gen: (g) => [g.key(), g.integer()] },
  { name: 'INCRBYFLOAT', weight: 4, gen: (g) => [g.key(), g.float()] },
  { name: 'APPEND', weight: 2, gen: (g) => [g.key(), g.value()] },
  { name: 'STRLEN', weight: 2, gen: (g) => [g.key()] },
  { name: 'GETDEL', weight: 1, gen: (g) => [g.key()] },
  { name: 'GETSET', weight: 1, gen: (g) => [g.key(), g.value()] },
  { name: 'SETNX', weight: 1, gen: (g) => [g.key(), g.value()] },
  { name: 'SETEX', weight: 1, gen: (g) => [g.key(), g.seconds(), g.value()] },
  { name: 'PSETEX', weight: 1, gen: (g) => [g.key(), g.millis(), g.value()] },
  {
    name: 'GETEX',
    weight: 1,
    gen: (g) => {
      const args: Arg[] = [g.key()];
      const e = g.pick(['', 'EX', 'PX', 'EXAT', 'PXAT', 'PERSIST']);
      if (e === 'EX') args.push('EX', g.seconds());
      else if (e === 'PX') args.push('PX', g.millis());
      else if (e === 'EXAT') args.push('EXAT', g.atSeconds());
      else if (e === 'PXAT') args.push('PXAT', g.atMillis());
      else if (e === 'PERSIST') args.push('PERSIST');
      return args;
    },
  },
  { name: 'GETRANGE', weight: 1, gen: (g) => [g.key(), g.index(), g.index()] },
  { name: 'SETRANGE', weight: 1, gen: (g) => [g.key(), String(g.int(8)), g.value()] },
  // keys of any type
  { name: 'RENAME', weight: 1, gen: (g) => [g.key(), g.key()] },
  { name: 'RENAMENX', weight: 1, gen: (g) => [g.key(), g.key()] },
  { name: 'COPY', weight: 1, gen: (g) => [g.key(), g.key(), ...(g.chance(0.5) ? ['REPLACE'] : [])] },
  { name: 'KEYS', weight: 1, kind: 'unordered', gen: (g) => [g.keyNames[0].slice(0, -1) + g.pick(['*', '?', '[2-5]', '[^0]'])] },
  // expiry
  { name: 'EXPIRE', weight: 3, gen: (g) => [g.key(), g.seconds(), ...(g.chance(0.3) ? [g.pick(['NX', 'XX', 'GT', 'LT'])] : [])] },
  { name: 'PEXPIRE', weight: 3, gen: (g) => [g.key(), g.millis(), ...(g.chance(0.3) ? [g.pick(['NX', 'XX', 'GT', 'LT'])] : [])] },
  {
    name: 'EXPIREAT',
    weight: 2,
    gen: (g) => [g.key(), g.atSeconds(), ...(g.chance(0.3) ? [g.pick(['NX', 'XX', 'GT', 'LT'])] : [])],
  },
  {
    name: 'PEXPIREAT',
    weight: 3,
    gen: (g) => [g.key(), g.atMillis(), ...(g.chance(0.3) ? [g.pick(['NX', 'XX', 'GT', 'LT'])] : [])],
  },
  { name: 'PERSIST', weight: 2, gen: (g) => [g.key()] },
  { name: 'TTL', weight: 3, kind: 'ttl-s', gen: (g) => [g.key()] },
  { name: 'PTTL', weight: 4, kind: 'ttl-ms', gen: (g) => [g.key()] },
  { name: 'EXPIRETIME', weight: 1, kind: 'ttl-s', gen: (g) => [g.key()] },
  { name: 'PEXPIRETIME', weight: 1, kind: 'ttl-ms', gen: (g) => [g.key()] },
  // hashes
  {
    name: 'HSET',
    weight: 5,
    gen: (g) => [g.key(), ...Array.from({ length: 1 + g.int(3) }, () => [g.field(), g.value()]).flat()],
  },
  { name: 'HSETNX', weight: 1, gen: (g) => [g.key(), g.field(), g.value()] },
  { name: 'HGET', weight: 4, gen: (g) => [g.key(), g.field()] },
  { name: 'HMGET', weight: 2, gen: (g) => [g.key(), g.field(), g.field(), g.field()] },
  { name: 'HGETALL', weight: 3, kind: 'pairs', gen: (g) => [g.key()] },
  { name: 'HDEL', weight: 2, gen: (g) => [g.key(), g.field(), ...(g.chance(0.5) ? [g.field()] : [])] },
  { name: 'HEXISTS', weight: 2, gen: (g) => [g.key(), g.field()] },
  { name: 'HINCRBY', weight: 3, gen: (g) => [g.key(), g.field(), g.integer()] },
  { name: 'HINCRBYFLOAT', weight: 2, gen: (g) => [g.key(), g.field(), g.float()] },
  { name: 'HLEN', weight: 1, gen: (g) => [g.key()] },
  { name: 'HKEYS', weight: 1, kind: 'unordered', gen: (g) => [g.key()] },
  { name: 'HVALS', weight: 1, kind: 'unordered', gen: (g) => [g.key()] },
  { name: 'HSTRLEN', weight: 1, gen: (g) => [g.key(), g.field()] },
  {
    name: 'HSCAN',
    weight: 1,
    kind: 'pairs',
    gen: (g) => [g.key(), ...(g.chance(0.3) ? ['MATCH', g.pick(['f*', '?', '*'])] : [])],
  },
  // sorted sets
  {
    name: 'ZADD',
    weight: 6,
    gen: (g) => {
      const args: Arg[] = [g.key()];
      if (g.chance(0.2)) args.push(g.pick(['NX', 'XX']));
      if (g.chance(0.15)) args.push(g.pick(['GT', 'LT']));
      if (g.chance(0.2)) args.push('CH');
      const incr = g.chance(0.1);
      if (incr) args.push('INCR');
      const pairs = incr ? 1 : 1 + g.int(3);
      for (let i = 0; i < pairs; i++) args.push(g.score(), g.member());
      return args;
    },
  },
  { name: 'ZREM', weight: 2, gen: (g) => [g.key(), g.member(), ...(g.chance(0.5) ? [g.member()] : [])] },
  { name: 'ZSCORE', weight: 3, gen: (g) => [g.key(), g.member()] },
  { name: 'ZMSCORE', weight: 1, gen: (g) => [g.key(), g.member(), g.member()] },
  { name: 'ZCARD', weight: 2, gen: (g) => [g.key()] },
  { name: 'ZINCRBY', weight: 2, gen: (g) => [g.key(), g.score(), g.member()] },
  { name: 'ZCOUNT', weight: 1, gen: (g) => [g.key(), g.bound(), g.bound()] },
  { name: 'ZRANK', weight: 1, gen: (g) => [g.key(), g.member()] },
  { name: 'ZREVRANK', weight: 1, gen: (g) => [g.key(), g.member()] },
  {
    name: 'ZRANGE',
    weight: 5,
    gen: (g) => {
      const byScore = g.chance(0.5);
      const args: Arg[] = byScore ? [g.key(), g.bound(), g.bound(), 'BYSCORE'] : [g.key(), g.index(), g.index()];
      if (g.chance(0.2)) args.push('REV');
      if (byScore && g.chance(0.4)) args.push('LIMIT', String(g.int(4)), String(g.int(5) - 1));
      if (g.chance(0.5)) args.push('WITHSCORES');
      return args;
    },
  },
  { name: 'ZREVRANGE', weight: 1, gen: (g) => [g.key(), g.index(), g.index(), ...(g.chance(0.5) ? ['WITHSCORES'] : [])] },
  {
    name: 'ZRANGEBYSCORE',
    weight: 3,
    gen: (g) => {
      const args: Arg[] = [g.key(), g.bound(), g.bound()];
      if (g.chance(0.5)) args.push('WITHSCORES');
      if (g.chance(0.4)) args.push('LIMIT', String(g.int(4)), String(g.int(5) - 1));
      return args;
    },
  },
  { name: 'ZREVRANGEBYSCORE', weight: 1, gen: (g) => [g.key(), g.bound(), g.bound(), ...(g.chance(0.5) ? ['WITHSCORES'] : [])] },
  { name: 'ZREMRANGEBYSCORE', weight: 2, gen: (g) => [g.key(), g.bound(), g.bound()] },
  { name: 'ZREMRANGEBYRANK', weight: 1, gen: (g) => [g.key(), g.index(), g.index()] },
  { name: 'ZPOPMIN', weight: 1, gen: (g) => [g.key(), ...(g.chance(0.5) ? [String(g.int(4))] : [])] },
  { name: 'ZPOPMAX', weight: 1, gen: (g) => [g.key(), ...(g.chance(0.5) ? [String(g.int(4))] : [])] },
  {
    name: 'ZUNIONSTORE',
    weight: 1,
    gen: (g) => {
      const args: Arg[] = [g.key(), '2', g.key(), g.key()];
      if (g.chance(0.3)) args.push('WEIGHTS', g.score(), g.score());
      if (g.chance(0.3)) args.push('AGGREGATE', g.pick(['SUM', 'MIN', 'MAX']));
      return args;
    },
  },
  {
    name: 'ZINTERSTORE',
    weight: 1,
    gen: (g) => {
      const args: Arg[] = [g.key(), '2', g.key(), g.key()];
      if (g.chance(0.3)) args.push('WEIGHTS', g.score(), g.score());
      if (g.chance(0.3)) args.push('AGGREGATE', g.pick(['SUM', 'MIN', 'MAX']));
      return args;
    },
  },
  { name: 'ZRANGEBYLEX', weight: 1, gen: (g) => [g.key(), g.pick(['-', '[a', '(b', '[c']), g.pick(['+', '[c', '(d', '[b'])] },
  { name: 'ZLEXCOUNT', weight: 1, gen: (g) => [g.key(), g.pick(['-', '[a', '(b']), g.pick(['+', '[c', '(d', 'x'])] },
  { name: 'ZSCAN', weight: 1, kind: 'pairs', gen: (g) => [g.key()] },
  // sets
  { name: 'SADD', weight: 4, gen: (g) => [g.key(), g.member(), ...(g.chance(0.5) ? [g.member()] : [])] },
  { name: 'SREM', weight: 2, gen: (g) => [g.key(), g.member(), ...(g.chance(0.5) ? [g.member()] : [])] },
  { name: 'SISMEMBER', weight: 2, gen: (g) => [g.key(), g.member()] },
  { name: 'SMISMEMBER', weight: 1, gen: (g) => [g.key(), g.member(), g.member()] },
  { name: 'SMEMBERS', weight: 2, kind: 'unordered', gen: (g) => [g.key()] },
  { name: 'SCARD', weight: 2, gen: (g) => [g.key()] },
  { name: 'SINTER', weight: 1, kind: 'unordered', gen: (g) => [g.key(), g.key()] },
  { name: 'SUNION', weight: 1, kind: 'unordered', gen: (g) => [g.key(), g.key()] },
  { name: 'SDIFF', weight: 1, kind: 'unordered', gen: (g) => [g.key(), g.key()] },
  { name: 'SINTERSTORE', weight: 1, gen: (g) => [g.key(), g.key(), g.key()] },
  { name: 'SUNIONSTORE', weight: 1, gen: (g) => [g.key(), g.key(), g.key()] },
  { name: 'SDIFFSTORE', weight: 1, gen: (g) => [g.key(), g.key(), g.key()] },
  { name: 'SMOVE', weight: 1, gen: (g) => [g.key(), g.key(), g.member()] },
  { name: 'SSCAN', weight: 1, kind: 'unordered', gen: (g) => [g.key()] },
  // lists
  { name: 'LPUSH', weight: 2, gen: (g) => [g.key(), g.value(), ...(g.chance(0.5) ? [g.value()] : [])] },
  { name: 'RPUSH', weight: 2, gen: (g) => [g.key(), g.value(), ...(g.chance(0.5) ? [g.value()] : [])] },
  { name: 'LPOP', weight: 1, gen: (g) => [g.key(), ...(g.chance(0.3) ? [String(g.int(4))] : [])] },
  { name: 'RPOP', weight: 1, gen: (g) => [g.key()] },
  { name: 'LRANGE', weight: 2, gen: (g) => [g.key(), g.index(), g.index()] },
  { name: 'LLEN', weight: 1, gen: (g) => [g.key()] },
  { name: 'LTRIM', weight: 1, gen: (g) => [g.key(), g.index(), g.index()] },
  { name: 'LINDEX', weight: 1, gen: (g) => [g.key(), g.index()] },
  { name: 'LSET', weight: 1, gen: (g) => [g.key(), g.index(), g.value()] },
  { name: 'LREM', weight: 1, gen: (g) => [g.key(), g.index(), g.value()] },
  { name: 'LINSERT', weight: 1, gen: (g) => [g.key(), g.pick(['BEFORE', 'AFTER']), g.value(), g.value()] },
  { name: 'LPOS', weight: 1, gen: (g) => [g.key(), g.value()] },
  { name: 'RPOPLPUSH', weight: 1, gen: (g) => [g.key(), g.key()] },
  { name: 'LMOVE', weight: 1, gen: (g) => [g.key(), g.key(), g.pick(['LEFT', 'RIGHT']), g.pick(['LEFT', 'RIGHT'])] },
  // keys: every key SCAN finds with a pattern (a glob over this sequence's keys), sorted
  {
    name: 'SCAN',
    weight: 2,
    kind: 'unordered',
    gen: (g) => {
      const base = g.keyNames[0].slice(0, -1);
      // (not TYPE none: redis-server 7.0 lists a key that has just expired under it)
      const pattern = g.pick(['*', '?', '[0-2]', '[^1]', '[!1-4]', '\\1', '[a-z]', '*[35]', '']);
      return ['MATCH', base + pattern, ...(g.chance(0.3) ? ['TYPE', g.pick(['string', 'hash', 'zset', 'set', 'list'])] : [])];
    },
  },
  // scripts
  {
    name: 'EVAL',
    weight: 5,
    probe: ['return 1', '0'],
    gen: (g) => {
      const s = g.pick(scripts);
      const keys = Array.from({ length: s.keys }, () => g.key());
      if (g.chance(0.02)) return [s.body, g.pick(['-1', '9', 'x'])];
      return [s.body, String(s.keys), ...keys, ...(s.argv?.(g) ?? [])];
    },
  },
  {
    name: 'EVALSHA',
    weight: 2,
    probe: [sha1('return 1'), '0'],
    gen: (g) => {
      const s = g.pick(scripts);
      const keys = Array.from({ length: s.keys }, () => g.key());
      return [sha1(s.body), String(s.keys), ...keys, ...(s.argv?.(g) ?? [])];
    },
  },
];

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

interface Step {
  name: string;
  args: Arg[];
  kind: Kind;
  sleepAfter: number;
}

const KEYS_PER_SEQUENCE = 8;

function sequenceKeys(base: string): string[] {
  return Array.from({ length: KEYS_PER_SEQUENCE }, (_, i) => `${base}:k${i}`);
}

/**
 * The keys a command mostly works on, so that most commands meet a value of their type and
 * some meet another (WRONGTYPE): strings k0 k1, hash k2, sorted sets k3 k6, sets k4 k7,
 * list k5; the commands of any type (DEL, EXISTS, TYPE, expiry, RENAME, scripts) take any key.
 */
function homeKeys(name: string, keys: string[]): string[] {
  const strings = ['SET', 'GET', 'MGET', 'MSET', 'MSETNX', 'INCR', 'DECR', 'INCRBY', 'DECRBY', 'INCRBYFLOAT', 'APPEND', 'STRLEN'];
  if (strings.includes(name) || /^(GET|SET|PSETEX)/.test(name)) return keys.slice(0, 2);
  if (name.startsWith('H')) return [keys[2]];
  if (name.startsWith('Z')) return [keys[3], keys[6]];
  if (name.startsWith('S')) return [keys[4], keys[7]];
  if (/^(L|RPUSH|RPOP|BLMOVE)/.test(name)) return [keys[5]];
  return [];
}

/** The commands of sequence `seed`, over the keys `sequenceKeys(base)`. */
function generate(seed: number, length: number, commands: typeof COMMANDS, base: string): Step[] {
  const g = new Gen(mulberry32(seed), sequenceKeys(base));
  const total = commands.reduce((n, c) => n + c.weight, 0);
  const steps: Step[] = [];
  for (let i = 0; i < length; i++) {
    let r = g.rng() * total;
    const spec = commands.find((c) => (r -= c.weight) < 0) ?? commands[commands.length - 1];
    g.home = homeKeys(spec.name, g.keyNames);
    const args = spec.gen(g);
    // now and then the wrong number of arguments
    if (g.chance(0.01)) args.pop();
    steps.push({ name: spec.name, args, kind: spec.kind ?? 'exact', sleepAfter: spec.sleepAfter?.(args) ?? 0 });
  }
  return steps;
}

/** A reply, or the error it was, made comparable: Buffers as hex, errors as code + message. */
type Outcome = { reply: unknown } | { error: string };

function canonical(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { bytes: value.toString('hex') };
  if (Array.isArray(value)) return value.map(canonical);
  if (value instanceof Error) return { error: `${(value as any).code} ${value.message}` };
  return value;
}

function sortKey(v: unknown): string {
  return JSON.stringify(v);
}

function normalise(kind: Kind, reply: unknown): unknown {
  const r = canonical(reply);
  if (kind === 'unordered' && Array.isArray(r)) return [...r].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : 1));
  if (kind === 'pairs' && Array.isArray(r)) {
    const pairs: unknown[][] = [];
    for (let i = 0; i < r.length; i += 2) pairs.push([r[i], r[i + 1]]);
    return pairs.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : 1)).flat();
  }
  return r;
}

async function run(service: RedisService, step: Step): Promise<Outcome> {
  try {
    if (step.name === 'SCAN') {
      // a whole iteration, a few keys at a time: the keys found, each once
      const found = new Set<string>();
      let cursor = '0';
      do {
        const [next, keys] = (await service.command('SCAN', [cursor, ...step.args, 'COUNT', '2'])) as [string, string[]];
        for (const k of keys) found.add(k);
        cursor = next;
      } while (cursor !== '0');
      return { reply: normalise(step.kind, [...found]) };
    }
    if (step.name === 'HSCAN' || step.name === 'SSCAN' || step.name === 'ZSCAN') {
      // a whole iteration over the key's elements (or pairs), each once
      const found = new Map<string, unknown[]>();
      let cursor = '0';
      const [key, ...rest] = step.args;
      do {
        const [next, items] = (await service.command(step.name, [key, cursor, ...rest, 'COUNT', '2'])) as [string, unknown[]];
        const width = step.name === 'SSCAN' ? 1 : 2;
        for (let i = 0; i < items.length; i += width) {
          const item = items.slice(i, i + width);
          found.set(JSON.stringify(canonical(item[0])), item);
        }
        cursor = next;
      } while (cursor !== '0');
      return { reply: normalise(step.kind, [...found.values()].flat()) };
    }
    return { reply: normalise(step.kind, await service.command(step.name, step.args)) };
  } catch (e: any) {
    return { error: `${e.code} ${e.message}` };
  }
}

function same(kind: Kind, a: Outcome, b: Outcome): boolean {
  if ('reply' in a && 'reply' in b && (kind === 'ttl-ms' || kind === 'ttl-s')) {
    const [x, y] = [a.reply, b.reply];
    if (typeof x === 'number' && typeof y === 'number' && x >= 0 && y >= 0) {
      return Math.abs(x - y) <= (kind === 'ttl-ms' ? TTL_TOLERANCE_MS : 1);
    }
  }
  // DIFF_ERRORS=loose: errors compare by their Redis error code only (WRONGTYPE, ERR, ...), to look
  // past differences of wording
  if ('error' in a && 'error' in b && process.env.DIFF_ERRORS === 'loose')
    return shape(`error ${a.error}`) === shape(`error ${b.error}`);
  return JSON.stringify(a) === JSON.stringify(b);
}

const UNSUPPORTED = /does not support/;

function show(arg: Arg): string {
  if (Buffer.isBuffer(arg)) return `<${arg.toString('hex')}>`;
  return arg.length > 60 ? `${JSON.stringify(arg.slice(0, 40))}...(${arg.length} chars)` : JSON.stringify(arg);
}

function showStep(step: Step): string {
  return `${step.name} ${step.args.map(show).join(' ')}`;
}

function showOutcome(o: Outcome): string {
  const text = 'error' in o ? `error ${o.error}` : JSON.stringify(o.reply);
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

interface Mismatch {
  /** What the mismatch is grouped by: the command's name, or the script for EVAL and EVALSHA. */
  what: string;
  seed: number;
  step: number;
  command: string;
  redis: string;
  memory: string;
  history: string[];
}

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);

let server: PrivateRedis;
let standIn: PrivateRedis | undefined;
let redisClient: RedisClient;
let memoryClient: RedisClient;
let redis: RedisService;
let memory: RedisService;
/** What the memory side is: memory://, or a redis-server standing in for it. */
let memoryLabel = 'memory://';
let commands = COMMANDS;
let dropped: string[] = [];
/** The scripts the sequences run (SCRIPTS without those of DIFF_SKIP_SCRIPTS). */
let scripts = SCRIPTS;
let left = '';

before(async () => {
  server = await startRedis();
  redisClient = await RedisClient.connect({ url: server.url });
  if (process.env.DIFF_AGAINST === 'redis') {
    // a second redis-server on the memory side, to check the test itself
    standIn = await startRedis();
    memoryClient = await RedisClient.connect({ url: standIn.url });
    memoryLabel = 'a redis-server standing in for memory:// (DIFF_AGAINST=redis)';
  } else {
    // a build that refuses memory:// fails here: it must never pass by comparing nothing
    memoryClient = await RedisClient.connect({ url: 'memory://' });
  }
  redis = new RedisService(redisClient);
  memory = new RedisService(memoryClient);
  // The commands memory:// refuses as not supported are left out, and named.
  const g = new Gen(mulberry32(0), ['probe:k0']);
  const supported = [];
  for (const c of COMMANDS) {
    const outcome = await run(memory, { name: c.name, args: c.probe ?? c.gen(g), kind: 'exact', sleepAfter: 0 });
    if ('error' in outcome && UNSUPPORTED.test(outcome.error)) dropped.push(c.name);
    else supported.push(c);
  }
  // DIFF_SKIP=NAME,...: commands left out (to look past a known mismatch); DIFF_SKIP_SCRIPTS=text,...:
  // the scripts containing one of these texts
  const skip = (process.env.DIFF_SKIP ?? '').split(',').filter(Boolean);
  commands = supported.filter((c) => !skip.includes(c.name));
  const skipScripts = (process.env.DIFF_SKIP_SCRIPTS ?? '').split(',').filter(Boolean);
  scripts = SCRIPTS.filter((s) => !skipScripts.some((text) => s.body.includes(text)));
  if (skip.length || skipScripts.length)
    left = `, without ${[...skip, ...skipScripts.map((t) => `scripts with ${t}`)].join(', ')}`;
  for (const side of [redis, memory]) await side.command('DEL', ['probe:k0']);
});

after(async () => {
  await redisClient?.close();
  await memoryClient?.close();
  await server?.stop();
  await standIn?.stop();
});

/** Runs sequence `seed` on both sides; its first mismatch (the state differs after it), if any. */
async function runSequence(seed: number, length: number, verbose: boolean): Promise<Mismatch | undefined> {
  const base = `diff:${seed}`;
  const steps = generate(seed, length, commands, base);
  const history: string[] = [];
  try {
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      const [a, b] = await Promise.all([run(redis, step), run(memory, step)]);
      const line = `#${i} ${showStep(step)} -> ${showOutcome(a)}`;
      if (verbose) process.stdout.write(`${line}\n`);
      if (!same(step.kind, a, b)) {
        const what = step.name === 'EVAL' || step.name === 'EVALSHA' ? `${step.name} ${show(step.args[0])}` : step.name;
        return { what, seed, step: i, command: showStep(step), redis: showOutcome(a), memory: showOutcome(b), history };
      }
      history.push(line);
      if (step.sleepAfter) await sleep(step.sleepAfter);
    }
    return undefined;
  } finally {
    const keys = sequenceKeys(base);
    await Promise.all([redis.command('DEL', keys), memory.command('DEL', keys)]);
  }
}

/** What a reply is, for grouping mismatches: `reply`, or `error` and the Redis error code (WRONGTYPE, ERR...). */
function shape(outcome: string): string {
  const m = /^error \S+ (?:[A-Z]+(?: \S+)?: )?(\S+)/.exec(outcome);
  return m ? `error ${m[1]}` : 'reply';
}

/** The environment that replays sequence `seed` (what makes the sequences must be the same). */
function replayEnv(seed: number): string {
  const same = ['DIFF_COMMANDS', 'DIFF_SKIP', 'DIFF_SKIP_SCRIPTS', 'DIFF_ERRORS'].filter((name) => process.env[name]);
  return [`DIFF_SEED=${seed}`, ...same.map((name) => `${name}=${JSON.stringify(process.env[name])}`)].join(' ');
}

/** Mismatches grouped by command (by script, for EVAL) and how each side answered. */
function report(mismatches: Mismatch[]): string {
  const groups = new Map<string, Mismatch[]>();
  for (const m of mismatches) {
    const signature = `${m.what}: redis-server ${shape(m.redis)}, memory ${shape(m.memory)}`;
    groups.set(signature, [...(groups.get(signature) ?? []), m]);
  }
  const lines = [`${mismatches.length} sequence(s) differ between redis-server and ${memoryLabel}, ${groups.size} way(s):`];
  for (const [signature, group] of groups) {
    const m = group[0];
    lines.push(
      ``,
      `${signature} (${group.length} sequence(s), seeds ${group
        .slice(0, 12)
        .map((x) => x.seed)
        .join(' ')}${group.length > 12 ? ' ...' : ''})`,
      `  seed ${m.seed}, step ${m.step}: ${m.command}`,
      `    redis-server: ${m.redis}`,
      `    memory:       ${m.memory}`,
      `    replay: ${replayEnv(m.seed)}; the steps before it:`,
      ...m.history.slice(-6).map((h) => `      ${h}`),
    );
  }
  return lines.join('\n');
}

describe(`memory:// against redis-server, command by command`, () => {
  it('random sequences give the same replies', async (t) => {
    const replay = process.env.DIFF_SEED;
    const length = env('DIFF_COMMANDS', 100);
    const first = replay ? Number(replay) : env('DIFF_BASE_SEED', 1);
    const count = replay ? 1 : env('DIFF_SEQUENCES', 200);
    const started = Date.now();
    const mismatches: Mismatch[] = [];
    for (let seed = first; seed < first + count; seed++) {
      const m = await runSequence(seed, length, Boolean(replay));
      if (m) mismatches.push(m);
    }
    t.diagnostic(
      `differential: ${count} sequences x ${length} commands (${count * length} per side, ${commands.length} kinds of command) ` +
        `against ${memoryLabel}, seeds ${first}..${first + count - 1}${left}, in ${Date.now() - started} ms`,
    );
    if (dropped.length) t.diagnostic(`differential: left out, memory:// does not support them: ${dropped.join(' ')}`);
    if (mismatches.length) assert.fail(report(mismatches));
  });

  it('scripts give the same replies, whatever the keys hold', async (t) => {
    // every script against every kind of value at its keys
    const states: [string, Arg[][]][] = [
      ['missing', []],
      ['text', [['SET', 'K1', 'hello']]],
      ['integer', [['SET', 'K1', '41']]],
      ['float', [['SET', 'K1', '1.5']]],
      [
        'hash',
        [
          ['HSET', 'K1', 'f1', 'v1', 'f2', '2'],
          ['SET', 'K2', 'x'],
        ],
      ],
      ['zset', [['ZADD', 'K1', '1', 'a', '2.5', 'b']]],
      ['set', [['SADD', 'K1', 'x', 'y']]],
    ];
    const g = new Gen(mulberry32(7), []);
    let ran = 0;
    const differ: string[] = [];
    for (const [stateName, setup] of states) {
      for (const s of scripts) {
        const keys = ['lua:K1', 'lua:K2'];
        const argv = s.argv?.(g) ?? [];
        for (const side of [redis, memory]) {
          await side.command('DEL', keys);
          for (const [name, ...args] of setup) {
            await side.command(
              name as string,
              args.map((a) => (a === 'K1' ? keys[0] : a === 'K2' ? keys[1] : a)),
            );
          }
        }
        const step: Step = {
          name: 'EVAL',
          args: [s.body, String(s.keys), ...keys.slice(0, s.keys), ...argv],
          kind: 'exact',
          sleepAfter: 0,
        };
        const [a, b] = await Promise.all([run(redis, step), run(memory, step)]);
        // and what the script left behind
        const check: Step = { name: 'EVAL', args: [DUMP_KEYS, '2', ...keys], kind: 'exact', sleepAfter: 0 };
        const [after1, after2] = await Promise.all([run(redis, check), run(memory, check)]);
        ran++;
        if (!same('exact', a, b) || !same('exact', after1, after2)) {
          differ.push(
            `with ${stateName} at KEYS[1]: ${showStep(step)}\n  redis-server: ${showOutcome(a)} then ${showOutcome(after1)}\n` +
              `  memory:       ${showOutcome(b)} then ${showOutcome(after2)}`,
          );
        }
      }
    }
    for (const side of [redis, memory]) await side.command('DEL', ['lua:K1', 'lua:K2']);
    t.diagnostic(`differential: ${ran} script runs (${scripts.length} scripts x ${states.length} states) against ${memoryLabel}`);
    if (differ.length) assert.fail(`${differ.length} script run(s) differ:\n\n${differ.join('\n\n')}`);
  });
});

/** What a key holds, in one reply: its type and its content, for the Lua test. */
const DUMP_KEYS = `
local out = {}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k).ok
  local v
  if t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'hash' then v = redis.call('HGETALL', k); table.sort(v)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif t == 'set' then v = redis.call('SMEMBERS', k); table.sort(v)
  elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
  else v = {} end
  out[i] = {t, v, redis.call('PTTL', k) > 0}
end
return out
`;
