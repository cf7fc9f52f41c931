//! Opening a [`Client`]: the controller's Unix socket when it runs on this host (and
//! `MPX_SHM` is not `0`), else its TCP address; the handshake; the reader thread.

use std::{
    net::{TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, Mutex},
};

use mpx_messages::{codec::blocking, connection as files, CodecError, Key, Session};

use crate::{
    client::{find_connection_file, Client, Writer, CONNECT_TIMEOUT},
    error::ClientError,
    reader::read_loop,
    socket::Socket,
    state::Shared,
};

impl Client {
    /// Connects to a cluster by connection-file path or cluster id ("" = the only one running).
    ///
    /// # Errors
    /// The file is missing or unsafe, the controller is unreachable, or it rejects our key.
    pub fn connect(target: &str) -> Result<Client, ClientError> {
        let path = find_connection_file(target)?;
        let info = files::read_connection_file(&path).map_err(|e| ClientError::NotFound(e.to_string()))?;
        let key = Key::from_hex(&info.key)?;
        match info.local_socket() {
            Some(socket) => Self::connect_local(socket, key, &info.cluster_id, path),
            None => Self::connect_with(&info.address, key, &info.cluster_id, path),
        }
    }

    /// Connects to a controller on this host through its Unix socket at `socket` with `key`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_local(
        socket: &Path,
        key: Key,
        cluster_id: &str,
        connection_file: PathBuf,
    ) -> Result<Client, ClientError> {
        let address = socket.display().to_string();
        let stream = std::os::unix::net::UnixStream::connect(socket)
            .map_err(|cause| ClientError::Connect { address: address.clone(), cause })?;
        tracing::debug!(socket = %address, "connecting through the controller's Unix socket");
        Self::open(Socket::Unix(stream), &address, key, cluster_id, connection_file)
    }

    /// Connects to a controller at `address` with `key`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        address: &str,
        key: Key,
        cluster_id: &str,
        connection_file: PathBuf,
    ) -> Result<Client, ClientError> {
        let connect_error = |cause| ClientError::Connect { address: address.to_string(), cause };
        let socket = address
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::other("the address resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT).map_err(connect_error)?;
        let _ = stream.set_nodelay(true);
        Self::open(Socket::Tcp(stream), address, key, cluster_id, connection_file)
    }

    /// The handshake on a new connection, then the reader thread and the first exchange.
    fn open(
        mut stream: Socket,
        address: &str,
        key: Key,
        cluster_id: &str,
        connection_file: PathBuf,
    ) -> Result<Client, ClientError> {
        let connect_error = |cause| ClientError::Connect { address: address.to_string(), cause };
        // The handshake: both sides prove they hold the key, and the session is bound to fresh
        // nonces (a wrong key is found here, clearly).
        stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(connect_error)?;
        let Session { sealer, opener } = blocking::connect(&mut stream, &key).map_err(|e| match e {
            CodecError::Unproven | CodecError::Rejected | CodecError::BadProof => ClientError::Rejected,
            CodecError::Io(source) => connect_error(source),
            other => ClientError::Codec(other),
        })?;
        stream.set_read_timeout(None).map_err(connect_error)?;
        let reader = stream.try_clone().map_err(connect_error)?;
        let shared = Arc::new(Shared::new());
        let shared2 = shared.clone();
        std::thread::Builder::new()
            .name("mpx-client-reader".into())
            .spawn(move || read_loop(reader, opener, shared2))
            .map_err(connect_error)?;
        let local = stream.is_unix();
        let client = Client {
            local,
            writer: Mutex::new(Writer { stream, sealer }),
            shared,
            next_req: AtomicU64::new(1),
            cluster_id: cluster_id.to_string(),
            connection_file,
            chunk: AtomicU64::new(mpx_messages::array::chunk_bytes() as u64),
        };
        // The first exchange proves the key: a wrong one is rejected here, clearly.
        client.info(CONNECT_TIMEOUT)?;
        Ok(client)
    }
}
