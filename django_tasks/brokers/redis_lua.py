"""The Lua scripts of the Redis broker (``redis.py`` describes the key layout).

Every script takes the key prefix as ``ARGV[1]`` and builds its key names from it, so the
broker needs a single Redis server (or a primary with replicas), not a Redis Cluster.
Lua numbers are doubles: lease tokens (up to 2**62) are kept and compared as strings, and
scores are formatted with ``%.0f`` (exact below 2**53) rather than ``tostring`` (14 digits).
"""

from __future__ import annotations

from .base import WAKE_AHEAD_SECONDS

# The key names and what storing a new message takes: the start of every script.
_KEYS = f"local WAKE_AHEAD = {WAKE_AHEAD_SECONDS!r}\n" + """
local P = ARGV[1]
local function mkey(tag) return P .. ':m:' .. tag end
local function rkey(q) return P .. ':ready:' .. q end
local function dkey(q) return P .. ':delayed:' .. q end
local function lkey(q) return P .. ':leased:' .. q end
local function okey(o) return P .. ':owner:' .. o end
local function wkey(q) return P .. ':wake:' .. q end
local QUEUES = P .. ':queues'

-- Ready order: higher priority first, then publish order (the tag).
local function rank(priority, tag)
  return string.format('%.0f', (255 - tonumber(priority)) * 1099511627776 + tonumber(tag))
end

-- Store a new message's hash under tag, its fields at ARGV[i .. i+3]: queue, priority, task
-- id, body (see ``put_all``).
local function store(tag, i)
  redis.call('HSET', mkey(tag), 'b', ARGV[i + 3], 'q', ARGV[i], 'p', ARGV[i + 1],
             'id', ARGV[i + 2], 'd', 0, 'r', 0)
end

-- Wake-up tokens for a queue's idle consumers, of which the list keeps WAKE_KEEP: a token
-- nobody pops costs at most one empty fetch later, so the list is kept short.
local WAKE_KEEP = 32
local function push_wake(q, tokens)
  if redis.call('LPUSH', wkey(q), unpack(tokens)) > WAKE_KEEP then
    redis.call('LTRIM', wkey(q), 0, WAKE_KEEP - 1)
  end
end
"""

# Shared helpers, prepended to every script but ``PUBLISH_ONE``.
_PRELUDE = _KEYS + """
local function ready(tag, q, priority)
  redis.call('ZADD', rkey(q), rank(priority, tag), tag)
end

-- End the current lease of a message (owner, token, leased entry); returns its hash fields.
local function unlease(tag)
  local h = redis.call('HMGET', mkey(tag), 'q', 'p', 'o')
  if not h[1] then return h end
  redis.call('ZREM', lkey(h[1]), tag)
  if h[3] then redis.call('SREM', okey(h[3]), tag) end
  redis.call('HDEL', mkey(tag), 'o', 't')
  return h
end

-- True while the lease named by (tag, token) is the message's current one.
local function held(tag, token)
  local current = redis.call('HGET', mkey(tag), 't')
  return current and current == token
end

-- Delete a message and every index entry of it.
local function drop(tag)
  local h = unlease(tag)
  if not h[1] then return end
  redis.call('ZREM', rkey(h[1]), tag)
  redis.call('ZREM', dkey(h[1]), tag)
  redis.call('DEL', mkey(tag))
end

-- Batched commands: members gathered per key, then one call per key (and per thousand
-- members: Lua's unpack holds a few thousand values at most) instead of one per message.
local function gather(groups, key, a, b)
  local list = groups[key]
  if not list then list = {}; groups[key] = list end
  list[#list + 1] = a
  if b then list[#list + 1] = b end
end
local function each(cmd, groups, flag)
  for key, list in pairs(groups) do
    for i = 1, #list, 1000 do
      local last = math.min(i + 999, #list)
      if flag then redis.call(cmd, key, flag, unpack(list, i, last))
      else redis.call(cmd, key, unpack(list, i, last)) end
    end
  end
end

-- Store new messages, each given by the index i of its fields in ARGV: ARGV[i .. i+4] =
-- queue, priority, task_id, body, visible_at. Their tags are taken from the sequence at
-- once. Returns how many became ready in each queue (for ``wake``), and 0 for a queue that
-- only got delayed messages of which one comes due within WAKE_AHEAD seconds.
local function put_all(starts, now)
  local n, due = #starts, {}
  if n == 0 then return due end
  local first = redis.call('INCRBY', P .. ':seq', n) - n
  local readies, delays, queues = {}, {}, {}
  now = tonumber(now)
  for k, i in ipairs(starts) do
    local q, p, eta = ARGV[i], ARGV[i + 1], ARGV[i + 4]
    local number = first + k
    local tag = string.format('%.0f', number)
    store(tag, i)
    queues[q] = true
    if tonumber(eta) > now then
      gather(delays, dkey(q), eta, tag)
      if tonumber(eta) <= now + WAKE_AHEAD then due[q] = due[q] or 0 end
    else
      gather(readies, rkey(q), rank(p, number), tag)
      due[q] = (due[q] or 0) + 1
    end
  end
  each('ZADD', readies)
  each('ZADD', delays)
  for q in pairs(queues) do redis.call('SADD', QUEUES, q) end
  return due
end

-- Wake up to one idle consumer per due message, and one for delayed messages due soon (it
-- asks when: ``next_due``); ``wait`` pops these with BLPOP.
local function wake(counts)
  for q, n in pairs(counts) do
    local tokens = {}
    for _ = 1, math.max(1, math.min(n, WAKE_KEEP)) do table.insert(tokens, '1') end
    push_wake(q, tokens)
  end
end
"""

