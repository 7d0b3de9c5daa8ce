//! One connection's bytes: opened (TCP, TLS, then AUTH / SELECT / CLIENT SETNAME / PING)
//! with tokio, then handed to the JS thread's event loop as a non-blocking socket that
//! `Transport` reads and writes directly.

use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcp;
use std::sync::Arc;

use redis::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{ErrorCode, NotNow, RnError, RnResult};
use crate::options::ClientConfig;
use crate::resp;

/// A connected, authenticated socket in non-blocking mode.
pub enum Transport {
  Plain(StdTcp),
  Tls {
    sock: StdTcp,
    tls: Box<rustls::ClientConnection>,
  },
}

/// What a read found.
pub enum ReadState {
  /// The socket is still open (maybe with new bytes).
  Open,
  /// The server closed the connection.
  Closed,
}

impl Transport {
  fn sock(&self) -> &StdTcp {
    match self {
      Transport::Plain(s) => s,
      Transport::Tls { sock, .. } => sock,
    }
  }

  /// The socket, for the event loop to watch.
  pub fn raw_socket(&self) -> crate::runtime::uv::Socket {
    #[cfg(unix)]
    {
      use std::os::fd::AsRawFd;
      self.sock().as_raw_fd()
    }
    #[cfg(windows)]
    {
      use std::os::windows::io::AsRawSocket;
      self.sock().as_raw_socket() as usize
    }
  }

  /// Writes what the socket takes now of `out[*sent..]`, advancing `*sent`. True when
  /// bytes are left to write (wait until the socket is writable).
  pub fn write_some(&mut self, out: &[u8], sent: &mut usize) -> io::Result<bool> {
    match self {
      Transport::Plain(sock) => {
        while *sent < out.len() {
          match sock.write(&out[*sent..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
          }
        }
        Ok(false)
      }
      Transport::Tls { sock, tls } => loop {
        if *sent < out.len() {
          let n = tls.writer().write(&out[*sent..])?;
          *sent += n;
        }
        let mut blocked = false;
        while tls.wants_write() {
          match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
              blocked = true;
              break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
          }
        }
        if blocked {
          return Ok(true);
        }
        if *sent >= out.len() {
          return Ok(false);
        }
      },
    }
  }

  /// Appends what the server sent to `into`, until the socket has nothing more now.
  pub fn read_some(&mut self, into: &mut Vec<u8>) -> io::Result<ReadState> {
    let mut chunk = [0u8; 64 * 1024];
    match self {
      Transport::Plain(sock) => loop {
        match sock.read(&mut chunk) {
          Ok(0) => return Ok(ReadState::Closed),
          Ok(n) => {
            into.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
              return Ok(ReadState::Open);
            }
          }
          Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Open),
          Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
          Err(e) => return Err(e),
        }
      },
      Transport::Tls { sock, tls } => loop {
        match tls.read_tls(sock) {
          Ok(0) => return Ok(ReadState::Closed),
          Ok(_) => {
            tls
              .process_new_packets()
              .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            loop {
              match tls.reader().read(&mut chunk) {
                Ok(0) => return Ok(ReadState::Closed),
                Ok(n) => into.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
              }
            }
          }
          Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Open),
          Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
          Err(e) => return Err(e),
        }
      },
    }
  }
}

/// Opens a connection to `cfg`'s server and prepares it: TLS when configured, then AUTH,
/// SELECT, CLIENT SETNAME `name`, the library's name, and a PING, all within
/// `connectTimeoutMs`. Messages name `what` (e.g. "cannot connect to Redis at host:port").
pub async fn open(cfg: &ClientConfig, name: Option<&str>, what: &str) -> RnResult<Transport> {
  // Sentinel: the master named now
  let resolved;
  let cfg = if matches!(cfg.topology, crate::options::Topology::Sentinel(_)) {
    resolved = super::sentinel::resolve(cfg).await?;
    &resolved
  } else {
    cfg
  };
  let no_answer = || {
    RnError::connection(format!(
      "{what}: no answer within {} ms (connectTimeoutMs)",
      cfg.connect_timeout.as_millis()
    ))
  };
  match tokio::time::timeout(cfg.connect_timeout, open_now(cfg, name)).await {
    Err(_) => Err(no_answer()),
    Ok(Err(e)) => Err(e.context(what)),
    Ok(Ok(t)) => Ok(t),
  }
}

