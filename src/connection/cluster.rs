//! A Redis Cluster, through redis-rs' cluster engine (`cluster-async`): it discovers the
//! slot map from any node, keeps it current (MOVED, ASK, failover, resharding), keeps a
//! connection per node and routes each command by its keys. A command whose keys live
//! in several slots (MGET, DEL, UNLINK, EXISTS, TOUCH, MSET) is split by slot and its
//! replies reassembled in the caller's order by the engine; any other multi-key command
//! across slots is refused by Redis (CROSSSLOT → `ERR_INVALID_ARGUMENT`).
//!
//! Around the engine, as on one server: `commandTimeoutMs` on every call (the engine
//! retries MOVED/ASK/TRYAGAIN and lost nodes within it, with the client's backoff
//! between attempts), `connectTimeoutMs` on the first connection, and errors mapped to
//! the same codes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, Value};
use tokio::sync::oneshot;

use crate::error::{RnError, RnResult};
use crate::options::{host_port, ClientConfig, Topology};

use super::events::{EventKind, Events};

/// A node of the cluster, as `CLUSTER NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
  pub host: String,
  pub port: u16,
  /// A master (else a replica).
  pub master: bool,
  /// Flagged `fail`/`fail?` by the cluster.
  pub failing: bool,
  /// Serves at least one slot (masters only).
  pub has_slots: bool,
}

impl Node {
  pub fn address(&self) -> String {
    host_port(&self.host, self.port)
  }
}

pub struct Cluster {
  /// The engine's connection; replaced by a fresh one (a new slot map from the nodes)
  /// when calls keep failing (see `nudge`).
  conn: Arc<std::sync::RwLock<ClusterConnection>>,
  client: redis::cluster::ClusterClient,
  /// A fresh connection is being made.
  rebuilding: Arc<AtomicBool>,
  config: ClientConfig,
  closed: AtomicBool,
  events: Arc<Events>,
  /// Commands for one slot, kept in the order they were made (see `exec`).
  lanes: Arc<Mutex<HashMap<Route, Lane>>>,
  /// When a fresh engine connection was last asked for (ms since `born`).
  last_nudge: AtomicU64,
  born: Instant,
}

/// A reply on its way to its caller.
type ReplyTx = oneshot::Sender<redis::RedisResult<Value>>;

/// The commands of one slot: those waiting while a batch of them is with the node.
#[derive(Default)]
struct Lane {
  busy: bool,
  waiting: Vec<(Cmd, ReplyTx)>,
}

impl Cluster {
  /// Connects to the cluster (any reachable node of `cluster.nodes`) within
  /// `connectTimeoutMs` and checks that it answers.
  pub async fn connect(config: ClientConfig, events: Arc<Events>) -> RnResult<Cluster> {
    let Topology::Cluster { nodes } = &config.topology else {
      return Err(RnError::internal("not a cluster configuration"));
    };
    let what = format!(
      "cannot connect to the Redis Cluster at {}",
      config.address()
    );
    let infos = nodes
      .iter()
      .map(|(host, port)| {
        let addr = match &config.tls {
          None => ConnectionAddr::Tcp(host.clone(), *port),
          Some(tls) => ConnectionAddr::TcpTls {
            host: tls.servername.clone().unwrap_or_else(|| host.clone()),
            port: *port,
            insecure: !tls.reject_unauthorized,
            tls_params: None,
          },
        };
        addr.into_connection_info().map_err(RnError::from)
      })
      .collect::<RnResult<Vec<_>>>()?;
    let mut builder = ClusterClientBuilder::new(infos)
      .connection_timeout(config.connect_timeout)
      .response_timeout(config.command_timeout)
      // retried within commandTimeoutMs (which bounds every call): MOVED/ASK, TRYAGAIN,
      // CLUSTERDOWN during a failover, a node that went away
      .retries(64)
      .min_retry_wait(config.reconnect.min_delay.as_millis().max(1) as u64)
      .max_retry_wait(config.reconnect.max_delay.as_millis().max(1) as u64);
    if let Some(u) = &config.username {
      builder = builder.username(u);
    }
    if let Some(p) = &config.password {
      builder = builder.password(p);
    }
    if let Some(tls) = &config.tls {
      let _ = rustls::crypto::ring::default_provider().install_default();
      builder = builder.tls(if tls.reject_unauthorized {
        redis::TlsMode::Secure
      } else {
        redis::TlsMode::Insecure
      });
      if tls.ca.is_some() || tls.cert.is_some() {
        builder = builder.certs(super::standalone::tls_certificates(tls));
      }
    }
    let client = builder
      .build()
      .map_err(|e| RnError::invalid(format!("cluster settings rejected: {e}")))?;
    let attempt = async {
      let mut conn = client.get_async_connection().await?;
      conn.req_packed_command(&redis::cmd("PING")).await?;
      Ok::<_, redis::RedisError>(conn)
    };
    let conn = match tokio::time::timeout(config.connect_timeout, attempt).await {
      Err(_) => {
        return Err(RnError::connection(format!(
          "{what}: no answer within {} ms (connectTimeoutMs)",
          config.connect_timeout.as_millis()
        )))
      }
      Ok(Err(e)) => return Err(scrub(RnError::from(e), &config).context(&what)),
      Ok(Ok(conn)) => conn,
    };
    Ok(Cluster {
      conn: Arc::new(std::sync::RwLock::new(conn)),
      client,
      rebuilding: Arc::new(AtomicBool::new(false)),
      config,
      closed: AtomicBool::new(false),
      events,
      lanes: Default::default(),
      last_nudge: AtomicU64::new(0),
      born: Instant::now(),
    })
  }

