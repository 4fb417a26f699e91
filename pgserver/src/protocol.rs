//! A client connection: our own loop around pgwire's message handling, with
//! every message a client sends checked before pgwire decodes it.
//!
//! pgwire's decoders trust what they read: a malformed Parse, Bind or
//! CopyData panicked (ending the connection with a backtrace in the log),
//! Bind read past its own length, a 1 GB length prefix was buffered before
//! authentication, and invalid UTF-8 became U+FFFD silently. Here the bytes
//! go through [`Checked`], which frames each message itself and hands it on
//! only once it is well formed: PostgreSQL's limits on lengths, the
//! layout of every message type pgwire decodes (strings terminated inside
//! the message, counts that fit, nothing left over), and UTF-8. A message
//! that fails is answered as PostgreSQL answers it: FATAL with its
//! SQLSTATE (08P01 protocol violation, 0A000 unsupported protocol), and
//! the connection closes. A query text that is not UTF-8 is an ERROR
//! (22021) and the session goes on, as in PostgreSQL: the message is
//! rewritten into one carrying [`INVALID_TEXT`], which the handlers answer
//! with that error.
//!
//! The loop also answers SSLRequest and GSSENCRequest with 'N' (no
//! encryption; the client goes on in plain text or gives up, as it is
//! configured), limits the time to complete startup, and sends the FATAL
//! 25P03 of `idle_in_transaction_session_timeout` before it closes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, DefaultClient, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::handler::Connection;

/// The query text a Query or Parse message carries in place of text that
/// was not valid UTF-8; the handlers answer it with 22021. (A client that
/// sends this text itself gets the same error.)
pub(crate) const INVALID_TEXT: &str =
    "\u{FFFF}mako: the client sent a query that is not UTF-8\u{FFFF}";

/// The error a query carrying [`INVALID_TEXT`] gets.
pub(crate) fn invalid_text_error() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "22021".to_owned(),
        "invalid byte sequence for encoding \"UTF8\" in the query text".to_owned(),
    )))
}

/// Time a client has to complete startup (PostgreSQL's
/// authentication_timeout is one minute too).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest startup packet (PostgreSQL's MAX_STARTUP_PACKET_LENGTH).
const MAX_STARTUP: usize = 10_000;

/// The longest Query, Parse, Bind or CopyData (PostgreSQL's
/// PQ_LARGE_MESSAGE_LIMIT, 1 GB less a byte).
const MAX_LARGE: usize = (1 << 30) - 1;

/// The longest of the other messages (PostgreSQL's PQ_SMALL_MESSAGE_LIMIT).
const MAX_SMALL: usize = 10_000;

/// The longest password or SASL message (PostgreSQL's
/// PG_MAX_AUTH_TOKEN_LENGTH, and the header).
const MAX_AUTH: usize = 65_535 + 4;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// Why a client's message was refused: sent as FATAL, then the connection
/// closes.
#[derive(Debug)]
pub(crate) struct Refusal {
    code: &'static str,
    message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Refusal {}

fn violation(message: impl Into<String>) -> Refusal {
    Refusal {
        code: "08P01",
        message: message.into(),
    }
}

/// Reads the fields of a message body, each checked against its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Refusal> {
        if self.0.len() < n {
            return Err(violation(format!(
                "insufficient data left in message ({what})"
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A string terminated by NUL inside the message (without the NUL).
    fn cstr(&mut self, what: &str) -> Result<&'a [u8], Refusal> {
        let Some(end) = self.0.iter().position(|&b| b == 0) else {
            return Err(violation(format!("invalid string in message ({what})")));
        };
        let s = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    /// A name (statement, portal, parameter): UTF-8.
    fn name(&mut self, what: &str) -> Result<&'a [u8], Refusal> {
        let s = self.cstr(what)?;
        if std::str::from_utf8(s).is_err() {
            return Err(Refusal {
                code: "22021",
                message: format!("invalid byte sequence for encoding \"UTF8\" ({what})"),
            });
        }
        Ok(s)
    }

    fn i16(&mut self, what: &str) -> Result<i16, Refusal> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, Refusal> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of `size`-byte items that must fit in what is left.
    fn count(&mut self, size: usize, what: &str) -> Result<usize, Refusal> {
        let n = self.i16(what)?;
        let n = usize::try_from(n).map_err(|_| violation(format!("invalid {what}: {n}")))?;
        if n.saturating_mul(size) > self.0.len() {
            return Err(violation(format!(
                "insufficient data left in message ({what})"
            )));
        }
        Ok(n)
    }

    fn end(&self, ty: u8) -> Result<(), Refusal> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(violation(format!(
                "invalid message format ({} bytes left over in a {:?} message)",
                self.0.len(),
                char::from(ty)
            )))
        }
    }
}

/// What the next message in the buffer is.
enum Next {
    /// More bytes are needed (at least this many in all).
    Need(usize),
    /// The first `n` bytes are a checked message.
    Ready(usize),
    /// A message of `n` bytes in all whose body needs no check (CopyData,
    /// password): handed on as it arrives.
    Pass(usize),
}

/// Where a connection is in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The next message is the startup packet (or a cancel request).
    Startup,
    /// Typed messages.
    Typed,
}

