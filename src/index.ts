/**
 * effect-llm-balancer: spread LLM calls across providers, API keys and deployments, keep
 * track of each endpoint's health, and fail over when one of them breaks or throttles.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Balancer from "./Balancer.js"

/**
 * @since 0.1.0
 */
export * as Batch from "./Batch.js"

/**
 * @since 0.1.0
 */
export * as Endpoint from "./Endpoint.js"

/**
 * @since 0.1.0
 */
export * as EndpointState from "./EndpointState.js"

/**
 * @since 0.1.0
 */
export * as Errors from "./Errors.js"

/**
 * @since 0.1.0
 */
export * as Event from "./Event.js"

/**
 * @since 0.1.0
 */
export * as Health from "./Health.js"

/**
 * @since 0.1.0
 */
export * as Outcome from "./Outcome.js"

/**
 * @since 0.1.0
 */
export * as RateLimit from "./RateLimit.js"

/**
 * @since 0.1.0
 */
export * as Router from "./Router.js"
export * as Simulation from "./Simulation.js"

/**
 * The state several balancers share (the Redis one is `effect-llm-balancer/RedisStore`,
 * kept out of this index so that `ioredis` stays optional).
 *
 * @since 0.1.0
 */
export * as Store from "./Store.js"

/**
 * @since 0.1.0
 */
export * as Strategy from "./Strategy.js"

/**
 * @since 0.1.0
 */
export * as Chat from "./llm/Chat.js"

/**
 * @since 0.1.0
 */
export * as Llm from "./Llm.js"

/**
 * @since 0.1.0
 */
export * as Provider from "./llm/Provider.js"

/**
 * @since 0.1.0
 */
export * as Anthropic from "./llm/Anthropic.js"

/**
 * @since 0.1.0
 */
export * as OpenAiCompatible from "./llm/OpenAiCompatible.js"

/**
 * @since 0.1.0
 */
export * as MockProvider from "./testing/MockProvider.js"
