// Starts an app (each app's main.ts calls this with its module), with REDIS_URL set.
// Listens on 127.0.0.1 on a free port and prints `READY <port>` once it takes requests.
// SIGTERM closes the app (and its Redis connection) and exits normally, so that
// `--cpu-prof` can write its profile.
import 'reflect-metadata';
import type { Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';

export function bootstrap(module: Type<unknown>): void {
  start(module).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}

async function start(module: Type<unknown>): Promise<void> {
  const app = await NestFactory.create<NestFastifyApplication>(module, new FastifyAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  let closing = false;
  process.on('SIGTERM', () => {
    if (closing) return;
    closing = true;
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
  process.stdout.write(`READY ${port}\n`);
}
