import { ChangeDetectionStrategy, Component, effect, inject, signal } from '@angular/core';
import { Prompt } from 'orchestra-client';

import { DEMO_NOTICE } from './app.config';

/** Where the demo keeps the current conversation's id, so that a reload shows the thread again. */
export const CONVERSATION_KEY = 'orc-demo-conversation';

@Component({
  selector: 'app-root',
  imports: [Prompt],
  templateUrl: './app.html',
  styleUrl: './app.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class App {
  protected readonly notice = inject(DEMO_NOTICE, { optional: true });
  /** Two-way bound to `<orc-prompt>`: set on the first send, null after "New conversation". */
  protected readonly conversationId = signal<string | null>(readStored());

  constructor() {
    effect(() => store(this.conversationId()));
  }
}

function readStored(): string | null {
  try {
    return localStorage.getItem(CONVERSATION_KEY);
  } catch {
    return null; // storage disabled (privacy settings): a reload starts a new conversation
  }
}

function store(id: string | null): void {
  try {
    if (id === null) {
      localStorage.removeItem(CONVERSATION_KEY);
    } else {
      localStorage.setItem(CONVERSATION_KEY, id);
    }
  } catch {
    // storage disabled: nothing to keep
  }
}
