import { bootstrap } from '../bootstrap';
import { AppModule } from './app.module';

bootstrap(AppModule);
