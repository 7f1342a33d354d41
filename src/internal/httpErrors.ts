/**
 * What an HTTP provider's failure means, shared by the OpenAI-compatible and Anthropic
 * providers: first the provider's own reading of its error body (context length, content
 * filter), then the status, then the transport.
 */
import type { HttpClientError } from "@effect/platform"
import * as Errors from "../Errors.js"
import * as RateLimit from "../RateLimit.js"

/** The most of a provider's error body repeated in an error's `detail`. */
const maxDetail = 500

export const clip = (text: string): string => text.length > maxDetail ? `${text.slice(0, maxDetail)}...` : text

/**
 * The error for a non-2xx answer. `specific` is the provider's own reading of the body
 * (return `undefined` to fall back to the status).
 */
export const fromStatus = (
  endpoint: string,
  status: number,
  headers: RateLimit.Headers,
  detail: string,
  now: number
): Errors.ProviderError => {
  const fields = { endpoint, status, detail: clip(detail) }
  if (status === 429) return new Errors.RateLimited({ ...fields, retryAfter: RateLimit.retryAfter(headers, now) })
  if (status === 401 || status === 403) return new Errors.Unauthorized(fields)
  if (status === 408 || status === 504) return new Errors.Timeout(fields)
  if (status === 413) return new Errors.ContextLengthExceeded(fields)
  if (status >= 500) return new Errors.Unavailable(fields)
  if (status === 404 || status === 409 || status === 425) return new Errors.Unavailable(fields)
  if (status >= 400) return new Errors.BadRequest(fields)
  return new Errors.MalformedResponse({ ...fields, detail: clip(`unexpected status ${status}: ${detail}`) })
}

/**
 * A failure before an answer: the connection was refused, reset or timed out (all
 * `Unavailable`: another endpoint may well answer), or the request could not be built.
 */
export const fromClientError = (endpoint: string, error: HttpClientError.HttpClientError): Errors.ProviderError => {
  if (error._tag === "RequestError") {
    return error.reason === "Transport"
      ? new Errors.Unavailable({ endpoint, detail: clip(`connection failed: ${describe(error.cause)}`) })
      : new Errors.BadRequest({
        endpoint,
        detail: clip(`the request could not be sent (${error.reason}): ${describe(error.cause)}`)
      })
  }
  return new Errors.MalformedResponse({
    endpoint,
    status: error.response.status,
    detail: clip(`the response could not be read (${error.reason}): ${describe(error.cause)}`)
  })
}

export const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    const inner = (cause as { cause?: unknown }).cause
    const innerText = inner instanceof Error ? ` (${inner.message})` : ""
    return `${typeof code === "string" ? `${code}: ` : ""}${cause.message}${innerText}`
  }
  return typeof cause === "string" ? cause : "unknown error"
}
