//! A diagnostic of the no-op cell's hop (`hop_chain_rtt`): the thread hand-offs a cell on one
//! engine makes in mpx, with nothing else. A caller thread writes 64 bytes to a Unix socket; a
//! "controller" thread reads them and writes them to a second Unix socket; an engine's
//! "control" thread reads them there and hands them to an "MPI" thread by a channel, which
//! hands them straight back; the control thread writes them back; the controller relays them
//! to the client's socket, where a "reader" thread reads them and hands them to the caller by a
//! channel. Seven wake-ups per round trip (controller, control, MPI, control, controller,
//! reader, caller), as in mpx (BENCHMARKS.md: "Why rtt1 stays near 200 µs here"), with no protocol, no MAC, no
//! serialization and no event loop: blocking reads and `std::sync::mpsc`, cheaper than the
//! epoll and eventfd wake-ups of the real threads. A cell's round trip cannot be shorter than
//! this on the same machine while it crosses these threads.

use std::{
    io::{ErrorKind, Read, Write},
    net::Shutdown,
    os::unix::net::UnixStream,
    sync::mpsc,
    thread,
    time::Instant,
};

use anyhow::{anyhow, ensure, Result};

/// The bytes of each message (about a no-op task's frame head).
const MESSAGE: usize = 64;

type Message = [u8; MESSAGE];

/// Round trips through the chain of threads (see the module): `samples` of them after `warmup`.
///
/// # Errors
/// A socket error, or a thread that failed.
pub fn hop_chain_rtt(warmup: usize, samples: usize) -> Result<Vec<f64>> {
    let (mut client, mut ctl_client) = UnixStream::pair()?;
    let (mut ctl_engine, mut engine) = UnixStream::pair()?;
    let mut client_reader = client.try_clone()?;
    let controller = thread::spawn(move || -> std::io::Result<()> {
        let mut buf: Message = [0; MESSAGE];
        loop {
            if let Err(e) = ctl_client.read_exact(&mut buf) {
                return if e.kind() == ErrorKind::UnexpectedEof { Ok(()) } else { Err(e) };
            }
            ctl_engine.write_all(&buf)?;
            ctl_engine.read_exact(&mut buf)?;
            ctl_client.write_all(&buf)?;
        }
    });
    let (to_mpi, mpi_jobs) = mpsc::channel::<Message>();
    let (to_control, replies) = mpsc::channel::<Message>();
    let mpi = thread::spawn(move || {
        for job in mpi_jobs {
            if to_control.send(job).is_err() {
                break;
            }
        }
    });
    let control = thread::spawn(move || -> std::io::Result<()> {
        let mut buf: Message = [0; MESSAGE];
        loop {
            if let Err(e) = engine.read_exact(&mut buf) {
                return if e.kind() == ErrorKind::UnexpectedEof { Ok(()) } else { Err(e) };
            }
            let reply = to_mpi.send(buf).ok().and_then(|()| replies.recv().ok());
            let Some(reply) = reply else { return Err(ErrorKind::BrokenPipe.into()) };
            engine.write_all(&reply)?;
        }
    });
    let (to_caller, answers) = mpsc::channel::<Message>();
    let reader = thread::spawn(move || {
        let mut buf: Message = [0; MESSAGE];
        while client_reader.read_exact(&mut buf).is_ok() {
            if to_caller.send(buf).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::with_capacity(samples);
    let timed = (|| -> Result<()> {
        for i in 0..warmup + samples {
            let mut msg: Message = [0; MESSAGE];
            msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let t0 = Instant::now();
            client.write_all(&msg)?;
            let back = answers.recv()?;
            let dt = t0.elapsed().as_secs_f64();
            ensure!(back == msg, "the chain gave back another message");
            if i >= warmup {
                out.push(dt);
            }
        }
        Ok(())
    })();
    // Closing the client's socket ends the controller, which ends the engine's threads.
    client.shutdown(Shutdown::Both)?;
    let ended = [
        controller
            .join()
            .map_err(|_| anyhow!("the controller thread panicked"))?
            .map_err(anyhow::Error::from),
        control.join().map_err(|_| anyhow!("the control thread panicked"))?.map_err(anyhow::Error::from),
    ];
    mpi.join().map_err(|_| anyhow!("the MPI thread panicked"))?;
    reader.join().map_err(|_| anyhow!("the reader thread panicked"))?;
    timed?;
    for e in ended {
        e?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_gives_every_message_back_and_ends_its_threads() {
        let times = hop_chain_rtt(2, 20).unwrap();
        assert_eq!(times.len(), 20);
        assert!(times.iter().all(|&t| t > 0.0));
    }
}