# ARGV: prefix, now, then 5 fields per message (see ``put_all``).
PUBLISH = _PRELUDE + """
local starts = {}
for i = 3, #ARGV, 5 do starts[#starts + 1] = i end
wake(put_all(starts, ARGV[2]))
return (#ARGV - 2) / 5
"""

# ``PUBLISH`` of a single message (a ``delay()``), without the batch's tables and helpers:
# five calls where ``PUBLISH`` makes six, Redis's time per call 17-22 µs against 23-32 (a
# 2-core machine, 3,000 calls, min and median of seven rounds). ARGV: prefix, now, then the 5
# fields of ``put_all``. Returns 1.
PUBLISH_ONE = _KEYS + """
local now, q, eta = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[7])
local number = redis.call('INCR', P .. ':seq')
local tag = string.format('%.0f', number)
store(tag, 3)
redis.call('SADD', QUEUES, q)
if eta > now then
  redis.call('ZADD', dkey(q), ARGV[7], tag)
  if eta > now + WAKE_AHEAD then return 1 end
else
  redis.call('ZADD', rkey(q), rank(ARGV[4], number), tag)
end
push_wake(q, {'1'})
return 1
"""

# ARGV: prefix, now, seconds to remember a key, then per message its key and the 5 fields
# of ``put_all``. A message whose key was seen is dropped. Returns how many were queued.
PUBLISH_ONCE = _PRELUDE + """
local starts = {}
for i = 4, #ARGV, 6 do
  if redis.call('SET', P .. ':once:' .. ARGV[i], '1', 'NX', 'EX', ARGV[3]) then
    starts[#starts + 1] = i + 1
  end
end
wake(put_all(starts, ARGV[2]))
return #starts
"""

