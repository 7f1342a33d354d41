/**
 * The Redis store's two server-side scripts. Each runs atomically in Redis, so admission
 * (check every limit, then reserve) is one step for all processes. They follow
 * `memory.ts` step for step; time is the server's (`TIME`), so the processes' clocks
 * need not agree. Every key a script touches is passed in `KEYS` and carries the same hash
 * tag, so the scripts run on Redis Cluster too.
 *
 * A window is a hash from bucket number (`floor(time / (window / 60))`) to its count, as in
 * `slidingWindow.ts`: the count is the sum of the last 61 buckets, never less than the
 * true sliding count.
 */

const common = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- the buckets of a window still in it at now, oldest first; older ones are deleted
local function buckets(key, widthMs)
  local head = math.floor(now / widthMs)
  local all = redis.call('HGETALL', key)
  local live = {}
  local stale = {}
  local sum = 0
  for i = 1, #all, 2 do
    local b = tonumber(all[i])
    local c = tonumber(all[i + 1])
    if b > head - 61 then
      live[#live + 1] = { b, c }
      sum = sum + c
    else
      stale[#stale + 1] = all[i]
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  table.sort(live, function(x, y) return x[1] < y[1] end)
  return live, sum
end

-- how long until amount more fits (0: it fits now), as slidingWindow.fitsAt
local function waitFor(key, limit, widthMs, amount)
  local live, sum = buckets(key, widthMs)
  if sum + amount <= limit then return 0 end
  for _, entry in ipairs(live) do
    sum = sum - entry[2]
    if sum + amount <= limit then return math.max(1, (entry[1] + 61) * widthMs - now) end
  end
  return math.max(1, (math.floor(now / widthMs) + 61) * widthMs - now)
end

local function count(key, widthMs, amount)
  local bucket = math.floor(now / widthMs)
  redis.call('HINCRBY', key, bucket, amount)
  redis.call('PEXPIRE', key, widthMs * 62)
end
`

/**
 * KEYS: 1 endpoint cooldown, 2 group cooldown, 3 circuit, 4 probes, 5 rpm, 6 tpm, 7 rpd,
 * 8 balancer spend, 9 endpoint spend.
 * ARGV: 1 tokens, 2 rpm, 3 tpm, 4 rpd (0: no limit), 5 half-open probes, 6 call id,
 * 7 probe timeout ms, 8 balancer budget limit, 9 ms to its period's end, 10 endpoint
 * budget limit, 11 ms to its period's end ('' budgets: none).
 * Returns { 1, now, probe } or { 0, reason, retry after ms (-1: unknown) }.
 */
export const admit = `${common}
local tokens = tonumber(ARGV[1])
local cooldown = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0'))
if now < cooldown then return { 0, 'cooling-down', cooldown - now } end

local probe = 0
local untilText = redis.call('HGET', KEYS[3], 'until')
if untilText then
  local openUntil = tonumber(untilText)
  if now < openUntil then return { 0, 'unhealthy', openUntil - now } end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[5]) then return { 0, 'probing', ${1_000} } end
  probe = 1
end

local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local rpd = tonumber(ARGV[4])
if tpm > 0 and tokens > tpm then return { 0, 'too-large', -1 } end
if rpm > 0 then
  local wait = waitFor(KEYS[5], rpm, ${60_000 / 60}, 1)
  if wait > 0 then return { 0, 'no-headroom', wait } end
end
if tpm > 0 then
  -- a call without an estimate still needs room for one token (as the local check says)
  local wait = waitFor(KEYS[6], tpm, ${60_000 / 60}, math.max(1, tokens))
  if wait > 0 then return { 0, 'no-headroom', wait } end
end
if rpd > 0 then
  local wait = waitFor(KEYS[7], rpd, ${86_400_000 / 60}, 1)
  if wait > 0 then return { 0, 'no-headroom', wait } end
end
if ARGV[8] ~= '' and tonumber(redis.call('GET', KEYS[8]) or '0') >= tonumber(ARGV[8]) - 1e-9 then
  return { 0, 'over-budget', math.max(0, tonumber(ARGV[9])) }
end
if ARGV[10] ~= '' and tonumber(redis.call('GET', KEYS[9]) or '0') >= tonumber(ARGV[10]) - 1e-9 then
  return { 0, 'over-budget', math.max(0, tonumber(ARGV[11])) }
end

if rpm > 0 then count(KEYS[5], ${60_000 / 60}, 1) end
if tpm > 0 and tokens > 0 then count(KEYS[6], ${60_000 / 60}, tokens) end
if rpd > 0 then count(KEYS[7], ${86_400_000 / 60}, 1) end
if probe == 1 then
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), ARGV[6])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[7]))
end
return { 1, now, probe }
`

/**
 * KEYS: 1 endpoint cooldown, 2 group cooldown ('' ARGV[16]: no group), 3 circuit,
 * 4 probes, 5 tpm, 6 balancer spend, 7 endpoint spend.
 * ARGV: 1 tokens delta, 2 admitted at, 3 cooldown ms, 4 spent, 5 balancer spend ttl ms,
 * 6 endpoint spend ttl ms ('': none), 7 open ms, 8 openings, 9 closed (1/0), 10 probe's
 * call id, 11 its outcome, 12 recovery ms, 13 recovery factor, 14 max recovery ms,
 * 15 how long a circuit's openings are remembered, 16 has group (1/0).
 */
export const settle = `${common}
local delta = tonumber(ARGV[1])
if delta > 0 or (delta < 0 and redis.call('EXISTS', KEYS[5]) == 1) then
  local bucket = math.floor(tonumber(ARGV[2]) / ${60_000 / 60})
  if bucket > math.floor(now / ${60_000 / 60}) - 61 then
    local after = redis.call('HINCRBY', KEYS[5], bucket, delta)
    if after < 0 then redis.call('HSET', KEYS[5], bucket, 0) end
    redis.call('PEXPIRE', KEYS[5], ${(60_000 / 60) * 62})
  end
