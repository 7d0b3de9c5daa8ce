import {
  Body,
  Controller,
  Get,
  Headers,
  Inject,
  NotFoundException,
  Param,
  Post,
  UnauthorizedException,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { ThrottlerGuard } from '@nestjs/throttler';
import type { Redis } from 'ioredis';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  checkLogin,
  newOrder,
  REFRESH_TTL_SECONDS,
  SESSION_TTL_SECONDS,
  user,
  userOf,
  type LoginBody,
  type LoginResponse,
  type Order,
  type OrderBody,
  type Product,
  type User,
} from '../common';
import { execOrThrow, IdempotencyInterceptor, REDIS, RefreshTokenStore, SessionStore } from './redis-stores';

@Controller()
export class AppController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly sessions: SessionStore,
    private readonly tokens: RefreshTokenStore,
  ) {}

  @Get('product/:id')
  async product(@Param('id') id: string): Promise<Product> {
    const json = await this.redis.get(`product:${id}`);
    if (json === null) throw new NotFoundException();
    return JSON.parse(json) as Product;
  }

  @Get('me')
  @UseGuards(ThrottlerGuard) // the module's `default` throttler: ME_RATE_LIMIT per ME_RATE_WINDOW_SECONDS, per IP
  async me(@Headers('x-session') sessionId?: string): Promise<User> {
    if (!sessionId) throw new UnauthorizedException();
    const session = await this.sessions.get(sessionId);
    if (!session) throw new UnauthorizedException();
    return userOf(session);
  }

  @Post('login')
  async login(@Body() body?: Partial<LoginBody>): Promise<LoginResponse> {
    const { userId, name, email, device = 'web' } = checkLogin(body);
    const sessionId = randomUUID();
    const refreshToken = randomBytes(32).toString('base64url');
    // session, user index and refresh token in one MULTI: one round trip, all or nothing
    const tx = this.redis.multi();
    this.sessions.create(tx, sessionId, { ...user(userId, device), name, email }, SESSION_TTL_SECONDS);
    this.tokens.store(tx, userId, refreshToken, sessionId, REFRESH_TTL_SECONDS);
    await execOrThrow(tx);
    return { sessionId, refreshToken };
  }

  @Post('orders')
  @UseInterceptors(IdempotencyInterceptor)
  createOrder(@Body() body?: Partial<OrderBody>): Order {
    return newOrder(randomUUID(), body);
  }
}
