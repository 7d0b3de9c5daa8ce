// The app on nestjs-redis-native: one module, one connection, the package's services.
import { Module } from '@nestjs/common';
import { RedisModule } from 'nestjs-redis-native/nest';
import { PingController } from '../common';
import { AppController } from './app.controller';

@Module({
  imports: [RedisModule.forRoot({ url: process.env.REDIS_URL, clientName: 'bench-ours' })],
  controllers: [PingController, AppController],
})
export class AppModule {}
