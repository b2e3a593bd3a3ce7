"""The Lua scripts the Redis journal runs: each write is one script, so it is atomic.

Keys are built inside the scripts from a prefix (ARGV[1]), which is fine on one Redis
server; Redis Cluster would need every key of a script in one hash slot (docs/cluster.md).
Batches come as msgpack (``cmsgpack``, built into Redis's Lua).

Key layout, for a prefix ``p``:

| key | type | holds |
| --- | --- | --- |
| ``p next`` | string | the last event id given (INCR) |
| ``p epoch`` | string | the journal's epoch, set once |
| ``p events`` | stream | one entry ``<id>-1`` per event, field ``e``: the event, msgpack |
| ``p d:<n>`` | stream | partition n's deliveries: ``<event id>-<k>``, field ``h`` the hook |
| ``p k:<device> <key>`` | string | a publish key seen, gone after the dedupe window |
| ``p outbox`` | hash | event id -> msgpack (device, expires ms) of a downlink not yet acked |
| ``p outbox:ids``, ``p outbox:exp`` | sorted sets | the same ids, by id, by expiry |
| ``p rows`` | hash | delivery id -> msgpack row: a delivery that waited, died or was replayed |
| ``p open``, ``p retry``, ``p dead`` | set, sorted sets | rows owed; waiting by due; dead by when |
| ``p replays`` | list | delivery ids asked for again, not yet taken |
| ``p hlog:<hook>`` | stream | the hook's attempts (the delivery log), msgpack, capped |
| ``p hours:<hook>`` | hash | ``<hour>:d``, ``<hour>:f``: attempts delivered, failed that hour |
| ``p disabled`` | hash | hook name -> msgpack (url, at, reason) of hooks that answered 410 |
| ``p hooks``, ``p hooknames`` | hashes | stored hook id -> msgpack hook; name -> id |
| ``p hooks:version`` | string | counts changes to the stored hooks (nodes watch it) |
| ``p nodes`` | sorted set | node name by its last heartbeat (ms) |
| ``p lease:<n>`` | string | the node that holds partition n, expiring with the lease |
"""

from __future__ import annotations

GROUP = "hookwire"
"""The consumer group every partition stream is read through."""

HOOK_LOG_KEPT = 100_000
"""Attempts kept in each hook's log stream (trimmed approximately; and by the retention)."""

