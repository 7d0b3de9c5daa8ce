// The app on nestjs-redis-native: one module, one connection, the package's services.
import { Module } from '@nestjs/common';
import { RedisModule } from 'nestjs-redis-native/nest';
import { PingController } from '../common';
import { AppController } from './app.controller';

@Module({
  // production settings: the near cache serves the product reads (NODE_ENV=production: no stack capture)
  imports: [
    RedisModule.forRoot({ url: process.env.REDIS_URL, clientName: 'bench-ours', nearCache: process.env.E2E_NEAR_CACHE !== '0' }),
  ],
  controllers: [PingController, AppController],
})
export class AppModule {}