/// The client's socket, seen through the checks (see the module doc).
pub(crate) struct Checked<S> {
    inner: S,
    phase: Phase,
    /// Bytes read and not yet handed on.
    buf: BytesMut,
    /// Bytes at the front of `buf` that may be handed on.
    ready: usize,
    /// Bytes of a message handed on unchecked that are still to come.
    pass: usize,
    /// Set once a message is refused: every later read fails with it.
    refused: Option<Arc<Refusal>>,
}

impl<S> Checked<S> {
    pub(crate) fn new(inner: S, already_read: &[u8]) -> Self {
        Checked {
            inner,
            phase: Phase::Startup,
            buf: BytesMut::from(already_read),
            ready: 0,
            pass: 0,
            refused: None,
        }
    }

    fn refusal_error(r: &Arc<Refusal>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, RefusalHandle(r.clone()))
    }

    /// Looks at the next message in `buf`.
    fn next(&mut self) -> Result<Next, Refusal> {
        match self.phase {
            Phase::Startup => self.next_startup(),
            Phase::Typed => self.next_typed(),
        }
    }

    fn next_startup(&mut self) -> Result<Next, Refusal> {
        if self.buf.len() < 8 {
            return Ok(Next::Need(8));
        }
        let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let code = i32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        let len = usize::try_from(len).unwrap_or(0);
        if !(8..=MAX_STARTUP).contains(&len) {
            return Err(violation("invalid length of startup packet"));
        }
        if self.buf.len() < len {
            return Ok(Next::Need(len));
        }
        match code {
            CANCEL_REQUEST if len == 16 => return Ok(Next::Ready(16)),
            CANCEL_REQUEST => return Err(violation("invalid length of cancel request packet")),
            SSL_REQUEST | GSSENC_REQUEST => {
                return Err(violation("unexpected encryption request after negotiation"));
            }
            _ => {}
        }
        let (major, minor) = (code >> 16, code & 0xffff);
        if major != 3 {
            return Err(Refusal {
                code: "0A000",
                message: format!(
                    "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2"
                ),
            });
        }
        // Name and value strings, then an empty string.
        let mut f = Fields(&self.buf[8..len]);
        let mut strings = 0usize;
        loop {
            let s = f.name("startup parameter")?;
            if s.is_empty() {
                break;
            }
            strings += 1;
            if strings > 2 * 1000 {
                return Err(violation("too many startup parameters"));
            }
        }
        if !strings.is_multiple_of(2) {
            return Err(violation(
                "invalid startup packet layout: a parameter has no value",
            ));
        }
        f.end(0)?;
        self.phase = Phase::Typed;
        Ok(Next::Ready(len))
    }

    fn next_typed(&mut self) -> Result<Next, Refusal> {
        if self.buf.len() < 5 {
            return Ok(Next::Need(5));
        }
        let ty = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let limit = match ty {
            b'Q' | b'P' | b'B' | b'd' => MAX_LARGE,
            b'p' => MAX_AUTH,
            b'D' | b'E' | b'C' | b'H' | b'S' | b'X' | b'c' | b'f' => MAX_SMALL,
            _ => {
                return Err(violation(format!("invalid frontend message type {ty}")));
            }
        };
        let len = match usize::try_from(len) {
            Ok(l) if (4..=limit).contains(&l) => l,
            _ => return Err(violation(format!("invalid message length ({len})"))),
        };
        let total = len + 1;
        if matches!(ty, b'd' | b'p') {
            return Ok(Next::Pass(total));
        }
        if self.buf.len() < total {
            return Ok(Next::Need(total));
        }
        let body = &self.buf[5..total];
        let mut f = Fields(body);
        match ty {
            b'Q' => {
                let text = f.cstr("query string")?;
                f.end(ty)?;
                if std::str::from_utf8(text).is_err() {
                    let mut m = BytesMut::new();
                    m.put_u8(b'Q');
                    put_len(&mut m, 4 + INVALID_TEXT.len() + 1);
                    m.put_slice(INVALID_TEXT.as_bytes());
                    m.put_u8(0);
                    return Ok(Next::Ready(self.replace(total, m)));
                }
            }
            b'P' => {
                let name = f.name("prepared statement name")?;
                let text = f.cstr("query string")?;
                let n = f.count(4, "parameter type count")?;
                let types = f.take(4 * n, "parameter types")?;
                f.end(ty)?;
                if std::str::from_utf8(text).is_err() {
                    let mut m = BytesMut::new();
                    m.put_u8(b'P');
                    put_len(
                        &mut m,
                        4 + name.len() + 1 + INVALID_TEXT.len() + 1 + 2 + types.len(),
                    );
                    m.put_slice(name);
                    m.put_u8(0);
                    m.put_slice(INVALID_TEXT.as_bytes());
                    m.put_u8(0);
                    m.put_i16(n as i16);
                    m.put_slice(types);
                    return Ok(Next::Ready(self.replace(total, m)));
                }
            }
            b'B' => {
                f.name("portal name")?;
                f.name("prepared statement name")?;
                let formats = f.count(2, "parameter format count")?;
                for _ in 0..formats {
                    f.i16("parameter format")?;
                }
                let params = f.count(4, "parameter count")?;
                for _ in 0..params {
                    let len = f.i32("parameter length")?;
                    if len == -1 {
                        continue;
                    }
                    let len = usize::try_from(len)
                        .map_err(|_| violation(format!("invalid parameter length {len}")))?;
                    f.take(len, "parameter value")?;
                }
                let results = f.count(2, "result format count")?;
                for _ in 0..results {
                    f.i16("result format")?;
                }
                f.end(ty)?;
            }
            b'D' | b'C' => {
                let kind = f.take(1, "kind")?[0];
                if kind != b'S' && kind != b'P' {
                    return Err(violation(format!(
                        "invalid {} message subtype {kind}",
                        if ty == b'D' { "DESCRIBE" } else { "CLOSE" }
                    )));
                }
                f.name("name")?;
                f.end(ty)?;
            }
            b'E' => {
                f.name("portal name")?;
                f.i32("row limit")?;
                f.end(ty)?;
            }
            b'f' => {
                f.cstr("error message")?;
                f.end(ty)?;
            }
            // Flush, Sync, Terminate, CopyDone: no body.
            _ => f.end(ty)?,
        }
        Ok(Next::Ready(total))
    }

    /// Puts `message` in place of the first `n` bytes of `buf`; its length.
    fn replace(&mut self, n: usize, message: BytesMut) -> usize {
        let rest = self.buf.split_off(n);
        let len = message.len();
        self.buf = message;
        self.buf.unsplit(rest);
        len
    }
}

