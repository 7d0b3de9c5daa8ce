// What both apps share: the fixtures the harness preloads, the request and response shapes,
// the limits and TTLs, and GET /ping (the noise floor: no Redis, the same code in both apps).
import { BadRequestException, Controller, Get } from '@nestjs/common';
import { createHash } from 'node:crypto';

/** Products preloaded in the cache, ids 1..PRODUCTS. */
export const PRODUCTS = 1000;
/** Sessions preloaded for GET /me. */
export const SESSIONS = 1000;
/** Users POST /login picks from. */
export const USERS = 10_000;

/** The per-IP limit of GET /me: never reached during a run. */
export const ME_RATE_LIMIT = 1_000_000_000;
export const ME_RATE_WINDOW_SECONDS = 60;

export const SESSION_TTL_SECONDS = 86_400;
export const REFRESH_TTL_SECONDS = 30 * 86_400;
export const IDEMPOTENCY_RESULT_TTL_SECONDS = 86_400;
export const IDEMPOTENCY_LOCK_TTL_SECONDS = 60;

export interface Product {
  id: number;
  sku: string;
  name: string;
  description: string;
  price: { amount: number; currency: string };
  stock: number;
  tags: string[];
  image: string;
  updatedAt: string;
}

export interface SessionData {
  userId: string;
  name: string;
  email: string;
  roles: string[];
  device: string;
}

export interface User {
  id: string;
  name: string;
  email: string;
  roles: string[];
}

export interface LoginBody {
  userId: string;
  name: string;
  email: string;
  device?: string;
}

export interface LoginResponse {
  sessionId: string;
  refreshToken: string;
}

export interface OrderBody {
  productId: number;
  quantity: number;
}

export interface Order {
  orderId: string;
  productId: number;
  quantity: number;
  status: 'created';
}

/** Product `id`: a JSON document of about 500 bytes. */
export function product(id: number): Product {
  return {
    id,
    sku: `SKU-${String(id).padStart(8, '0')}`,
    name: `Stainless steel water bottle, 750 ml, model ${id}`,
    description:
      'Double-walled, vacuum-insulated bottle that keeps drinks cold for 24 hours and hot for 12. ' +
      'Leak-proof lid with a carry loop, powder-coated finish, fits most cup holders, dishwasher safe.',
    price: { amount: 1999 + (id % 500), currency: 'EUR' },
    stock: (id * 37) % 1000,
    tags: ['outdoor', 'kitchen', 'bpa-free', `series-${id % 10}`],
    image: `https://cdn.example.com/products/${id}/main-1200x1200.jpg`,
    updatedAt: '2026-01-15T10:00:00.000Z',
  };
}

/** The id of preloaded session `i` (0 <= i < SESSIONS): 43 URL-safe characters, like a random session id. */
export function sessionId(i: number): string {
  return createHash('sha256').update(`bench-session-${i}`).digest('base64url');
}

/** The data of preloaded session `i`. */
export function sessionData(i: number): SessionData {
  return user(`u${i}`, 'web');
}

export function user(userId: string, device: string): SessionData {
  return { userId, name: `User ${userId}`, email: `${userId}@example.com`, roles: ['customer'], device };
}

export function userOf(session: SessionData): User {
  return { id: session.userId, name: session.name, email: session.email, roles: session.roles };
}

export function checkLogin(body: Partial<LoginBody> | undefined): LoginBody {
  if (
    !body ||
    typeof body.userId !== 'string' ||
    !body.userId ||
    typeof body.name !== 'string' ||
    typeof body.email !== 'string'
  ) {
    throw new BadRequestException('userId, name and email are required');
  }
  return body as LoginBody;
}

export function newOrder(orderId: string, body: Partial<OrderBody> | undefined): Order {
  if (!body || !Number.isInteger(body.productId) || !Number.isInteger(body.quantity) || body.quantity! < 1) {
    throw new BadRequestException('productId and quantity are required');
  }
  return { orderId, productId: body.productId!, quantity: body.quantity!, status: 'created' };
}

@Controller()
export class PingController {
  @Get('ping')
  ping(): { ok: true } {
    return { ok: true };
  }
}
