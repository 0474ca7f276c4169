/*
 * Public API of orchestra-client: the only import path for apps.
 */
export { provideOrchestra, ORCHESTRA_CONFIG } from './lib/config';
export type { OrchestraConfig, OrchestraToken, OrchestraTokenProvider } from './lib/config';
export { sessionToken, SessionTokenError } from './lib/auth/session-token';
export type { SessionTokenErrorReason, SessionTokenOptions } from './lib/auth/session-token';
export { AskClient } from './lib/ask/ask-client';
export { AskSession } from './lib/ask/ask-session';
export type { AskStatus } from './lib/ask/ask-session';
export type {
  AskDelta,
  AskDone,
  AskError,
  AskErrorCode,
  AskEvent,
  AskRequest,
  AskUsage,
  ChatMessage,
  ClientErrorCode,
  GatewayErrorCode,
} from './lib/ask/ask-events';
export { SseParser } from './lib/sse/sse-parser';
export type { SseMessage } from './lib/sse/sse-parser';
export { describeAskError } from './lib/prompt/error-text';
export { Prompt } from './lib/prompt/prompt';
export type { PromptFormat, ThreadItem } from './lib/prompt/prompt';
export { Markdown } from './lib/markdown/markdown';
export { renderMarkdown } from './lib/markdown/markdown-html';
export { Feedback } from './lib/feedback/feedback';
export { FeedbackClient, FEEDBACK_COMMENT_MAX } from './lib/feedback/feedback-client';
export type { FeedbackScore } from './lib/feedback/feedback-client';
export { ConversationClient } from './lib/conversation/conversation-client';
export type { ThreadMessage } from './lib/conversation/conversation-client';