  fn conn(&self) -> ClusterConnection {
    self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
  }

  fn check_open(&self) -> RnResult<()> {
    if self.closed.load(Ordering::SeqCst) {
      Err(RnError::closed())
    } else {
      Ok(())
    }
  }

  /// Runs `fut` within `commandTimeoutMs`.
  async fn timed<T>(&self, what: &str, fut: impl std::future::Future<Output = T>) -> RnResult<T> {
    tokio::time::timeout(self.config.command_timeout, fut)
      .await
      .map_err(|_| {
        self.nudge();
        RnError::timeout(format!(
          "{what}: no answer from the Redis Cluster at {} within {} ms (commandTimeoutMs)",
          self.config.address(),
          self.config.command_timeout.as_millis()
        ))
      })
  }

  /// Sends one command to the node of its keys (any node when it has none).
  ///
  /// The cluster engine may reorder requests it is given together, so commands for one
  /// slot go through a lane: the first is sent at once; those made while it is out
  /// wait, and go next together as one pipeline, in the order they were made (as on
  /// one server, calls not awaited reach Redis in the order they were made). Commands
  /// without a key, or over keys in several slots, are sent at once.
  pub async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    self.check_open()?;
    let name = command_name(&cmd);
    if let Some(route) = lane_key(&cmd).map(|k| Route::with_key(k, SlotAddr::Master)) {
      let (tx, rx) = oneshot::channel();
      let start = {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(route).or_default();
        lane.waiting.push((cmd.clone(), tx));
        !std::mem::replace(&mut lane.busy, true)
      };
      if start {
        tokio::spawn(drain(
          self.lanes.clone(),
          route,
          self.conn.clone(),
          self.config.command_timeout,
        ));
      }
      let reply = self
        .timed(&name, async {
          rx.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
              std::io::ErrorKind::BrokenPipe,
            )))
          })
        })
        .await?;
      return match reply {
        Ok(Value::ServerError(e)) => Err(self.failed(e.into(), &cmd)),
        other => other.map_err(|e| self.failed(e, &cmd)),
      };
    }
    let mut conn = self.conn();
    let reply = self
      .timed(&name, async { conn.req_packed_command(&cmd).await })
      .await?;
    match reply {
      Ok(Value::ServerError(e)) => Err(self.failed(e.into(), &cmd)),
      other => other.map_err(|e| self.failed(e, &cmd)),
    }
  }

  /// Sends `cmd` to the node at `host`:`port` (SCAN, INFO, a health check).
  pub async fn exec_on(&self, host: &str, port: u16, cmd: Cmd) -> RnResult<Value> {
    self.check_open()?;
    let mut conn = self.conn();
    let name = command_name(&cmd);
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
      host: host.to_string(),
      port,
    });
    let reply = self
      .timed(&name, async {
        conn.route_command(cmd.clone(), routing).await
      })
      .await?;
    match reply {
      Ok(Value::ServerError(e)) => Err(self.failed(e.into(), &cmd)),
      other => other.map_err(|e| self.failed(e, &cmd)),
    }
  }

  /// A caller's pipeline: each command goes to the node of its keys (the commands for
  /// one node keep their order); replies come back in the caller's order, a command the
  /// server refused with its error in its slot.
  pub async fn exec_pipeline(&self, pipe: Pipeline, count: usize) -> RnResult<Vec<Value>> {
    self.check_open()?;
    let cmds: Vec<Cmd> = pipe.cmd_iter().take(count).cloned().collect();
    // each through `exec`'s lanes: in order per slot, and all issued before any awaits
    let calls: Vec<_> = cmds.iter().map(|cmd| self.exec(cmd.clone())).collect();
    let replies = join_all(calls).await;
    let mut out = Vec::with_capacity(replies.len());
    for reply in replies {
      match reply {
        Ok(v) => out.push(v),
        Err(e) if e.server_code.is_some() && e.code == crate::error::ErrorCode::RedisCommand => {
          out.push(rn_error_value(&e))
        }
        Err(e) => return Err(e),
      }
    }
    Ok(out)
  }

  /// The nodes of the cluster, as a node sees them now (`CLUSTER NODES`).
  pub async fn nodes(&self) -> RnResult<Vec<Node>> {
    self.check_open()?;
    let mut conn = self.conn();
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
    let reply = self
      .timed("CLUSTER NODES", async {
        conn.route_command(cmd.clone(), routing).await
      })
      .await?
      .map_err(|e| self.failed(e, &cmd))?;
    let text = match reply {
      Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
      Value::VerbatimString { text, .. } => text,
      Value::SimpleString(s) => s,
      other => {
        return Err(RnError::internal(format!(
          "unexpected CLUSTER NODES reply {other:?}"
        )))
      }
    };
    Ok(parse_nodes(&text))
  }

  /// The masters that serve slots: where SCAN must go to see every key.
  pub async fn masters(&self) -> RnResult<Vec<Node>> {
    let mut masters: Vec<Node> = self
      .nodes()
      .await?
      .into_iter()
      .filter(|n| n.master && n.has_slots)
      .collect();
    masters.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    Ok(masters)
  }

  /// Calls are failing (a node stopped answering): at most once a second, open a fresh
  /// engine connection (its slot map read anew from the nodes) and switch to it. The
  /// engine itself re-reads the map only on a MOVED, and goes on reconnecting to a
  /// master that died although its replica took over.
  fn nudge(&self) {
    let now = self.born.elapsed().as_millis() as u64;
    let last = self.last_nudge.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 1000
      || self.closed.load(Ordering::SeqCst)
      || self
        .last_nudge
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
      || self.rebuilding.swap(true, Ordering::SeqCst)
    {
      return;
    }
    let client = self.client.clone();
    let timeout = self.config.connect_timeout;
    let rebuilding = self.rebuilding.clone();
    let conns = self.conn.clone();
    tokio::spawn(async move {
      let attempt = async {
        let mut conn = client.get_async_connection().await?;
        conn.req_packed_command(&redis::cmd("PING")).await?;
        Ok::<_, redis::RedisError>(conn)
      };
      if let Ok(Ok(conn)) = tokio::time::timeout(timeout, attempt).await {
        // switched to as soon as it is made, not by the next call to start: under load
        // every caller times out together and calls again at once, on the old one,
        // before this one is made; none started until the next wave of timeouts, whose
        // nudge replaced it unused (the client stayed on the old slot map, every call
        // timing out, long after a failover)
        *conns.write().unwrap_or_else(|e| e.into_inner()) = conn;
      }
      rebuilding.store(false, Ordering::SeqCst);
    });
  }

  fn failed(&self, e: redis::RedisError, cmd: &Cmd) -> RnError {
    let err = scrub(RnError::from(e), &self.config);
    if matches!(
      err.code,
      crate::error::ErrorCode::RedisConnection | crate::error::ErrorCode::RedisTimeout
    ) {
      self.nudge();
    }
    if err.server_code.as_deref() == Some("CROSSSLOT") {
      return RnError::invalid(format!(
        "{}: its keys are in different cluster slots, which Redis refuses in one command; give them a common hash tag ({{user1}}:a, {{user1}}:b) or send one command per key",
        command_name(cmd)
      ));
    }
    super::standalone::labeled(err, cmd, &self.config.key_prefix)
  }

  pub fn close(&self) {
    if !self.closed.swap(true, Ordering::SeqCst) {
      self.events.emit(
        EventKind::End,
        serde_json::json!({ "address": self.config.address(), "reason": "closed" }),
      );
      self.events.clear();
    }
  }

  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::SeqCst)
  }

  /// 1 while open: the engine keeps its node connections up by itself.
  pub fn link(&self) -> u64 {
    u64::from(!self.is_closed())
  }

  pub fn reconnect_delay(&self, attempt: u32) -> Duration {
    super::standalone::backoff_delay(&self.config.reconnect, attempt, rand::random::<f64>())
  }

  /// A connection for pushes (RESP3) to one node, named `<clientName>:<role>`: classic
  /// pub/sub messages reach every node of a cluster, so any node will do. The seeds
  /// first, then the nodes the cluster lists.
  pub async fn open_subscriber(
    &self,
    push: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    role: &str,
  ) -> RnResult<redis::aio::MultiplexedConnection> {
    self.check_open()?;
    let Topology::Cluster { nodes: seeds } = &self.config.topology else {
      return Err(RnError::internal("not a cluster configuration"));
    };
    let mut candidates: Vec<(String, u16)> = seeds.clone();
    if let Ok(nodes) = self.nodes().await {
      for n in nodes.into_iter().filter(|n| !n.failing) {
        if !candidates.contains(&(n.host.clone(), n.port)) {
          candidates.push((n.host, n.port));
        }
      }
    }
    let name = self
      .config
      .client_name
      .as_ref()
      .map(|n| format!("{n}:{role}"));
    let mut last = RnError::connection("no node to subscribe on");
    for (host, port) in candidates {
      let cfg = self.config.for_node(&host, port);
      let client = super::standalone::build_client(&cfg, redis::ProtocolVersion::RESP3)?;
      match super::standalone::open_with(
        &cfg,
        &client,
        name.as_deref(),
        Some(push.clone()),
        "cannot open a subscriber connection to Redis at",
      )
      .await
      {
        Ok(conn) => return Ok(conn),
        Err(e) => last = e,
      }
    }
    Err(last)
  }
}