fn put_len(m: &mut BytesMut, len: usize) {
    // Callers build messages far below i32::MAX.
    m.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

/// A refusal carried through an `io::Error` to the connection loop.
#[derive(Debug)]
struct RefusalHandle(Arc<Refusal>);

impl std::fmt::Display for RefusalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RefusalHandle {}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(r) = &this.refused {
                return Poll::Ready(Err(Self::refusal_error(r)));
            }
            let need = if this.pass > 0 {
                if !this.buf.is_empty() {
                    let n = this.pass.min(this.buf.len());
                    this.ready = n;
                    this.pass -= n;
                    continue;
                }
                this.pass.min(64 << 10)
            } else {
                match this.next() {
                    Ok(Next::Ready(n)) => {
                        this.ready = n;
                        continue;
                    }
                    Ok(Next::Pass(n)) => {
                        this.pass = n;
                        continue;
                    }
                    Ok(Next::Need(n)) => n - this.buf.len(),
                    Err(r) => {
                        this.refused = Some(Arc::new(r));
                        continue;
                    }
                }
            };
            // Read what the next step needs (more if it is there), growing
            // the buffer only as bytes arrive.
            this.buf.reserve(need.clamp(4 << 10, 64 << 10));
            let before = this.buf.len();
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.buf
            ))?;
            if this.buf.len() == before {
                // End of stream; a message cut short is dropped with it.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Answers the encryption requests a client may send before its startup
/// packet with 'N'; returns the first 8 bytes of the packet that follows
/// (`None` if the client went away).
async fn decline_encryption(socket: &mut TcpStream) -> io::Result<Option<[u8; 8]>> {
    loop {
        let mut head = [0u8; 8];
        match socket.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let code = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
            socket.write_all(b"N").await?;
            continue;
        }
        return Ok(Some(head));
    }
}

