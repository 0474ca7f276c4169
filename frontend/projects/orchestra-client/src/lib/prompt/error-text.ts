import { AskError } from '../ask/ask-events';

const TEXT_BY_CODE: Readonly<Record<string, string>> = {
  invalid_request: 'The gateway rejected the request as invalid.',
  invalid_token: 'Not authorized: the access token is invalid, expired or revoked.',
  token_expired: 'Not authorized: the session has expired.',
  insufficient_scope: 'This access token may not do that.',
  identity_provider_unavailable: 'The sign-in provider is unavailable.',
  app_disabled: 'This app is disabled on the gateway.',
  origin_not_allowed: 'This page’s origin is not allowed to use the gateway.',
  request_too_large: 'The prompt is too large.',
  quota_exceeded: 'Quota exceeded.',
  upstream_error: 'The model provider returned an error.',
  upstream_auth_failed: 'The gateway could not authenticate with the model provider.',
  upstream_unavailable: 'The model provider is unavailable.',
  upstream_timeout: 'The model provider took too long to answer.',
  cancelled: 'The answer was stopped.',
  not_found: 'The answer could not be found on the gateway.',
  stream_expired: 'The answer is no longer kept by the gateway.',
  network_error: 'Could not reach the gateway (network error).',
  stream_interrupted: 'The answer stopped before it was complete.',
  bad_response: 'The gateway sent a response this app does not understand.',
  token_unavailable: 'Could not obtain an access token.',
};

/** A readable sentence for an error, with the retry time when the gateway gave one. */
export function describeAskError(error: AskError): string {
  const known = TEXT_BY_CODE[error.code];
  // The client writes token_unavailable's message itself: it says which source failed and how.
  const text =
    known === undefined
      ? error.message
      : error.code === 'token_unavailable' && error.message
        ? `${known} ${error.message}`
        : known;
  const seconds = error.retryAfterSeconds;
  if (seconds === undefined) {
    return text;
  }
  return `${text} Try again in ${seconds} ${seconds === 1 ? 'second' : 'seconds'}.`;
}
