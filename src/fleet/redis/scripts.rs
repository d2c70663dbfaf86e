//! The Lua scripts that keep each multi-key change atomic in Redis.

/// Adds one failure to a circuit's fleet count (KEYS[1]) and renews its life (ARGV[1] ms);
/// when the count reaches the threshold (ARGV[2]), opens the circuit for everyone at once, in
/// the same round trip: stores its state (KEYS[2]: the period, ARGV[3] ms, for as long) and names the
/// circuit (ARGV[6]) in the index of open circuits (KEYS[3]), starts the count again, and
/// publishes ARGV[5] on the channel ARGV[4]. Returns the count.
pub(super) const FAILED: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if n == tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return n
";

/// Keeps a sealed answer (KEYS[1] = its name, ARGV[1] = the blob, ARGV[2] = ms to live) in
/// its circuit's index (KEYS[2]), in the fleet's recency order (KEYS[3], a sorted set, with
/// KEYS[6] the counter that orders it) and sizes (KEYS[4], KEYS[5] the total), then evicts
/// the least recently stored answers until at most ARGV[3] answers and ARGV[4] bytes are
/// kept. Answers that expired on their own count until they leave the books, so the four
/// oldest are checked first, and those gone are dropped from them. Returns the answers kept.
pub(super) const STALE_PUT: &str = r"
for _, k in ipairs(redis.call('ZRANGE', KEYS[3], 0, 3)) do
  if redis.call('EXISTS', k) == 0 then
    local s = redis.call('HGET', KEYS[4], k)
    if s then
      redis.call('DECRBY', KEYS[5], s)
      redis.call('HDEL', KEYS[4], k)
    end
    redis.call('ZREM', KEYS[3], k)
  end
end
local old = redis.call('HGET', KEYS[4], KEYS[1])
if old then redis.call('DECRBY', KEYS[5], old) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local seq = redis.call('INCR', KEYS[6])
redis.call('ZADD', KEYS[3], seq, KEYS[1])
local size = string.len(ARGV[1])
redis.call('HSET', KEYS[4], KEYS[1], size)
local total = redis.call('INCRBY', KEYS[5], size)
local n = redis.call('ZCARD', KEYS[3])
while n > 0 and (n > tonumber(ARGV[3]) or total > tonumber(ARGV[4])) do
  local gone = redis.call('ZPOPMIN', KEYS[3])[1]
  local s = redis.call('HGET', KEYS[4], gone)
  if s then
    total = redis.call('DECRBY', KEYS[5], s)
    redis.call('HDEL', KEYS[4], gone)
  end
  redis.call('DEL', gone)
  n = n - 1
end
return n
";

/// Forgets one answer (KEYS[1]) and its share of the bound (KEYS[2] recency, KEYS[3] sizes,
/// KEYS[4] total).
pub(super) const STALE_REMOVE: &str = r"
local s = redis.call('HGET', KEYS[3], KEYS[1])
if s then
  redis.call('DECRBY', KEYS[4], s)
  redis.call('HDEL', KEYS[3], KEYS[1])
end
redis.call('ZREM', KEYS[2], KEYS[1])
return redis.call('DEL', KEYS[1])
";

/// Every live answer of a circuit's index (KEYS[1]): name, blob and ms left, flat; names
/// whose answer has expired or been evicted leave the index.
pub(super) const STALE_FETCH: &str = r"
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', k)
  if v then
    table.insert(out, k)
    table.insert(out, v)
    table.insert(out, redis.call('PTTL', k))
  else
    redis.call('SREM', KEYS[1], k)
  end
end
return out
";

/// Asks for a circuit's probe lease (KEYS[1]) for replica ARGV[1], for ARGV[2] ms: a lock
/// with an expiry, so a crashed holder cannot keep it. Returns `{1, ms left}` when this
/// replica holds it (just taken, or already its own), `{0, ms left}` when another does.
pub(super) const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, tonumber(ARGV[2])} end
local left = redis.call('PTTL', KEYS[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then return {1, left} end
return {0, left}
";
