//! Sentinel: the master's address, asked of the sentinels (redis-rs' `sentinel` engine:
//! `SENTINEL get-master-addr-by-name`, sentinels tried in turn, the answer checked with
//! `ROLE` on the master itself) every time a connection to the master is opened. After
//! a failover the old master drops its clients (Sentinel kills them) or answers
//! `READONLY`; either way the client opens a new connection, which asks again and finds
//! the new master.

use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::error::{RnError, RnResult};
use crate::options::{ClientConfig, Topology};

/// `cfg` pointed at the master the sentinels name now (`cfg` itself when it is not a
/// Sentinel configuration). Within `connectTimeoutMs`.
pub async fn resolve(cfg: &ClientConfig) -> RnResult<ClientConfig> {
  let Topology::Sentinel(s) = &cfg.topology else {
    return Ok(cfg.clone());
  };
  let mut sentinel_settings = RedisConnectionInfo::default();
  if let Some(u) = &s.username {
    sentinel_settings = sentinel_settings.set_username(u);
  }
  if let Some(p) = &s.password {
    sentinel_settings = sentinel_settings.set_password(p);
  }
  let sentinels = s
    .nodes
    .iter()
    .map(|(host, port)| {
      ConnectionAddr::Tcp(host.clone(), *port)
        .into_connection_info()
        .map(|i| i.set_redis_settings(sentinel_settings.clone()))
        .map_err(RnError::from)
    })
    .collect::<RnResult<Vec<_>>>()?;
  let mut master_settings = RedisConnectionInfo::default().set_db(cfg.db);
  if let Some(u) = &cfg.username {
    master_settings = master_settings.set_username(u);
  }
  if let Some(p) = &cfg.password {
    master_settings = master_settings.set_password(p);
  }
  let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master_settings);
  if let Some(tls) = &cfg.tls {
    node = node.set_tls_mode(if tls.reject_unauthorized {
      redis::TlsMode::Secure
    } else {
      redis::TlsMode::Insecure
    });
  }
  let what = format!("cannot find the master of {}", cfg.address());
  let ask = async {
    let mut sentinel = Sentinel::build(sentinels)?;
    sentinel.async_master_for(&s.master_name, Some(&node)).await
  };
  let client = match tokio::time::timeout(cfg.connect_timeout, ask).await {
    Err(_) => {
      return Err(RnError::connection(format!(
        "{what}: no answer within {} ms (connectTimeoutMs)",
        cfg.connect_timeout.as_millis()
      )))
    }
    Ok(Err(e)) => {
      let mut err = RnError::from(e);
      for secret in [&cfg.password, &s.password].into_iter().flatten() {
        if !secret.is_empty() {
          err.message = err.message.replace(secret.as_str(), "***");
        }
      }
      // whatever went wrong with the sentinels, the master is not reachable now
      if err.code != crate::error::ErrorCode::RedisAuth {
        err.code = crate::error::ErrorCode::RedisConnection;
      }
      return Err(err.context(&what));
    }
    Ok(Ok(client)) => client,
  };
  match client.get_connection_info().addr() {
    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
      Ok(cfg.for_node(host, *port))
    }
    _ => Err(RnError::connection(format!(
      "{what}: the sentinels named an address that is not TCP"
    ))),
  }
}

/// A connection to one of the sentinels (the `first`-th, modulo their number, then the
/// others) subscribed to `+switch-master`; announcements arrive on `push`.
pub async fn subscribe_switches(
  cfg: &ClientConfig,
  first: usize,
  push: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> RnResult<redis::aio::MultiplexedConnection> {
  let Topology::Sentinel(s) = &cfg.topology else {
    return Err(RnError::internal("not a Sentinel configuration"));
  };
  let mut last = RnError::connection("no sentinel to listen to");
  for i in 0..s.nodes.len() {
    let (host, port) = &s.nodes[(first + i) % s.nodes.len()];
    let mut settings = RedisConnectionInfo::default().set_protocol(redis::ProtocolVersion::RESP3);
    if let Some(u) = &s.username {
      settings = settings.set_username(u);
    }
    if let Some(p) = &s.password {
      settings = settings.set_password(p);
    }
    let attempt = async {
      let info = ConnectionAddr::Tcp(host.clone(), *port)
        .into_connection_info()?
        .set_redis_settings(settings);
      let client = redis::Client::open(info)?;
      let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_push_sender(push.clone());
      let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
      conn.subscribe("+switch-master").await?;
      Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(cfg.connect_timeout, attempt).await {
      Ok(Ok(conn)) => return Ok(conn),
      Ok(Err(e)) => last = RnError::from(e),
      Err(_) => last = RnError::connection("a sentinel did not answer within connectTimeoutMs"),
    }
  }
  Err(last)
}

/// Whether `push` announces a new master for `master_name` (`+switch-master <name> <old
/// ip> <old port> <new ip> <new port>`).
pub fn is_switch_of(push: &redis::PushInfo, master_name: &str) -> bool {
  if push.kind != redis::PushKind::Message {
    return false;
  }
  let text = |v: &redis::Value| match v {
    redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
    redis::Value::SimpleString(s) => Some(s.clone()),
    _ => None,
  };
  push
    .data
    .get(1)
    .and_then(text)
    .is_some_and(|payload| payload.split_whitespace().next() == Some(master_name))
}
