//! The Redis side of [`super::StateStore`]: the `redis` crate's `ConnectionManager` (one
//! multiplexed connection, reconnected by the crate), each call bounded by the configured timeout.
//! Errors come back as plain text without the URL (which may carry a password).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd};
use tokio::sync::Mutex;

/// Frees a claim only when it still holds the caller's value.
const DEL_IF: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
/// A counter that expires `ARGV[1]` ms after it was created.
const INCR_PX: &str = "local v = redis.call('INCR', KEYS[1]) \
    if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return v";

/// Adds a member to an ordered set (score: first time seen), keeps at most ARGV[3] members (the
/// first one and the newest), and sets the set's expiry.
const ZADD_CAPPED: &str = "redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2]) \
    local n = redis.call('ZCARD', KEYS[1]) \
    if n > tonumber(ARGV[3]) then redis.call('ZREMRANGEBYRANK', KEYS[1], 1, n - tonumber(ARGV[3])) end \
    redis.call('PEXPIRE', KEYS[1], ARGV[4]) return n";

/// Pushes ARGV[1] at the head of a list, keeps its first ARGV[2] entries and sets its expiry.
const LPUSH_CAPPED: &str = "redis.call('LPUSH', KEYS[1], ARGV[1]) \
    redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1) \
    redis.call('PEXPIRE', KEYS[1], ARGV[3]) return 1";

/// A member's heartbeat in an ordered set scored by time: ARGV[2] is scored now (ARGV[1] ms),
/// members older than ARGV[3] ms are dropped, and the live ones come back (oldest first).
const BEAT: &str = "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3])) \
    redis.call('PEXPIRE', KEYS[1], ARGV[3]) return redis.call('ZRANGE', KEYS[1], 0, -1)";

pub(super) struct RedisStore {
    client: Client,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
}

impl RedisStore {
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = Client::open(url).map_err(|e| format!("state.redis_url: {:?}", e.kind()))?;
        Ok(RedisStore {
            client,
            timeout,
            conn: Mutex::new(None),
        })
    }

    /// The shared connection, opened on first use (and again after a failed open).
    async fn conn(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            self.timeout * 2,
            self.client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| "no answer while connecting".to_string())?
        .map_err(|e| describe(&e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, String> {
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c))
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
            .map_err(|e| describe(&e))
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.run(redis::cmd("GET").arg(key)).await
    }

    pub(super) async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        self.run::<()>(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ms(ttl)))
            .await
    }

    pub(super) async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, String> {
        let r: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms(ttl)),
            )
            .await?;
        Ok(r.is_some())
    }

    pub(super) async fn del_if(&self, key: &str, value: &[u8]) -> Result<bool, String> {
        let n: i64 = self
            .run(redis::cmd("EVAL").arg(DEL_IF).arg(1).arg(key).arg(value))
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn del(&self, key: &str) -> Result<(), String> {
        self.run::<i64>(redis::cmd("DEL").arg(key))
            .await
            .map(|_| ())
    }

    pub(super) async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, String> {
        self.run(redis::cmd("EVAL").arg(INCR_PX).arg(1).arg(key).arg(ms(ttl)))
            .await
    }

    pub(super) async fn set_add(
        &self,
        key: &str,
        member: &str,
        score: i64,
        cap: usize,
        ttl: Duration,
    ) -> Result<(), String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ZADD_CAPPED).arg(1).arg(key);
        cmd.arg(score).arg(member).arg(cap.max(1)).arg(ms(ttl));
        self.run::<i64>(&cmd).await.map(|_| ())
    }

    pub(super) async fn set_members(&self, key: &str) -> Result<Vec<String>, String> {
        self.run(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1)).await
    }

    pub(super) async fn list_push(
        &self,
        key: &str,
        value: &str,
        cap: usize,
        ttl: Duration,
    ) -> Result<(), String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(LPUSH_CAPPED).arg(1).arg(key);
        cmd.arg(value).arg(cap.max(1)).arg(ms(ttl));
        self.run::<i64>(&cmd).await.map(|_| ())
    }

    pub(super) async fn list_all(&self, key: &str) -> Result<Vec<String>, String> {
        self.run(redis::cmd("LRANGE").arg(key).arg(0).arg(-1)).await
    }

    pub(super) async fn set_remove(&self, key: &str, member: &str) -> Result<(), String> {
        self.run::<i64>(redis::cmd("ZREM").arg(key).arg(member))
            .await
            .map(|_| ())
    }

    pub(super) async fn beat(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        alive: Duration,
    ) -> Result<Vec<String>, String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BEAT).arg(1).arg(key);
        cmd.arg(now_ms).arg(member).arg(ms(alive));
        self.run(&cmd).await
    }

    pub(super) async fn script(
        &self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<i64, String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        self.run(&cmd).await
    }

    pub(super) async fn members_and_values(
        &self,
        set: &str,
        keys: &[&str],
    ) -> Result<(Vec<String>, Vec<Option<Vec<u8>>>), String> {
        let mut c = self.conn().await?;
        let mut p = redis::pipe();
        p.cmd("ZRANGE").arg(set).arg(0).arg(-1);
        p.cmd("MGET").arg(keys);
        tokio::time::timeout(self.timeout, p.query_async(&mut c))
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
            .map_err(|e| describe(&e))
    }

    /// Messages published on `channel`, sent on `out` as they come, until the connection is
    /// lost (`Err`) or nobody listens any more (`Ok`).
    pub(super) async fn listen(
        &self,
        channel: &str,
        out: &std::sync::Weak<tokio::sync::broadcast::Sender<String>>,
    ) -> Result<(), String> {
        use futures_util::StreamExt;
        let mut pubsub = tokio::time::timeout(self.timeout * 2, self.client.get_async_pubsub())
            .await
            .map_err(|_| "no answer while connecting".to_string())?
            .map_err(|e| describe(&e))?;
        tokio::time::timeout(self.timeout * 2, pubsub.subscribe(channel))
            .await
            .map_err(|_| "no answer while subscribing".to_string())?
            .map_err(|e| describe(&e))?;
        let mut messages = pubsub.into_on_message();
        loop {
            // A look at the listeners at least once a second, messages or not.
            let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
            let Some(out) = out.upgrade() else {
                return Ok(());
            };
            match next {
                Err(_) => continue,
                Ok(None) => return Err("connection lost".into()),
                Ok(Some(msg)) => {
                    if let Ok(text) = msg.get_payload::<String>() {
                        let _ = out.send(text);
                    }
                }
            }
        }
    }

    pub(super) async fn ping(&self) -> Result<(), String> {
        self.run::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// The error without anything from the URL.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    if e.is_io_error() || e.is_connection_dropped() {
        return "connection lost".into();
    }
    match e.code() {
        Some(code) => format!("redis answered {code}"),
        None => format!("{:?}", e.kind()),
    }
}