type Socket = Framed<Checked<TcpStream>, PgWireMessageServerCodec<crate::handler::Statement>>;

/// Sends a FATAL error and closes the connection.
async fn fatal(socket: &mut Socket, code: &str, message: String) {
    let info = ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message);
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
    let _ = socket.close().await;
}

/// Serves one client until it leaves, a message of its is refused, it sits
/// idle in a transaction for too long, or it fails to start up in time.
/// Frames and decodes `input` as a client's bytes are: through the checks,
/// then pgwire's decoders, from the startup packet when `startup`, else as
/// the messages after it. Returns how many messages were decoded. For the
/// cargo-fuzz target `pg_messages` (fuzz/): no input may make it panic.
#[doc(hidden)]
pub fn decode_client_bytes(input: &[u8], startup: bool) -> usize {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return 0;
    };
    rt.block_on(async {
        let mut checked = Checked::new(io::Cursor::new(input.to_vec()), &[]);
        if !startup {
            checked.phase = Phase::Typed;
        }
        let peer: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut socket = Framed::new(
            checked,
            PgWireMessageServerCodec::<crate::handler::Statement>::new(DefaultClient::new(
                peer, false,
            )),
        );
        socket.set_state(if startup {
            PgWireConnectionState::AwaitingStartup
        } else {
            PgWireConnectionState::ReadyForQuery
        });
        let mut decoded = 0;
        while let Some(Ok(_)) = socket.next().await {
            decoded += 1;
        }
        decoded
    })
}