end
local spent = tonumber(ARGV[4])
if spent > 0 then
  if ARGV[5] ~= '' then
    redis.call('INCRBYFLOAT', KEYS[6], spent)
    redis.call('PEXPIRE', KEYS[6], math.max(1, math.ceil(tonumber(ARGV[5]))))
  end
  if ARGV[6] ~= '' then
    redis.call('INCRBYFLOAT', KEYS[7], spent)
    redis.call('PEXPIRE', KEYS[7], math.max(1, math.ceil(tonumber(ARGV[6]))))
  end
end
local cooldownMs = tonumber(ARGV[3])
if cooldownMs > 0 then
  local untilMs = now + cooldownMs
  if untilMs > tonumber(redis.call('GET', KEYS[1]) or '0') then
    redis.call('SET', KEYS[1], untilMs, 'PX', cooldownMs)
  end
  if ARGV[16] == '1' and untilMs > tonumber(redis.call('GET', KEYS[2]) or '0') then
    redis.call('SET', KEYS[2], untilMs, 'PX', cooldownMs)
  end
end
if ARGV[9] == '1' or (ARGV[10] ~= '' and ARGV[11] == 'success') then
  redis.call('DEL', KEYS[3], KEYS[4])
  return 1
end
local openUntil = tonumber(redis.call('HGET', KEYS[3], 'until') or '0')
local openings = tonumber(redis.call('HGET', KEYS[3], 'openings') or '0')
local reopen = false
if ARGV[10] ~= '' then
  redis.call('ZREM', KEYS[4], ARGV[10])
  if ARGV[11] == 'failure' then
    openings = openings + 1
    local ms = math.ceil(math.min(tonumber(ARGV[14]), tonumber(ARGV[12]) * tonumber(ARGV[13]) ^ (openings - 1)))
    openUntil = math.max(openUntil, now + ms)
    reopen = true
  end
end
local openMs = tonumber(ARGV[7])
if openMs > 0 then
  openUntil = math.max(openUntil, now + openMs)
  openings = math.max(openings, tonumber(ARGV[8]))
  reopen = true
end
if reopen then
  redis.call('HSET', KEYS[3], 'until', openUntil, 'openings', openings)
  redis.call('PEXPIRE', KEYS[3], math.max(1, math.ceil(openUntil - now + tonumber(ARGV[15]))))
end
return 1
`
