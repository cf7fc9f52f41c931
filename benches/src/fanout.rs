//! The scale section's floor: what the kernel alone charges for a no-op cell on N engines
//! simulated in this process. One thread (the controller's side, a current-thread runtime as
//! the controller's) writes one small message on each of N connected sockets and reads one
//! back from each; the other side echoes on the runtime the simulated engines use. No
//! protocol, no MAC, no serialization: the system calls and the socket layer only, so a cell's
//! round trip through the controller cannot be faster on this machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{stream::FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The bytes of each message: about a no-op task's frame.
pub const MESSAGE: usize = 160;

/// Which sockets connect the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP over loopback (how the simulated engines connect).
    Tcp,
    /// Unix-domain stream sockets (how engines on the controller's host connect).
    Unix,
}

impl Transport {
    /// The row's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP loopback",
            Transport::Unix => "Unix socket",
        }
    }
}

/// Times `rounds` fan-outs to `n` connections over `transport` (after one untimed round): the
/// seconds each took. The echoing side is another process, `echo` (given where to connect and
/// how many times: see [`serve`]), as the simulated engines are another process than the
/// controller.
///
/// # Errors
/// Sockets cannot be made or connected (e.g. too few descriptors), or an echo fails.
pub fn times(
    n: usize,
    rounds: usize,
    transport: Transport,
    echo: impl FnOnce(&str) -> Result<std::process::Child>,
) -> Result<Vec<f64>> {
    let near = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("mpx-fanout-{}", std::process::id()));
    let mut ours = Vec::with_capacity(n);
    let mut child = None;
    let result = (|| {
        let _in = near.enter();
        match transport {
            Transport::Tcp => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                child = Some(echo(&format!("tcp:{}", listener.local_addr()?))?);
                for _ in 0..n {
                    let (mine, _) = listener.accept()?;
                    mine.set_nodelay(true)?;
                    mine.set_nonblocking(true)?;
                    ours.push(Box::new(tokio::net::TcpStream::from_std(mine)?) as Side);
                }
            }
            Transport::Unix => {
                std::fs::create_dir_all(&dir)?;
                let path = dir.join("s");
                let listener = std::os::unix::net::UnixListener::bind(&path)?;
                child = Some(echo(&format!("unix:{}", path.display()))?);
                for _ in 0..n {
                    let (mine, _) = listener.accept()?;
                    mine.set_nonblocking(true)?;
                    ours.push(Box::new(tokio::net::UnixStream::from_std(mine)?) as Side);
                }
            }
        }
        near.block_on(async {
            let mut times = Vec::with_capacity(rounds);
            for round in 0..=rounds {
                let t0 = Instant::now();
                fan_out(&mut ours).await?;
                if round > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            Ok::<_, anyhow::Error>(times)
        })
    })();
    // Closing our sides ends the echoing process; it is killed if it does not end.
    drop(ours);
    if let Some(mut child) = child {
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The echoing process: connects `n` times to `to` (`tcp:ADDRESS` or `unix:PATH`, as
/// [`times`] gives it) and echoes every message on a multi-threaded runtime of 2 workers (as
/// the simulated engines run), until the other side closes.
///
/// # Errors
/// A connection cannot be made, or `to` is malformed.
pub fn serve(to: &str, n: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(address) = to.strip_prefix("tcp:") {
                let s = tokio::net::TcpStream::connect(address).await.context("connect")?;
                s.set_nodelay(true)?;
                tasks.push(tokio::spawn(echo(s)));
            } else if let Some(path) = to.strip_prefix("unix:") {
                let s = tokio::net::UnixStream::connect(path).await.context("connect")?;
                tasks.push(tokio::spawn(echo(s)));
            } else {
                anyhow::bail!("not tcp:ADDRESS or unix:PATH: {to}");
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

/// A connected stream socket, TCP or Unix.
trait Duplex: AsyncRead + AsyncWrite + Unpin {}

impl<S: AsyncRead + AsyncWrite + Unpin> Duplex for S {}

/// One side of a connection, on the controller's side.
type Side = Box<dyn Duplex>;

/// One message out on every connection, then one back from each.
async fn fan_out(sides: &mut [Side]) -> Result<()> {
    let message = [7u8; MESSAGE];
    for side in sides.iter_mut() {
        side.write_all(&message).await?;
    }
    let mut back: FuturesUnordered<_> = sides
        .iter_mut()
        .map(|side| async move {
            let mut buf = [0u8; MESSAGE];
            side.read_exact(&mut buf).await
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(got) =
        tokio::time::timeout_at(deadline, back.next()).await.context("an echo took over 60 s")?
    {
        got.context("an echo failed")?;
    }
    Ok(())
}

/// The engines' side: every message back as it came.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = [0u8; MESSAGE];
    while s.read_exact(&mut buf).await.is_ok() {
        if s.write_all(&buf).await.is_err() {
            break;
        }
    }
}