async fn open_now(cfg: &ClientConfig, name: Option<&str>) -> RnResult<Transport> {
  let tcp = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port))
    .await
    .map_err(|e| RnError::connection(e.to_string()))?;
  let _ = tcp.set_nodelay(true);
  match &cfg.tls {
    None => {
      let mut tcp = tcp;
      handshake(&mut tcp, cfg, name).await?;
      let std = tcp
        .into_std()
        .map_err(|e| RnError::connection(e.to_string()))?;
      std
        .set_nonblocking(true)
        .map_err(|e| RnError::connection(e.to_string()))?;
      Ok(Transport::Plain(std))
    }
    Some(tls) => {
      let config = super::tls::client_config(tls)?;
      let server = super::tls::server_name(tls, &cfg.host)?;
      let connector = tokio_rustls::TlsConnector::from(Arc::<rustls::ClientConfig>::clone(&config));
      let mut stream = connector
        .connect(server, tcp)
        .await
        .map_err(|e| RnError::connection(format!("TLS handshake failed: {e}")))?;
      handshake(&mut stream, cfg, name).await?;
      let (tcp, conn) = stream.into_inner();
      let std = tcp
        .into_std()
        .map_err(|e| RnError::connection(e.to_string()))?;
      std
        .set_nonblocking(true)
        .map_err(|e| RnError::connection(e.to_string()))?;
      Ok(Transport::Tls {
        sock: std,
        tls: Box::new(conn),
      })
    }
  }
}

/// What a setup command answered wrong means.
enum Step {
  Auth,
  Select,
  SetName,
  LibInfo,
  Ping,
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
  io: &mut S,
  cfg: &ClientConfig,
  name: Option<&str>,
) -> RnResult<()> {
  let mut steps = Vec::new();
  let mut out = Vec::new();
  if let Some(password) = &cfg.password {
    let mut cmd = redis::cmd("AUTH");
    if let Some(user) = &cfg.username {
      cmd.arg(user);
    }
    cmd.arg(password);
    cmd.write_packed_command(&mut out);
    steps.push(Step::Auth);
  }
  if cfg.db != 0 {
    redis::cmd("SELECT")
      .arg(cfg.db)
      .write_packed_command(&mut out);
    steps.push(Step::Select);
  }
  if let Some(name) = name {
    redis::cmd("CLIENT")
      .arg("SETNAME")
      .arg(name)
      .write_packed_command(&mut out);
    steps.push(Step::SetName);
  }
  redis::cmd("CLIENT")
    .arg("SETINFO")
    .arg("LIB-NAME")
    .arg("nestjs-redis-native")
    .write_packed_command(&mut out);
  steps.push(Step::LibInfo);
  redis::cmd("CLIENT")
    .arg("SETINFO")
    .arg("LIB-VER")
    .arg(env!("CARGO_PKG_VERSION"))
    .write_packed_command(&mut out);
  steps.push(Step::LibInfo);
  redis::cmd("PING").write_packed_command(&mut out);
  steps.push(Step::Ping);

  io.write_all(&out)
    .await
    .map_err(|e| RnError::connection(e.to_string()))?;
  io.flush()
    .await
    .map_err(|e| RnError::connection(e.to_string()))?;

  let mut buf = Vec::with_capacity(512);
  let mut chunk = [0u8; 4096];
  let mut at = 0;
  for step in steps {
    let value = loop {
      match resp::parse(&buf[at..]) {
        Ok(Some((v, used))) => {
          at += used;
          break v;
        }
        Ok(None) => {}
        Err(_) => return Err(not_redis()),
      }
      let n = io
        .read(&mut chunk)
        .await
        .map_err(|e| RnError::connection(e.to_string()))?;
      if n == 0 {
        return Err(RnError::connection(
          "the server closed the connection during the handshake",
        ));
      }
      buf.extend_from_slice(&chunk[..n]);
    };
    let Value::ServerError(e) = value else {
      continue;
    };
    let err = RnError::from(redis::RedisError::from(e.clone()));
    match step {
      Step::LibInfo => {} // older servers do not know CLIENT SETINFO
      Step::Auth => {
        let mut err = err;
        err.code = ErrorCode::RedisAuth;
        if e
          .details()
          .is_some_and(|d| d.contains("without any password configured"))
        {
          err.message =
            "the server refused the password: it has no password set, so connect without one"
              .into();
        } else {
          err.message = format!(
            "the server refused the {} (AUTH: {})",
            if cfg.username.is_some() {
              "username and password"
            } else {
              "password"
            },
            e.code()
          );
        }
        return Err(err);
      }
      Step::Select | Step::SetName => return Err(err),
      Step::Ping => {
        if NotNow::of_reply(&e).is_some() || err.code == ErrorCode::RedisAuth {
          return Err(err);
        }
        return Err(err);
      }
    }
  }
  Ok(())
}

fn not_redis() -> RnError {
  RnError::connection(
    "it did not answer like a Redis server (is this the port of another service, an HTTP server for example?)",
  )
}