COMMIT = """
local p = ARGV[1]
local batch = cmsgpack.unpack(ARGV[2])
local now, window = batch[1], batch[2]
local floor = tonumber(ARGV[4])  -- the highest id the calling node has seen
local node, every, readable = ARGV[5], ARGV[6] == '*', {}
if not every then
  for n in string.gmatch(ARGV[6], '%d+') do readable[tonumber(n)] = true end
end
local touched, seen = {}, {}  -- partitions the caller reads that this batch wrote to
-- attempts first: a settle's attempts and the events its answers made, together
for _, a in ipairs(batch[4]) do
  -- a = {delivery id, event id, hook, state, attempts, due ms, reason, recorded,
  --      stream or false, entry or false, record, whether it may have a row,
  --      hour field: "<hour>:d" delivered or "<hour>:f" failed}
  local id, state = a[1], a[4]
  redis.call('XADD', p .. 'hlog:' .. a[3], 'MAXLEN', '~', ARGV[3], '*', 'a', a[11])
  redis.call('HINCRBY', p .. 'hours:' .. a[3], a[13], 1)
  if a[9] then
    redis.call('XACK', a[9], 'hookwire', a[10])
  end
  if state == 'delivered' then
    if a[12] then  -- a first attempt that delivered never had a row
      redis.call('HDEL', p .. 'rows', id)
      redis.call('SREM', p .. 'open', id)
      redis.call('ZREM', p .. 'retry', id)
    end
  elseif state == 'waiting' then
    local row = cmsgpack.pack({a[2], a[3], state, a[5], a[6], a[7], a[8]})
    redis.call('HSET', p .. 'rows', id, row)
    redis.call('SADD', p .. 'open', id)
    redis.call('ZADD', p .. 'retry', a[6], id)
  else
    local row = cmsgpack.pack({a[2], a[3], state, a[5], a[6], a[7], a[8]})
    redis.call('HSET', p .. 'rows', id, row)
    redis.call('SREM', p .. 'open', id)
    redis.call('ZREM', p .. 'retry', id)
    redis.call('ZADD', p .. 'dead', now, id)
  end
end
local ids = {}
for i, item in ipairs(batch[3]) do
  -- item = {event (msgpack), device, key or false, {{hook, partition}...}, to device or
  --         false, expires ms}
  local fresh = true
  if item[3] then
    fresh = redis.call('SET', p .. 'k:' .. item[2] .. ' ' .. item[3], '1', 'NX', 'PX', window)
  end
  if fresh then
    local id = redis.call('INCR', p .. 'next')
    if id <= floor then  -- Redis lost its data: ids never go back
      id = floor + 1
      redis.call('SET', p .. 'next', id)
    end
    redis.call('XADD', p .. 'events', id .. '-1', 'e', item[1])
    for k, hook in ipairs(item[4]) do
      redis.call('XADD', p .. 'd:' .. hook[2], id .. '-' .. k, 'h', hook[1])
      if (every or readable[hook[2]]) and not seen[hook[2]] then
        seen[hook[2]] = true
        touched[#touched + 1] = hook[2]
      end
    end
    if item[5] then
      redis.call('HSET', p .. 'outbox', id, cmsgpack.pack({item[5], item[6]}))
      redis.call('ZADD', p .. 'outbox:ids', id, id)
      redis.call('ZADD', p .. 'outbox:exp', item[6], id)
    end
    ids[i] = id
  else
    ids[i] = 0
  end
end
-- the caller's new deliveries, read through its group now (one round trip, not two):
-- stream, entry id, hook, ...; a missing group is left to the caller's reader
local taken = {}
if #touched > 0 then
  local read = {'XREADGROUP', 'GROUP', 'hookwire', node, 'COUNT', ARGV[8], 'STREAMS'}
  for _, n in ipairs(touched) do read[#read + 1] = p .. 'd:' .. n end
  for _ in ipairs(touched) do read[#read + 1] = '>' end
  local got = redis.pcall(unpack(read))
  if type(got) == 'table' and not got.err then
    for _, stream in ipairs(got) do
      for _, entry in ipairs(stream[2]) do
        taken[#taken + 1] = stream[1]
        taken[#taken + 1] = entry[1]
        taken[#taken + 1] = entry[2][2]
      end
    end
  end
end
-- the events after the caller's floor (its own and the other nodes'), to fan out in order
local events = {}
local range = redis.call('XRANGE', p .. 'events', '(' .. floor .. '-1', '+', 'COUNT', ARGV[7])
for _, entry in ipairs(range) do
  events[#events + 1] = entry[1]
  events[#events + 1] = entry[2][2]
end
return {ids, events, taken}
"""

EXPIRE_DOWNLINKS = """
local p = ARGV[1]
local gone = redis.call('ZRANGEBYSCORE', p .. 'outbox:exp', '-inf', ARGV[2])
for _, id in ipairs(gone) do
  redis.call('HDEL', p .. 'outbox', id)
  redis.call('ZREM', p .. 'outbox:ids', id)
  redis.call('ZREM', p .. 'outbox:exp', id)
end
return #gone
"""

ACK_DOWNLINKS = """
local p = ARGV[1]
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('HDEL', p .. 'outbox', ARGV[i])
  redis.call('ZREM', p .. 'outbox:ids', ARGV[i])
  redis.call('ZREM', p .. 'outbox:exp', ARGV[i])
end
return n
"""

TAKE_REPLAYS = """
local p = ARGV[1]
local ids = redis.call('LRANGE', p .. 'replays', 0, -1)
redis.call('DEL', p .. 'replays')
return ids
"""

REPLAY = """
-- ARGV[2] = now ms, ARGV[3..] = delivery ids: dead letters asked for again
local p = ARGV[1]
local done = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local packed = redis.call('HGET', p .. 'rows', id)
  if packed and redis.call('ZREM', p .. 'dead', id) == 1 then
    local row = cmsgpack.unpack(packed)
    row[3], row[4], row[5], row[6] = 'replay', 0, tonumber(ARGV[2]), ''
    redis.call('HSET', p .. 'rows', id, cmsgpack.pack(row))
    redis.call('SADD', p .. 'open', id)
    redis.call('RPUSH', p .. 'replays', id)
    done[#done + 1] = id
  end
end
return done
"""