# ARGV: prefix, now, lease end, owner, limit (at most 9,999), number of queues, queues...,
# then the call's token base: a random decimal number; the lease of slot i gets the token
# base .. '%04d' % i (kept as a string: Lua's doubles would round it).
# Returns {tag, body, queue, deliveries, task_id, token, runs} per leased message, in order.
# A call made again with the same base (redis-py retries a command whose answer was lost)
# leases nothing more: it answers with what the first run leased, which the owner would
# otherwise hold, renewed by its heartbeat, without knowing. Each call that leases keeps its
# base and tags in P:last:<owner> for a minute.
FETCH = _PRELUDE + """
local now, lease_end, owner, limit, nq = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]),
  tonumber(ARGV[6])
local last, base = P .. ':last:' .. owner, ARGV[7 + nq]
local previous = redis.call('GET', last)
if previous then
  local tags = {}
  for field in string.gmatch(previous, '[^,]+') do table.insert(tags, field) end
  if tags[1] == base then
    local again = {}
    for i = 2, #tags do
      local tag = tags[i]
      local h = redis.call('HMGET', mkey(tag), 't', 'b', 'q', 'd', 'id', 'r')
      if h[1] and #h[1] == #base + 4 and string.sub(h[1], 1, #base) == base then
        table.insert(again, {tag, h[2], h[3], tonumber(h[4]), h[5], h[1], h[6]})
      end
    end
    return again
  end
end
-- Due delayed messages become ready, and so do messages whose lease ran out (they keep
-- their delivery count); bounded, so that one call never blocks Redis for long.
local function promote(q)
  for _, tag in ipairs(redis.call('ZRANGEBYSCORE', dkey(q), '-inf', now, 'LIMIT', 0, 1000)) do
    redis.call('ZREM', dkey(q), tag)
    ready(tag, q, redis.call('HGET', mkey(tag), 'p') or 0)
  end
  for _, tag in ipairs(redis.call('ZRANGEBYSCORE', lkey(q), '-inf', now, 'LIMIT', 0, 1000)) do
    local h = unlease(tag)
    ready(tag, q, h[2] or 0)
  end
end
-- The first messages in ready order: tags[i] of queue queues[i] (or of the only queue).
local tags, queues, only = {}, {}, nil
if nq == 1 then
  only = ARGV[7]
  promote(only)
  tags = redis.call('ZRANGE', rkey(only), 0, limit - 1)
else
  local candidates = {}
  for i = 7, 6 + nq do
    local q = ARGV[i]
    promote(q)
    local head = redis.call('ZRANGE', rkey(q), 0, limit - 1, 'WITHSCORES')
    for j = 1, #head, 2 do
      candidates[#candidates + 1] = {tonumber(head[j + 1]), head[j], q}
    end
  end
  table.sort(candidates, function(a, b) return a[1] < b[1] end)
  for i = 1, math.min(limit, #candidates) do
    tags[i], queues[i] = candidates[i][2], candidates[i][3]
  end
end
local leased, taken, leases, owned = {}, {}, {}, {}
for i = 1, #tags do
  local tag, q = tags[i], only or queues[i]
  local token = base .. string.format('%04d', i)
  gather(taken, rkey(q), tag)
  local h = redis.call('HMGET', mkey(tag), 'b', 'id', 'r', 'd')
  if h[1] then
    local deliveries = (tonumber(h[4]) or 0) + 1
    redis.call('HSET', mkey(tag), 'd', string.format('%d', deliveries), 'o', owner,
               't', token)
    gather(leases, lkey(q), lease_end, tag)
    gather(owned, okey(owner), tag)
    table.insert(leased, {tag, h[1], q, deliveries, h[2], token, h[3]})
  end
end
each('ZREM', taken)
each('ZADD', leases)
each('SADD', owned)
if #leased > 0 then
  local tags = {base}
  for _, entry in ipairs(leased) do table.insert(tags, entry[1]) end
  redis.call('SET', last, table.concat(tags, ','), 'EX', 60)
end
return leased
"""

# ARGV: prefix, since, then queues. The earliest score after ``since`` in the queues' delayed
# and leased sets (when the first delayed message comes due or the first lease runs out), or
# nil when there is none. What was due by ``since`` was the fetch's to move (an entry left
# behind by a message whose hash is gone must not make a consumer look again and again).
NEXT_DUE = _PRELUDE + """
local later, first = '(' .. ARGV[2], nil
for i = 3, #ARGV do
  for _, key in ipairs({dkey(ARGV[i]), lkey(ARGV[i])}) do
    local head = redis.call('ZRANGEBYSCORE', key, later, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if head[2] and (not first or tonumber(head[2]) < first) then first = tonumber(head[2]) end
  end
end
if not first then return false end
return string.format('%.6f', first)
"""

