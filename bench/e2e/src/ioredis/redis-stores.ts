// The Redis code a team writes by hand on ioredis: sessions (a JSON string with EX, and a
// per-user index set), refresh tokens (the SHA-256 hash with EX), and an idempotency
// interceptor (SET NX PX as the lock, SET of the response, GET to replay).
import {
  BadRequestException,
  type CallHandler,
  ConflictException,
  type ExecutionContext,
  Inject,
  Injectable,
  type NestInterceptor,
} from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ChainableCommander, Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import { catchError, from, mergeMap, type Observable, of, throwError } from 'rxjs';
import { IDEMPOTENCY_LOCK_TTL_SECONDS, IDEMPOTENCY_RESULT_TTL_SECONDS, type SessionData } from '../common';

export const REDIS = Symbol('REDIS');

/** Runs a MULTI and throws the first command error, if any (ioredis resolves them as [error, result] pairs). */
export async function execOrThrow(tx: ChainableCommander): Promise<void> {
  const results = await tx.exec();
  if (!results) throw new Error('transaction aborted');
  for (const [error] of results) if (error) throw error;
}

@Injectable()
export class SessionStore {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async get(sessionId: string): Promise<SessionData | null> {
    const json = await this.redis.get(`session:${sessionId}`);
    return json === null ? null : (JSON.parse(json) as SessionData);
  }

  /** Queues the session and its entry in the user's index on `tx`. */
  create(tx: ChainableCommander, sessionId: string, data: SessionData, ttlSeconds: number): void {
    const userIndex = `session-user:${data.userId}`;
    tx.set(`session:${sessionId}`, JSON.stringify({ ...data, createdAt: Date.now() }), 'EX', ttlSeconds)
      .sadd(userIndex, sessionId)
      .expire(userIndex, ttlSeconds);
  }
}

@Injectable()
export class RefreshTokenStore {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  private key(userId: string, token: string): string {
    return `refresh:${userId}:${createHash('sha256').update(token).digest('hex')}`;
  }

  /** Queues the token (its hash, never the token) on `tx`. */
  store(tx: ChainableCommander, userId: string, token: string, sessionId: string, ttlSeconds: number): void {
    tx.set(this.key(userId, token), JSON.stringify({ sessionId, issuedAt: Date.now() }), 'EX', ttlSeconds);
  }

  async isValid(userId: string, token: string): Promise<boolean> {
    return (await this.redis.exists(this.key(userId, token))) === 1;
  }
}

const IN_PROGRESS = 'in-progress';

interface StoredResponse {
  status: number;
  body: unknown;
}

/** `Idempotency-Key`: the first request runs and its response is stored; a later one gets it replayed; a concurrent one 409. */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const req = context.switchToHttp().getRequest<FastifyRequest>();
    const res = context.switchToHttp().getResponse<FastifyReply>();
    const idempotencyKey = req.headers['idempotency-key'];
    if (typeof idempotencyKey !== 'string' || idempotencyKey === '') return next.handle();
    if (idempotencyKey.length > 255) throw new BadRequestException('Idempotency-Key is longer than 255 characters');

    const key = `idempotency:${req.method}:${req.routeOptions.url}:${idempotencyKey}`;
    const locked = await this.redis.set(key, IN_PROGRESS, 'PX', IDEMPOTENCY_LOCK_TTL_SECONDS * 1000, 'NX');
    if (locked !== 'OK') {
      const stored = await this.redis.get(key);
      if (stored === null || stored === IN_PROGRESS)
        throw new ConflictException('a request with this Idempotency-Key is in progress');
      const { status, body } = JSON.parse(stored) as StoredResponse;
      res.status(status).header('Idempotent-Replayed', 'true');
      return of(body);
    }

    const status = req.method === 'POST' ? 201 : 200;
    return next.handle().pipe(
      mergeMap(async (body) => {
        const stored: StoredResponse = { status, body };
        await this.redis.set(key, JSON.stringify(stored), 'EX', IDEMPOTENCY_RESULT_TTL_SECONDS);
        return body;
      }),
      catchError((error) => from(this.redis.del(key)).pipe(mergeMap(() => throwError(() => error)))),
    );
  }
}