PUT_HOOK = """
-- ARGV[2] = id, ARGV[3] = name, ARGV[4] = the hook, msgpack: '' when the name is taken
local p = ARGV[1]
local holder = redis.call('HGET', p .. 'hooknames', ARGV[3])
if holder and holder ~= ARGV[2] then
  return holder
end
local old = redis.call('HGET', p .. 'hooks', ARGV[2])
if old then
  local name = cmsgpack.unpack(old)[1]
  if name ~= ARGV[3] then
    redis.call('HDEL', p .. 'hooknames', name)
  end
end
redis.call('HSET', p .. 'hooks', ARGV[2], ARGV[4])
redis.call('HSET', p .. 'hooknames', ARGV[3], ARGV[2])
redis.call('INCR', p .. 'hooks:version')
return ''
"""

DELETE_HOOK = """
local p = ARGV[1]
local old = redis.call('HGET', p .. 'hooks', ARGV[2])
if not old then
  return 0
end
redis.call('HDEL', p .. 'hooknames', cmsgpack.unpack(old)[1])
redis.call('HDEL', p .. 'hooks', ARGV[2])
redis.call('INCR', p .. 'hooks:version')
return 1
"""

LEASES = """
-- ARGV[2] = node, ARGV[3] = lease ms, ARGV[4] = held (comma-separated), ARGV[5] = to
-- release, ARGV[6] = to acquire. Renews what the node still holds, gives back what it
-- releases, takes what is free; returns {kept, acquired} (comma-separated partitions).
local p, node, ms = ARGV[1], ARGV[2], ARGV[3]
local function each(list, fn)
  for n in string.gmatch(list, '[^,]+') do fn(n) end
end
local kept, acquired = {}, {}
each(ARGV[4], function(n)
  if redis.call('GET', p .. 'lease:' .. n) == node then
    redis.call('PEXPIRE', p .. 'lease:' .. n, ms)
    kept[#kept + 1] = n
  end
end)
each(ARGV[5], function(n)
  if redis.call('GET', p .. 'lease:' .. n) == node then
    redis.call('DEL', p .. 'lease:' .. n)
  end
end)
each(ARGV[6], function(n)
  local key = p .. 'lease:' .. n
  if redis.call('GET', key) == node then  -- this node's, from before a restart
    redis.call('PEXPIRE', key, ms)
    acquired[#acquired + 1] = n
  elseif redis.call('SET', key, node, 'NX', 'PX', ms) then
    acquired[#acquired + 1] = n
  end
end)
return {table.concat(kept, ','), table.concat(acquired, ',')}
"""

REPLAY_WINDOW = """
-- ARGV[2] = hook, ARGV[3] = now ms, then pairs (delivery id, event id): new deliveries
-- of these events to the hook (a window replay), taken by the next take_replays.
local p = ARGV[1]
for i = 4, #ARGV, 2 do
  local id, event = ARGV[i], tonumber(ARGV[i + 1])
  local row = {event, ARGV[2], 'replay', 0, tonumber(ARGV[3]), '', 0}
  redis.call('HSET', p .. 'rows', id, cmsgpack.pack(row))
  redis.call('SADD', p .. 'open', id)
  redis.call('RPUSH', p .. 'replays', id)
end
return 1
"""

PARTITION_OWED = """
-- A partition's deliveries not settled: read and pending (in flight somewhere), then not
-- read yet, at most ARGV[2] of each: entry id, hook, ...
local stream, most = ARGV[1], tonumber(ARGV[2])
local found = {}
local pending = redis.pcall('XPENDING', stream, 'hookwire', '-', '+', most)
if type(pending) == 'table' and not pending.err then
  for _, item in ipairs(pending) do
    local entry = redis.call('XRANGE', stream, item[1], item[1])
    if entry[1] then
      found[#found + 1] = entry[1][1]
      found[#found + 1] = entry[1][2][2]
    end
  end
end
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) == 'table' and not groups.err then
  for _, group in ipairs(groups) do
    local fields = {}
    for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
    if fields['name'] == 'hookwire' then
      local after = '(' .. fields['last-delivered-id']
      for _, entry in ipairs(redis.call('XRANGE', stream, after, '+', 'COUNT', most)) do
        found[#found + 1] = entry[1]
        found[#found + 1] = entry[2][2]
      end
    end
  end
end
return found
"""