impl Drop for Cluster {
  fn drop(&mut self) {
    self.close();
  }
}

/// `GET` for a `GET user:1 ...` command (its name only: keys may be secrets).
fn command_name(cmd: &Cmd) -> String {
  cmd
    .args_iter()
    .next()
    .and_then(|a| match a {
      redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).to_ascii_uppercase()),
      _ => None,
    })
    .unwrap_or_else(|| "command".into())
}

/// The key that decides where `cmd` goes, when it has one key (or one slot's keys): its
/// lane. `None`: no key, or keys the engine splits by slot itself (it is sent at once).
fn lane_key(cmd: &Cmd) -> Option<Vec<u8>> {
  let args: Vec<&[u8]> = cmd
    .args_iter()
    .map(|a| match a {
      redis::Arg::Simple(b) => b,
      _ => &b"0"[..],
    })
    .collect();
  let name = String::from_utf8_lossy(args.first()?).to_ascii_uppercase();
  let key = |i: usize| args.get(i).map(|k| k.to_vec());
  match name.as_str() {
    "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
      let n: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
      if n >= 1 {
        key(3)
      } else {
        None
      }
    }
    "MGET" | "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "WATCH" if args.len() == 2 => key(1),
    "MSET" | "MSETNX" if args.len() == 3 => key(1),
    "MGET" | "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "WATCH" | "MSET" | "MSETNX" => None,
    "PING" | "ECHO" | "INFO" | "TIME" | "PUBLISH" | "SPUBLISH" | "CLUSTER" | "SCRIPT"
    | "COMMAND" | "CLIENT" | "CONFIG" | "DBSIZE" | "FLUSHDB" | "FLUSHALL" | "SCAN" | "KEYS"
    | "RANDOMKEY" | "WAIT" | "LASTSAVE" | "MEMORY" | "OBJECT" | "XREAD" | "XREADGROUP"
    | "XINFO" | "XGROUP" | "BITOP" | "ZUNION" | "ZINTER" | "ZDIFF" | "SINTERCARD"
    | "ZINTERCARD" | "LMPOP" | "ZMPOP" | "BLMPOP" | "BZMPOP" | "MIGRATE" | "PUBSUB"
    | "FUNCTION" | "SLOWLOG" | "LATENCY" | "ACL" | "ROLE" | "READONLY" | "READWRITE" | "SELECT"
    | "SWAPDB" | "DEBUG" | "MONITOR" | "SHUTDOWN" | "SAVE" | "BGSAVE" => None,
    _ => key(1),
  }
}

