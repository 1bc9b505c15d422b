//! Every bound the engine and the protocol keep, in one place.

/// Number of Redis Cluster hash slots.
pub const SLOTS: usize = 16384;
/// Logical databases selectable with SELECT.
pub const DATABASES: usize = 16;
/// Longest inline command line (Redis's PROTO_INLINE_MAX_SIZE).
pub const INLINE_LEN_MAX: usize = 64 * 1024;
/// Default for `proto-max-bulk-len`.
pub const BULK_LEN_MAX_DEFAULT: usize = 512 * 1024 * 1024;
/// Largest multibulk count Redis accepts (INT_MAX).
pub const MULTIBULK_LEN_MAX: i64 = i32::MAX as i64;
/// Largest string value (Redis's 512 MiB `proto-max-bulk-len` default also bounds SETRANGE/APPEND).
pub const STRING_LEN_MAX: usize = 512 * 1024 * 1024;
/// Keys sampled per round of the active expiry cycle (Redis's ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP).
pub const EXPIRE_SAMPLE: usize = 20;
/// Rounds of active expiry per database in one step; the server repeats steps within a time
/// budget, so a shard never stalls on it.
pub const EXPIRE_ROUNDS_MAX: usize = 16;
/// Strings up to this length report OBJECT ENCODING "embstr", as in Redis.
pub const EMBSTR_LEN_MAX: usize = 44;
/// Integers below this are Redis's shared integers (OBJECT REFCOUNT reports INT_MAX for them).
pub const SHARED_INTEGERS: i64 = 10000;
/// Most members one logged command carries when a command's effect is logged as many (SPOP
/// with a count as SREMs, as Redis batches them).
pub const PROPAGATE_BATCH_ARGS: usize = 1024;
/// Candidates the eviction pool keeps (Redis's EVPOOL_SIZE).
pub const EVICTION_POOL_SIZE: usize = 16;
/// Pool refreshes one eviction pick tries before it gives up (every sampled key gone).
pub const EVICTION_TRIES_MAX: usize = 16;
/// Largest K a KNN query asks for (RediSearch's default `KNN_MAX` is far above what a reply can
/// carry; this bounds the heap a shard builds).
pub const SEARCH_KNN_MAX: usize = 100_000;
