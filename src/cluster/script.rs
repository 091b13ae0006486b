//! The Lua scripts that make Redis the single order of every room: `PUBLISH_SCRIPT` (allocate or
//! keep an id, append to the room's stream, publish, all in one atomic step, idempotent per origin
//! sequence) and `FLOOR_SCRIPT` (raise the id counter above what a node has seen).

/// Publishes one message atomically.
///
/// `KEYS`: id counter, room stream, room origin table. `ARGV`: origin, seq, provisional id (`0`:
/// allocate), id stride, stream max length, body tail (everything after the id line), channel.
///
/// A `seq` at or below the origin's last published one is a replay of something already published:
/// nothing happens and `{0, ""}` is returned. Otherwise the id is the next multiple of the stride
/// after the counter (or the given provisional id, raising the counter to it), the body is appended
/// to the stream (trimmed `MAXLEN ~`), the origin's seq recorded, and `entry_id \n body` published.
/// Returns `{id, entry_id}`. Lua numbers are doubles: ids are exact up to 2^53.
pub const PUBLISH_SCRIPT: &str = r"
local seq = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if seq <= last then return {0, ''} end
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
return {id, entry}
";

/// Raises the id counter (`KEYS[1]`) to at least `ARGV[1]`; returns the counter after.
pub const FLOOR_SCRIPT: &str = r"
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > counter then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return counter
";