/// A refusal (already our error) back as the value in a pipeline's slot.
fn rn_error_value(e: &RnError) -> Value {
  let code = e.server_code.as_deref().unwrap_or("ERR");
  let detail = e
    .message
    .strip_prefix(code)
    .map(str::trim_start)
    .unwrap_or(&e.message);
  let line = format!("-{code} {}\r\n", detail.replace(['\r', '\n'], " "));
  redis::parse_redis_value(line.as_bytes()).unwrap_or(Value::Nil)
}

/// Whether a reply says the command did not run there and must be sent again through
/// the engine (which follows MOVED/ASK and waits out TRYAGAIN/CLUSTERDOWN/LOADING).
fn must_resend(v: &redis::RedisResult<Value>) -> bool {
  let code = match v {
    Ok(Value::ServerError(e)) => Some(e.code().to_string()),
    Err(e) => e.code().map(str::to_string),
    _ => None,
  };
  matches!(
    code.as_deref(),
    Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN")
  )
}

/// Sends the commands waiting in the lane of `route`, a batch at a time (one pipeline,
/// in order), until none waits.
/// Each engine call is bounded by `timeout` (the engine would go on retrying a node that
/// is gone), so one lost command never holds up the lane behind it.
async fn drain(
  lanes: Arc<Mutex<HashMap<Route, Lane>>>,
  route: Route,
  conns: Arc<std::sync::RwLock<ClusterConnection>>,
  timeout: Duration,
) {
  fn timed_out<T>() -> redis::RedisResult<T> {
    Err(redis::RedisError::from(std::io::Error::new(
      std::io::ErrorKind::TimedOut,
      "no answer within commandTimeoutMs",
    )))
  }
  loop {
    let batch = {
      let mut all = lanes.lock().unwrap_or_else(|e| e.into_inner());
      let Some(lane) = all.get_mut(&route) else {
        return;
      };
      if lane.waiting.is_empty() {
        all.remove(&route);
        return;
      }
      std::mem::take(&mut lane.waiting)
    };
    // the client's connection now (a fresh one after a failover, see `Cluster::nudge`)
    let mut conn = conns.read().unwrap_or_else(|e| e.into_inner()).clone();
    let replies: Vec<redis::RedisResult<Value>> = if batch.len() == 1 {
      vec![
        tokio::time::timeout(timeout, conn.req_packed_command(&batch[0].0))
          .await
          .unwrap_or_else(|_| timed_out()),
      ]
    } else {
      let mut pipe = redis::pipe();
      for (cmd, _) in &batch {
        pipe.add_command(cmd.clone());
      }
      let target = SingleNodeRoutingInfo::SpecificNode(route);
      let sent = tokio::time::timeout(timeout, conn.route_pipeline(pipe, 0, batch.len(), target));
      match sent.await.unwrap_or_else(|_| timed_out()) {
        Ok(values) if values.len() == batch.len() => values.into_iter().map(Ok).collect(),
        Ok(_) => batch
          .iter()
          .map(|_| {
            Err(redis::RedisError::from((
              redis::ErrorKind::Parse,
              "a pipeline got the wrong number of replies",
            )))
          })
          .collect(),
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
      }
    };
    // what did not run there (the slot moved, the node is failing over) goes again,
    // one command at a time, in order, through the engine's redirections and retries
    let mut resend = false;
    for ((cmd, tx), reply) in batch.into_iter().zip(replies) {
      let reply = if resend || must_resend(&reply) {
        resend = true;
        tokio::time::timeout(timeout, conn.req_packed_command(&cmd))
          .await
          .unwrap_or_else(|_| timed_out())
      } else {
        reply
      };
      let _ = tx.send(reply);
    }
  }
}

