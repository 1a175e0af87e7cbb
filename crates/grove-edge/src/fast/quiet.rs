//! A keep-alive connection waiting for its next request holds no read buffer, as nginx's
//! does not: its read is tried once with the buffer, and when nothing is there the buffer
//! is given back and the connection waits for its socket to be readable ([`Readable`]),
//! taking a buffer again only once bytes are there. With thousands of idle connections this
//! is most of what each costs (the buffer is 8 KiB; the rest of an idle HTTP/1.1 connection
//! is its task and socket registration, about 1 KiB).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// A client connection that can say when its socket has bytes to read, without reading.
pub(crate) trait Readable {
    /// Ready once the socket is readable (or failed); may be ready with nothing to read,
    /// which the next read finds out.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Readable for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

/// rustls hands out what it decrypted before it reads the socket again, so a TLS connection
/// whose read found nothing is waiting on its TCP socket alone.
impl Readable for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().0.poll_read_ready(cx)
    }
}

/// What a read of an idle connection found.
pub(crate) enum Quiet {
    /// This many bytes were read into the buffer (0: the client closed).
    Read(usize),
    /// Nothing: the buffer was released; wait with [`readable`] and read again.
    Released,
}

/// Reads what is there into `buf` (which gets `room` bytes of room) without waiting; when
/// nothing is, gives `buf`'s memory back. An error is the connection's end, as a close.
pub(crate) async fn read_or_release<I>(io: &mut I, buf: &mut BytesMut, room: usize) -> Quiet
where
    I: AsyncRead + Unpin,
{
    buf.reserve(room);
    let tried = std::future::poll_fn(|cx| Poll::Ready(pin!(io.read_buf(&mut *buf)).poll(cx)));
    match tried.await {
        Poll::Ready(Ok(n)) => Quiet::Read(n),
        Poll::Ready(Err(_)) => Quiet::Read(0),
        Poll::Pending => {
            *buf = BytesMut::new();
            Quiet::Released
        }
    }
}

/// Waits until `io`'s socket is readable.
pub(crate) async fn readable<I: Readable>(io: &I) -> io::Result<()> {
    std::future::poll_fn(|cx| io.poll_readable(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_quiet_connection_holds_no_buffer_until_bytes_come() {
        let (mut client, mut server) = pair().await;
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_or_release(&mut server, &mut buf, 8192).await,
            Quiet::Released
        ));
        assert_eq!(buf.capacity(), 0, "the buffer is given back");
        // Not readable while nothing comes.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), readable(&server));
        assert!(waited.await.is_err());
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), readable(&server))
            .await
            .expect("readable once bytes came")
            .unwrap();
        match read_or_release(&mut server, &mut buf, 8192).await {
            Quiet::Read(n) => assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n"),
            Quiet::Released => panic!("the bytes were there"),
        }
        // A client that closed is a read of nothing.
        buf.clear();
        drop(client);
        tokio::time::timeout(std::time::Duration::from_secs(5), readable(&server))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            read_or_release(&mut server, &mut buf, 8192).await,
            Quiet::Read(0)
        ));
    }
}
