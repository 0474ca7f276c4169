import { ChangeDetectionStrategy, Component, inject } from '@angular/core';
import { Prompt } from 'orchestra-client';

import { DEMO_NOTICE } from './app.config';

@Component({
  selector: 'app-root',
  imports: [Prompt],
  templateUrl: './app.html',
  styleUrl: './app.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class App {
  protected readonly notice = inject(DEMO_NOTICE, { optional: true });
}