/// Removes the password from a message, should a lower layer ever echo it.
fn scrub(mut err: RnError, cfg: &ClientConfig) -> RnError {
  if let Some(p) = cfg.password.as_deref().filter(|p| !p.is_empty()) {
    err.message = err.message.replace(p, "***");
  }
  err
}

/// The lines of `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master>
/// <ping-sent> <pong-recv> <epoch> <link-state> <slot> ...`.
pub fn parse_nodes(text: &str) -> Vec<Node> {
  text
    .lines()
    .filter_map(|line| {
      let fields: Vec<&str> = line.split_whitespace().collect();
      if fields.len() < 8 {
        return None;
      }
      let addr = fields[1].split(['@', ',']).next()?;
      let (host, port) = addr.rsplit_once(':')?;
      let host = host.trim_start_matches('[').trim_end_matches(']');
      if host.is_empty() {
        return None; // a node without an address yet (noaddr)
      }
      let port: u16 = port.parse().ok()?;
      let flags: Vec<&str> = fields[2].split(',').collect();
      if flags.contains(&"noaddr") || flags.contains(&"handshake") {
        return None;
      }
      Some(Node {
        host: host.to_string(),
        port,
        master: flags.contains(&"master"),
        failing: flags.contains(&"fail") || flags.contains(&"fail?"),
        has_slots: fields.len() > 8,
      })
    })
    .collect()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn cluster_nodes_lists_masters_replicas_and_failing_nodes() {
    let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,noaddr - 0 0 0 disconnected
";
    let nodes = parse_nodes(text);
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[0].port, 30004);
    assert!(!nodes[0].master);
    assert!(nodes[1].master && nodes[1].has_slots && !nodes[1].failing);
    assert!(nodes[2].failing);
    assert_eq!(nodes[3].address(), "127.0.0.1:30001");
  }

  #[test]
  fn a_refusal_in_a_pipeline_slot_keeps_its_code_and_text() {
    let e = RnError {
      code: crate::error::ErrorCode::RedisCommand,
      message: "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
      server_code: Some("WRONGTYPE".into()),
    };
    let Value::ServerError(back) = rn_error_value(&e) else {
      panic!("not an error value")
    };
    assert_eq!(back.code(), "WRONGTYPE");
    assert_eq!(
      back.details(),
      Some("Operation against a key holding the wrong kind of value")
    );
  }

  #[test]
  fn a_lane_is_the_key_of_a_one_key_command_or_a_script() {
    let lane = |args: &[&str]| {
      let mut c = redis::cmd(args[0]);
      for a in &args[1..] {
        c.arg(*a);
      }
      lane_key(&c).map(|k| String::from_utf8(k).unwrap())
    };
    assert_eq!(lane(&["GET", "k"]).as_deref(), Some("k"));
    assert_eq!(
      lane(&["EVALSHA", "abc", "2", "{u}:a", "{u}:b", "x"]).as_deref(),
      Some("{u}:a")
    );
    assert_eq!(lane(&["EVALSHA", "abc", "0", "x"]), None);
    assert_eq!(lane(&["MGET", "a", "b"]), None);
    assert_eq!(lane(&["DEL", "a"]).as_deref(), Some("a"));
    assert_eq!(lane(&["PUBLISH", "ch", "m"]), None);
  }
}