pub(crate) async fn serve_client(mut tcp: TcpStream, peer: SocketAddr, conn: Arc<Connection>) {
    let _ = tcp.set_nodelay(true);
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let head = tokio::select! {
        _ = &mut startup_deadline => return,
        head = decline_encryption(&mut tcp) => match head {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection ended before startup");
                return;
            }
        },
    };
    let mut socket: Socket = Framed::new(
        Checked::new(tcp, &head),
        PgWireMessageServerCodec::new(DefaultClient::new(peer, false)),
    );
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    // The connection is its own startup, simple and extended handler.
    let (startup, simple, extended) = (conn.clone(), conn.clone(), conn.clone());
    let copy = conn.copy_handler();
    let cancel = conn.cancel_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let msg = tokio::select! {
            // As PostgreSQL: a client that does not start up in time is
            // disconnected without a message.
            _ = &mut startup_deadline, if starting => return,
            _ = conn.idle_timeout() => {
                tracing::info!(%peer, "terminating connection due to idle-in-transaction timeout");
                fatal(
                    &mut socket,
                    "25P03",
                    "terminating connection due to idle-in-transaction timeout".into(),
                )
                .await;
                return;
            }
            msg = socket.next() => msg,
        };
        let msg = match msg {
            None => return,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let refusal = match &e {
                    PgWireError::IoError(io) => io
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<RefusalHandle>())
                        .map(|h| h.0.clone()),
                    _ => None,
                };
                match refusal {
                    Some(r) => {
                        tracing::info!(%peer, error = %r, "client message refused; closing the connection");
                        fatal(&mut socket, r.code, r.message.clone()).await;
                    }
                    None => {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                        if !matches!(e, PgWireError::IoError(_)) {
                            fatal(&mut socket, "08P01", format!("invalid message: {e}")).await;
                        }
                    }
                }
                return;
            }
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            return;
        }
        let extended_flow = match socket.state() {
            PgWireConnectionState::CopyInProgress(is_extended) => is_extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let handled = process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(e) = handled {
            let fatal_error = e.is_fatal();
            if let Err(io) = process_error(&mut socket, e, extended_flow).await {
                tracing::debug!(%peer, error = %io, "cannot send an error to the client");
                return;
            }
            if fatal_error {
                return;
            }
        }
        if is_cancel {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `bytes` (after a valid startup packet) through the checks and
    /// returns what was handed on and the refusal, if any.
    fn check(bytes: &[u8]) -> (Vec<u8>, Option<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut input = startup_packet();
            input.extend_from_slice(bytes);
            let mut c = Checked::new(&input[..], &[]);
            let mut out = Vec::new();
            match c.read_to_end(&mut out).await {
                Ok(_) => (out, None),
                Err(e) => (out, Some(e.to_string())),
            }
        })
    }

    fn startup_packet() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        body.extend_from_slice(b"user\0u\0\0");
        let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        p
    }

    fn message(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// The fuzz target's entry point decodes what passes the checks, and
    /// stops at what does not.
    #[test]
    fn client_bytes_decode_up_to_the_first_refusal() {
        assert_eq!(decode_client_bytes(&startup_packet(), true), 1);
        let mut two = message(b'Q', b"SELECT 1\0");
        two.extend(message(b'S', b""));
        assert_eq!(decode_client_bytes(&two, false), 2);
        let mut bad = message(b'Q', b"SELECT 1\0");
        bad.extend(message(b'Q', b"no terminator"));
        bad.extend(message(b'S', b""));
        assert_eq!(decode_client_bytes(&bad, false), 1);
        assert_eq!(decode_client_bytes(&[0xff; 64], false), 0);
    }

    #[test]
    fn well_formed_messages_pass_unchanged() {
        let mut bind = b"\0s1\0".to_vec();
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&2i16.to_be_bytes());
        bind.extend_from_slice(&(-1i32).to_be_bytes());
        bind.extend_from_slice(&3i32.to_be_bytes());
        bind.extend_from_slice(b"abc");
        bind.extend_from_slice(&0i16.to_be_bytes());
        let mut parse = b"s1\0SELECT $1\0".to_vec();
        parse.extend_from_slice(&1i16.to_be_bytes());
        parse.extend_from_slice(&23i32.to_be_bytes());
        let mut execute = b"\0".to_vec();
        execute.extend_from_slice(&0i32.to_be_bytes());
        let mut all = Vec::new();
        for m in [
            message(b'Q', b"SELECT 1\0"),
            message(b'P', &parse),
            message(b'B', &bind),
            message(b'D', b"P\0"),
            message(b'E', &execute),
            message(b'C', b"S\0"),
            message(b'H', b""),
            message(b'S', b""),
            message(b'd', b"any bytes \0\xff"),
            message(b'c', b""),
            message(b'X', b""),
        ] {
            all.extend_from_slice(&m);
        }
        let (out, refused) = check(&all);
        assert_eq!(refused, None);
        let mut want = startup_packet();
        want.extend_from_slice(&all);
        assert_eq!(out, want);
    }

    #[test]
    fn malformed_messages_are_refused_after_those_before_them() {
        let good = message(b'Q', b"SELECT 1\0");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (message(b'Z', b""), "invalid frontend message type 90"),
            (vec![b'Q', 0, 0, 0, 2], "invalid message length (2)"),
            (vec![b'S', 0x7f, 0xff, 0xff, 0xff], "invalid message length"),
            (message(b'Q', b"SELECT 1"), "invalid string"),
            (message(b'Q', b"SELECT 1\0\0"), "left over"),
            (message(b'P', b"s\0SELECT 1\0\x00\x05"), "insufficient data"),
            (
                message(b'P', b"s\0SELECT 1\0\xff\xff"),
                "invalid parameter type count",
            ),
            (
                message(b'B', b"\0\0\x00\x00\x00\x01\x00\x00\x00\x09ab\x00\x00"),
                "insufficient data",
            ),
            (
                message(b'B', b"\0\0\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"),
                "invalid parameter length",
            ),
            (message(b'D', b"X\0"), "invalid DESCRIBE message subtype"),
            (message(b'E', b"\0\0\0"), "insufficient data"),
            (message(b'S', b"x"), "left over"),
            (message(b'P', b"\xff\0SELECT 1\0\0\0"), "22021"),
        ];
        for (bad, want) in cases {
            let mut input = good.clone();
            input.extend_from_slice(&bad);
            input.extend_from_slice(&good);
            let (out, refused) = check(&input);
            let refused = refused.unwrap_or_else(|| panic!("{bad:?} was not refused"));
            assert!(refused.contains(want), "{bad:?}: {refused}");
            let mut want_out = startup_packet();
            want_out.extend_from_slice(&good);
            assert_eq!(
                out, want_out,
                "{bad:?}: only the message before it is handed on"
            );
        }
    }

    #[test]
    fn a_query_that_is_not_utf8_becomes_the_marked_text() {
        let (out, refused) = check(&message(b'Q', b"SELECT '\xff'\0"));
        assert_eq!(refused, None);
        let mut want = startup_packet();
        want.extend_from_slice(&message(b'Q', format!("{INVALID_TEXT}\0").as_bytes()));
        assert_eq!(out, want);
        let (out, refused) = check(&message(b'P', b"s1\0SELECT '\xc3'\0\x00\x00"));
        assert_eq!(refused, None);
        let mut want = startup_packet();
        want.extend_from_slice(&message(
            b'P',
            format!("s1\0{INVALID_TEXT}\0\0\0").as_bytes(),
        ));
        assert_eq!(out, want);
    }

    #[test]
    fn startup_packets_are_checked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let run = |input: Vec<u8>| {
            rt.block_on(async {
                let mut c = Checked::new(&input[..], &[]);
                let mut out = Vec::new();
                c.read_to_end(&mut out).await.err().map(|e| e.to_string())
            })
        };
        let packet = |code: i32, params: &[u8]| {
            let mut p = ((params.len() + 8) as i32).to_be_bytes().to_vec();
            p.extend_from_slice(&code.to_be_bytes());
            p.extend_from_slice(params);
            p
        };
        assert_eq!(run(packet(196_608, b"user\0u\0\0")), None);
        assert_eq!(run(packet(CANCEL_REQUEST, &[0; 8])), None);
        let e = run(packet(131_072, b"user\0u\0\0")).unwrap();
        assert!(e.contains("unsupported frontend protocol 2.0"), "{e}");
        let e = run(packet(196_608, b"user\0u\0")).unwrap();
        assert!(e.contains("invalid string"), "{e}");
        let e = run(packet(196_608, b"user\0\0")).unwrap();
        assert!(e.contains("no value"), "{e}");
        // A declared length beyond the limit is refused before its bytes
        // arrive.
        let mut huge = (1i32 << 30).to_be_bytes().to_vec();
        huge.extend_from_slice(&196_608i32.to_be_bytes());
        let e = run(huge).unwrap();
        assert!(e.contains("invalid length of startup packet"), "{e}");
    }
}
