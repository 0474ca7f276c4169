import { ChangeDetectionStrategy, Component } from '@angular/core';
import { Prompt } from 'orchestra-client';

@Component({
  selector: 'app-root',
  imports: [Prompt],
  templateUrl: './app.html',
  styleUrl: './app.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class App {}
