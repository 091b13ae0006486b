//! The Lua scripts that make Redis the single order of every room: `PUBLISH_SCRIPT` (allocate or
//! keep an id, append to the room's stream, publish, all in one atomic step, idempotent per origin
//! sequence), `FLOOR_SCRIPT` (raise the id counter above what a node has seen) and `PRESENCE_SCRIPT`
//! (cluster-wide membership and presence events).

/// Publishes one message atomically.
///
/// `KEYS`: id counter, room stream, room origin table, sender's token bucket
/// (`rc:user:{<user>}:bucket`), the server API's idempotency key (`rc:idem:{<key>}`). `ARGV`: origin,
/// seq, provisional id (`0`: allocate), id stride, stream max length, body tail (everything after the
/// id line), channel, user rate (tokens per second; `0`: no limit), user burst, idempotency window in
/// ms (`0`: no key).
///
/// With a window, a fresh message whose key is set already is not published: its seq is recorded
/// and `{-2, "<first id>"}` returned; a published one sets the key to its id for the window.
///
/// A `seq` at or below the origin's last published one is a replay of something already published:
/// nothing happens and `{0, ""}` is returned. Then, for a fresh message (provisional id `0`) with a
/// rate set, the sender's bucket is refilled from `TIME` (up to the burst) and charged one token;
/// without a whole token the origin's seq is recorded, nothing is appended nor published, and
/// `{-1, ""}` is returned. Replays (provisional id set) are never refused nor charged. Otherwise the
/// id is the next multiple of the stride after the counter (or the given provisional id, raising the
/// counter to it), the body is appended to the stream (trimmed `MAXLEN ~`), the origin's seq
/// recorded, and `entry_id \n body` published. Returns `{id, entry_id}`. Lua numbers are doubles:
/// ids are exact up to 2^53. The bucket expires once it would be full again (at most 30 days; a
/// missing bucket is a full one). `TIME` in a script needs effect replication (the default from Redis 5; Redis 7 only
/// replicates effects).
pub(crate) const PUBLISH_SCRIPT: &str = r"
local seq = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if seq <= last then return {0, ''} end
local window = tonumber(ARGV[10])
if window > 0 and ARGV[3] == '0' then
  local first = redis.call('GET', KEYS[5])
  if first then
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
    return {-2, first}
  end
end
local rate = tonumber(ARGV[8])
if ARGV[3] == '0' and rate > 0 then
  local burst = tonumber(ARGV[9])
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local state = redis.call('HMGET', KEYS[4], 't', 'ts')
  local tokens = tonumber(state[1]) or burst
  local since = tonumber(state[2]) or now_ms
  if now_ms > since then tokens = math.min(burst, tokens + (now_ms - since) * rate / 1000) end
  local ttl = math.min(math.ceil(burst / rate * 1000) + 1000, 2592000000)
  if tokens < 1 then
    redis.call('HSET', KEYS[4], 't', tostring(tokens), 'ts', string.format('%d', now_ms))
    redis.call('PEXPIRE', KEYS[4], string.format('%d', ttl))
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
    return {-1, ''}
  end
  redis.call('HSET', KEYS[4], 't', tostring(tokens - 1), 'ts', string.format('%d', now_ms))
  redis.call('PEXPIRE', KEYS[4], string.format('%d', ttl))
end
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local stride = tonumber(ARGV[4])
local id = tonumber(ARGV[3])
if id == 0 then
  id = (math.floor(counter / stride) + 1) * stride
  redis.call('SET', KEYS[1], string.format('%d', id))
elseif id > counter then
  redis.call('SET', KEYS[1], string.format('%d', id))
end
local body = string.format('%d', id) .. '\n' .. ARGV[6]
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'm', body)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[7], entry .. '\n' .. body)
if window > 0 then redis.call('SET', KEYS[5], string.format('%d', id), 'PX', ARGV[10]) end
return {id, entry}
";

/// Raises the id counter (`KEYS[1]`) to at least `ARGV[1]`; returns the counter after.
pub(crate) const FLOOR_SCRIPT: &str = r"
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > counter then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return counter
";

/// Changes the members one node incarnation has in a room and publishes the cluster-wide presence
/// changes that follow, atomically, on the room's channel (so in the room's order).
///
/// `KEYS`: room user table (user → number of nodes where present), the set of the incarnation's
/// users in the room, the incarnation's heartbeat key. `ARGV`: channel, room, mode, users…
///
/// Modes: `j` adds the users, `l` removes them, `s` makes the set exactly the users (resync after a
/// reconnect), `r` empties the set only if the heartbeat key is gone (reaping a dead node; a node that
/// renewed meanwhile keeps its members). A user's node count going 0 → 1 publishes
/// `p\nj\n<room_len>\n<room><user>`, 1 → 0 publishes the same with `l` and deletes the field. Adding a
/// user already in the set or removing one not in it changes nothing, so every call is idempotent and
/// two survivors reaping the same node publish each `leave` once. Returns the number of changes.
pub(crate) const PRESENCE_SCRIPT: &str = r"
local changes = 0
local function announce(kind, user)
  redis.call('PUBLISH', ARGV[1], 'p\n' .. kind .. '\n' .. #ARGV[2] .. '\n' .. ARGV[2] .. user)
end
local function join(user)
  if redis.call('SADD', KEYS[2], user) == 1 then
    changes = changes + 1
    if redis.call('HINCRBY', KEYS[1], user, 1) == 1 then announce('j', user) end
  end
end
local function leave(user)
  if redis.call('SREM', KEYS[2], user) == 1 then
    changes = changes + 1
    local n = redis.call('HINCRBY', KEYS[1], user, -1)
    if n <= 0 then
      redis.call('HDEL', KEYS[1], user)
      if n == 0 then announce('l', user) end
    end
  end
end
local mode = ARGV[3]
if mode == 'r' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
  mode = 's'
end
if mode == 's' then
  local want = {}
  for i = 4, #ARGV do want[ARGV[i]] = true end
  for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if not want[user] then leave(user) end
  end
  for i = 4, #ARGV do join(ARGV[i]) end
elseif mode == 'j' then
  for i = 4, #ARGV do join(ARGV[i]) end
elseif mode == 'l' then
  for i = 4, #ARGV do leave(ARGV[i]) end
else
  return redis.error_reply('unknown presence mode')
end
return changes
";
