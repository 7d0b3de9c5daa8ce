import { Socket } from 'node:net';

/**
 * A reply as the test support reads it: simple and bulk strings as strings, integers as
 * numbers, nil as null, arrays as arrays, and an error inside an array as an Error.
 */
export type RespReply = string | number | null | Error | RespReply[];

function encode(args: readonly (string | number)[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) {
    const s = String(arg);
    parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
  }
  return Buffer.from(parts.join(''));
}

/** The reply that starts at `at` and where the next one starts, or undefined while incomplete. */
function parse(buf: Buffer, at: number): [RespReply, number] | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buf[at])) {
    case '+':
      return [line, next];
    case '-':
      return [new Error(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const length = Number(line);
      if (length < 0) return [null, next];
      if (buf.length < next + length + 2) return undefined;
      return [buf.toString('utf8', next, next + length), next + length + 2];
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: RespReply[] = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, pos);
        if (!item) return undefined;
        items.push(item[0]);
        pos = item[1];
      }
      return [items, pos];
    }
    default:
      throw new Error(`not a RESP2 reply: ${JSON.stringify(buf.toString('utf8', at, Math.min(buf.length, at + 40)))}`);
  }
}

/**
 * Sends `commands` to the Redis (or Sentinel) on 127.0.0.1:`port` over a connection of its
 * own, in one write, and closes it once every reply is in: enough for the test support to
 * watch servers without a client library (and one connection, for `WAIT` or `READONLY`).
 * Error replies come back as Errors in their place. Rejects when the server cannot be
 * reached or does not answer within `timeoutMs` (a paused server).
 */
export function respPipeline(
  port: number,
  commands: readonly (readonly (string | number)[])[],
  timeoutMs = 2000,
): Promise<RespReply[]> {
  const what = commands.map((c) => c.join(' ')).join('; ');
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let buf = Buffer.alloc(0);
    const fail = (message: string) => {
      socket.destroy();
      reject(new Error(`${what} on 127.0.0.1:${port}: ${message}`));
    };
    socket.setTimeout(timeoutMs, () => fail(`no reply within ${timeoutMs} ms`));
    socket.on('error', (e) => fail(e.message));
    // a server may close the connection without a reply (Sentinel drops the clients of a
    // master it demotes): then there is no 'error', and no timeout fires any more
    socket.on('close', () => fail('the connection closed before every reply came'));
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const replies: RespReply[] = [];
      let pos = 0;
      try {
        while (replies.length < commands.length) {
          const parsed = parse(buf, pos);
          if (!parsed) return; // more to come
          replies.push(parsed[0]);
          pos = parsed[1];
        }
      } catch (e) {
        return fail((e as Error).message);
      }
      socket.destroy();
      resolve(replies);
    });
    socket.connect(port, '127.0.0.1', () => socket.write(Buffer.concat(commands.map(encode))));
  });
}

/** One command, as `respPipeline` sends it; an error reply rejects, naming the command and the server. */
export async function respCommand(port: number, args: readonly (string | number)[], timeoutMs = 2000): Promise<RespReply> {
  const [reply] = await respPipeline(port, [args], timeoutMs);
  if (reply instanceof Error) throw new Error(`${args.join(' ')} on 127.0.0.1:${port}: ${reply.message}`);
  return reply;
}

/** `INFO [section]` of the server on `port`, as `{ field: value }`. */
export async function info(port: number, section?: string): Promise<Record<string, string>> {
  return parseInfo(String(await respCommand(port, section ? ['INFO', section] : ['INFO'])));
}

/** `field:value` lines (INFO, CLUSTER INFO) as an object; `# Section` lines and blanks are skipped. */
export function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

/** A flat `[field, value, field, value, ...]` reply (SENTINEL MASTER, SENTINEL REPLICAS) as an object. */
export function pairs(reply: RespReply): Record<string, string> {
  const fields: Record<string, string> = {};
  if (!Array.isArray(reply)) return fields;
  for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = String(reply[i + 1]);
  return fields;
}

/** Polls `check` every `everyMs` until it returns a value (not undefined), or fails after `ms`. */
export async function pollUntil<T>(check: () => Promise<T | undefined>, what: string, ms: number, everyMs = 25): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      last = e; // a node restarting or paused: try again
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
