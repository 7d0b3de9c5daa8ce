import { Body, Controller, Get, Headers, NotFoundException, Param, Post, UnauthorizedException } from '@nestjs/common';
import { randomBytes, randomUUID } from 'node:crypto';
import { CacheService, Idempotent, RateLimit, SessionService, TokenService, type CacheNamespace } from 'nestjs-redis-native/nest';
import {
  checkLogin,
  ME_RATE_LIMIT,
  ME_RATE_WINDOW_SECONDS,
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
  type SessionData,
  type User,
} from '../common';

@Controller()
export class AppController {
  private readonly products: CacheNamespace;

  constructor(
    cache: CacheService,
    private readonly sessions: SessionService,
    private readonly tokens: TokenService,
  ) {
    this.products = cache.namespace('product');
  }

  @Get('product/:id')
  async product(@Param('id') id: string): Promise<Product> {
    const product = await this.products.get<Product>(id);
    if (!product) throw new NotFoundException();
    return product;
  }

  @Get('me')
  @RateLimit({ limit: ME_RATE_LIMIT, windowSeconds: ME_RATE_WINDOW_SECONDS })
  async me(@Headers('x-session') sessionId?: string): Promise<User> {
    if (!sessionId) throw new UnauthorizedException();
    const session = await this.sessions.getSession<SessionData>(sessionId);
    if (!session) throw new UnauthorizedException();
    return userOf(session);
  }

  @Post('login')
  async login(@Body() body?: Partial<LoginBody>): Promise<LoginResponse> {
    const { userId, name, email, device = 'web' } = checkLogin(body);
    const sessionId = randomUUID();
    const refreshToken = randomBytes(32).toString('base64url');
    // both sent at once: one round trip, as the ioredis app's MULTI
    await Promise.all([
      this.tokens.storeRefreshToken(userId, refreshToken, REFRESH_TTL_SECONDS),
      this.sessions.createSession(sessionId, { ...user(userId, device), name, email }, SESSION_TTL_SECONDS),
    ]);
    return { sessionId, refreshToken };
  }

  @Post('orders')
  @Idempotent()
  createOrder(@Body() body?: Partial<OrderBody>): Order {
    return newOrder(randomUUID(), body);
  }
}