# ARGV: prefix, then tag, token pairs. Returns the tags acked.
# A message under a lease is in no ready or delayed set (its lease ends before either takes
# it back), so its lease entry, its owner's entry and its hash are all there is to delete.
ACK = _PRELUDE + """
local acked, hashes, leases, owned = {}, {}, {}, {}
for i = 2, #ARGV, 2 do
  local tag = ARGV[i]
  local h = redis.call('HMGET', mkey(tag), 't', 'q', 'o')
  if h[1] and h[1] == ARGV[i + 1] then
    gather(leases, lkey(h[2]), tag)
    if h[3] then gather(owned, okey(h[3]), tag) end
    hashes[#hashes + 1] = mkey(tag)
    acked[#acked + 1] = tag
  end
end
each('ZREM', leases)
each('SREM', owned)
for i = 1, #hashes, 1000 do
  redis.call('DEL', unpack(hashes, i, math.min(i + 999, #hashes)))
end
return acked
"""

# ARGV: prefix, count (1 keeps the delivery count, 0 undoes it), then tag, token pairs.
RELEASE = _PRELUDE + """
local released, woken = 0, {}
for i = 3, #ARGV, 2 do
  local tag = ARGV[i]
  if held(tag, ARGV[i + 1]) then
    local h = unlease(tag)
    if ARGV[2] == '0' and tonumber(redis.call('HGET', mkey(tag), 'd')) > 0 then
      redis.call('HINCRBY', mkey(tag), 'd', -1)
    end
    ready(tag, h[1], h[2])
    woken[h[1]] = (woken[h[1]] or 0) + 1
    released = released + 1
  end
end
wake(woken)
return released
"""

# ARGV: prefix, owner, count_all, number of keep_count tags, those tags, died_running tags.
RELEASE_OWNER = _PRELUDE + """
local owner, count_all, nkeep = ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local keep, died = {}, {}
for i = 5, 4 + nkeep do keep[ARGV[i]] = true end
for i = 5 + nkeep, #ARGV do died[ARGV[i]] = true end
local released = 0
for _, tag in ipairs(redis.call('SMEMBERS', okey(owner))) do
  if redis.call('HGET', mkey(tag), 'o') == owner then
    if died[tag] then redis.call('HINCRBY', mkey(tag), 'r', 1) end
    local h = unlease(tag)
    if not count_all and not keep[tag]
        and tonumber(redis.call('HGET', mkey(tag), 'd')) > 0 then
      redis.call('HINCRBY', mkey(tag), 'd', -1)
    end
    ready(tag, h[1], h[2])
    released = released + 1
  end
end
redis.call('DEL', okey(owner))
return released
"""

# ARGV: prefix, tag, token. Returns 1 if the run was counted.
RECORD_START = _PRELUDE + """
if not held(ARGV[2], ARGV[3]) then return 0 end
redis.call('HINCRBY', mkey(ARGV[2]), 'r', 1)
return 1
"""

# ARGV: prefix, now, tag, token, then the new message's 5 fields (see ``put_all``).
REQUEUE = _PRELUDE + """
if not held(ARGV[3], ARGV[4]) then return 0 end
drop(ARGV[3])
wake(put_all({5}, ARGV[2]))
return 1
"""

# ARGV: prefix, eta, tag, token, body. The delivery goes back unrun as ``body``, delayed
# until eta: uncounted, its runs kept. Returns 1 if the lease was current.
DEFER = _PRELUDE + """
local tag = ARGV[3]
if not held(tag, ARGV[4]) then return 0 end
local h = unlease(tag)
if tonumber(redis.call('HGET', mkey(tag), 'd')) > 0 then
  redis.call('HINCRBY', mkey(tag), 'd', -1)
end
redis.call('HSET', mkey(tag), 'b', ARGV[5])
redis.call('ZADD', dkey(h[1]), ARGV[2], tag)
return 1
"""

