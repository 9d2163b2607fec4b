//! Readers that check what they read: a commit's parts hashed as they are
//! written, and read back only if their length and checksum match.

use super::*;

/// Counts and checksums what passes through.
pub(super) struct HashingReader<R> {
    pub(super) inner: R,
    pub(super) hasher: crc32fast::Hasher,
    pub(super) len: u64,
}

impl<R> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            self.hasher.update(new);
            self.len += new.len() as u64;
        }
        polled
    }
}

/// Fails at the end of the data if it does not match the manifest.
pub(super) struct VerifyingReader {
    pub(super) inner: HashingReader<Reader>,
    pub(super) expected: PartInfo,
}

impl AsyncRead for VerifyingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let this = &*self;
        if let Poll::Ready(Ok(())) = polled {
            let at_end = buf.filled().len() == before && buf.remaining() > 0;
            let too_long = this.inner.len > this.expected.len;
            if too_long || at_end {
                let checksum = this.inner.hasher.clone().finalize();
                if this.inner.len != this.expected.len || checksum != this.expected.crc32 {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "part `{}` does not match its manifest: {} bytes with CRC-32 {checksum:08x}, expected {} bytes with {:08x}",
                            this.expected.name,
                            this.inner.len,
                            this.expected.len,
                            this.expected.crc32
                        ),
                    )));
                }
            }
        }
        polled
    }
}