# A rate-limit bucket (``buckets.py``). ARGV: prefix, task name, interval, now (seconds).
# The slot is max(free_at, now); free_at moves one interval past it. The key expires a
# minute after its last slot. Returns the slot as a string (a Lua number would be rounded
# to an integer in the reply).
RESERVE = """
local key = ARGV[1] .. ':rate:' .. ARGV[2]
local interval, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local slot = math.max(tonumber(redis.call('GET', key) or now), now)
local free_at = slot + interval
redis.call('SET', key, string.format('%.6f', free_at), 'PX',
           math.ceil((free_at - now) * 1000) + 60000)
return string.format('%.6f', slot)
"""

# ARGV: prefix, lease end, owners. Returns how many leases were extended.
RENEW = _PRELUDE + """
local renewed = 0
for i = 3, #ARGV do
  for _, tag in ipairs(redis.call('SMEMBERS', okey(ARGV[i]))) do
    local q = redis.call('HGET', mkey(tag), 'q')
    if q then
      redis.call('ZADD', lkey(q), 'XX', ARGV[2], tag)
      renewed = renewed + 1
    end
  end
end
return renewed
"""

# ARGV: prefix, lease end, then tag, token pairs. Returns the tags whose lease was current.
CONFIRM = _PRELUDE + """
local current, leases = {}, {}
for i = 3, #ARGV, 2 do
  local tag = ARGV[i]
  local h = redis.call('HMGET', mkey(tag), 't', 'q')
  if h[1] and h[1] == ARGV[i + 1] then
    gather(leases, lkey(h[2]), ARGV[2], tag)
    current[#current + 1] = tag
  end
end
each('ZADD', leases, 'XX')
return current
"""

# ARGV: prefix, then queues (none: every known queue, empty ones forgotten).
# Returns queue, count pairs.
DEPTHS = _PRELUDE + """
local queues, all = {}, #ARGV == 1
if all then queues = redis.call('SMEMBERS', QUEUES) else
  for i = 2, #ARGV do table.insert(queues, ARGV[i]) end
end
local out = {}
for _, q in ipairs(queues) do
  local n = redis.call('ZCARD', rkey(q)) + redis.call('ZCARD', dkey(q))
    + redis.call('ZCARD', lkey(q))
  if n > 0 or not all then
    table.insert(out, q)
    table.insert(out, n)
  else
    redis.call('SREM', QUEUES, q)
  end
end
return out
"""

# ARGV: prefix, now, then queues. Counts those queues and every other known one that holds
# messages, without moving anything: returns queue, ready, delayed, in-flight per queue.
# Ready counts the delayed messages that are due and the leases that ran out too (the next
# fetch moves them to ready); delayed and in flight are those not due or not run out.
QUEUE_COUNTS = _PRELUDE + """
local now = ARGV[2]
local later = '(' .. now
local named, queues = {}, {}
for i = 3, #ARGV do
  if not named[ARGV[i]] then named[ARGV[i]] = true; table.insert(queues, ARGV[i]) end
end
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  if not named[q] then table.insert(queues, q) end
end
local out = {}
for _, q in ipairs(queues) do
  local delayed = redis.call('ZCOUNT', dkey(q), later, '+inf')
  local in_flight = redis.call('ZCOUNT', lkey(q), later, '+inf')
  local ready = redis.call('ZCARD', rkey(q)) + redis.call('ZCOUNT', dkey(q), '-inf', now)
    + redis.call('ZCOUNT', lkey(q), '-inf', now)
  if named[q] or ready + delayed + in_flight > 0 then
    table.insert(out, q)
    table.insert(out, ready)
    table.insert(out, delayed)
    table.insert(out, in_flight)
  end
end
return out
"""

# ARGV: prefix, queue. Returns the task id of each message removed.
PURGE = _PRELUDE + """
local q = ARGV[2]
local ids = {}
for _, key in ipairs({rkey(q), dkey(q), lkey(q)}) do
  for _, tag in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    ids[#ids + 1] = redis.call('HGET', mkey(tag), 'id') or ''
    drop(tag)
  end
end
redis.call('SREM', QUEUES, q)
redis.call('DEL', wkey(q))
return ids
"""
