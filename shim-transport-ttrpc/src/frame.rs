//! ttrpc frames: a 10-byte big-endian header (`u32` payload length, `u32`
//! stream id, `u8` type, `u8` flags) and the payload.
//!
//! The reader never trusts the length: a payload over [`MAX_PAYLOAD`] is
//! read and dropped in small pieces (so the connection stays in step), and
//! the caller answers it with `RESOURCE_EXHAUSTED`, as containerd's ttrpc
//! does.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload either side accepts (containerd's ttrpc limit).
pub const MAX_PAYLOAD: usize = 4 << 20;

/// Length of the frame header.
pub const HEADER_LEN: usize = 10;

/// A frame carrying a `Request`.
pub const TYPE_REQUEST: u8 = 1;
/// A frame carrying a `Response`.
pub const TYPE_RESPONSE: u8 = 2;

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the payload that follows.
    pub length: u32,
    /// The stream (call) the frame belongs to: odd when a client opened it.
    pub stream_id: u32,
    /// [`TYPE_REQUEST`] or [`TYPE_RESPONSE`] (other values are ignored).
    pub kind: u8,
    /// Flags (unused by unary calls).
    pub flags: u8,
}

impl Header {
    /// Decodes a header.
    pub fn decode(b: [u8; HEADER_LEN]) -> Self {
        let [l0, l1, l2, l3, s0, s1, s2, s3, kind, flags] = b;
        Self {
            length: u32::from_be_bytes([l0, l1, l2, l3]),
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]),
            kind,
            flags,
        }
    }

    /// Encodes a header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [l0, l1, l2, l3] = self.length.to_be_bytes();
        let [s0, s1, s2, s3] = self.stream_id.to_be_bytes();
        [l0, l1, l2, l3, s0, s1, s2, s3, self.kind, self.flags]
    }
}

/// One frame read from a connection.
#[derive(Debug)]
pub enum Frame {
    /// A frame within the size limit.
    Whole(Header, Vec<u8>),
    /// A frame whose payload was over [`MAX_PAYLOAD`]; it was discarded.
    TooLarge(Header),
}

/// Reads one frame; `Ok(None)` at a clean end of the stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; HEADER_LEN];
    // A clean EOF is only one that falls before the first header byte.
    let n = r.read(&mut head).await?;
    if n == 0 {
        return Ok(None);
    }
    if n < HEADER_LEN {
        r.read_exact(head.get_mut(n..).unwrap_or_default()).await?;
    }
    let header = Header::decode(head);
    let len = header.length as usize;
    if len > MAX_PAYLOAD {
        let mut left = len;
        let mut sink = [0u8; 8192];
        while left > 0 {
            let step = left.min(sink.len());
            r.read_exact(sink.get_mut(..step).unwrap_or_default()).await?;
            left -= step;
        }
        return Ok(Some(Frame::TooLarge(header)));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(Frame::Whole(header, payload)))
}

/// Writes one frame in a single write (header and payload together).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    stream_id: u32,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let length = u32::try_from(payload.len()).ok().filter(|l| *l as usize <= MAX_PAYLOAD).ok_or_else(|| {
        std::io::Error::other(format!("message of {} bytes is over the ttrpc limit of {MAX_PAYLOAD}", payload.len()))
    })?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&Header { length, stream_id, kind, flags: 0 }.encode());
    buf.extend_from_slice(payload);
    w.write_all(&buf).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_big_endian() {
        let h = Header { length: 0x0102_0304, stream_id: 7, kind: TYPE_REQUEST, flags: 0 };
        assert_eq!(h.encode(), [1, 2, 3, 4, 0, 0, 0, 7, 1, 0]);
        assert_eq!(Header::decode(h.encode()), h);
    }

    #[tokio::test]
    async fn frames_are_read_back_and_an_oversized_one_is_skipped_in_step() {
        let mut wire = Vec::new();
        write_frame(&mut wire, 1, TYPE_REQUEST, b"abc").await.unwrap_or_else(|e| panic!("{e}"));
        let big = MAX_PAYLOAD + 1;
        wire.extend_from_slice(&Header { length: big as u32, stream_id: 3, kind: TYPE_REQUEST, flags: 0 }.encode());
        wire.extend(std::iter::repeat_n(0u8, big));
        write_frame(&mut wire, 5, TYPE_REQUEST, b"").await.unwrap_or_else(|e| panic!("{e}"));
        let mut r = wire.as_slice();
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut r).await.unwrap_or_else(|e| panic!("{e}")) {
            got.push(match f {
                Frame::Whole(h, p) => (h.stream_id, Some(p)),
                Frame::TooLarge(h) => (h.stream_id, None),
            });
        }
        assert_eq!(got, vec![(1, Some(b"abc".to_vec())), (3, None), (5, Some(Vec::new()))]);
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error_not_a_clean_end() {
        let mut wire = Vec::new();
        write_frame(&mut wire, 1, TYPE_REQUEST, b"abcdef").await.unwrap_or_else(|e| panic!("{e}"));
        wire.truncate(12);
        let mut r = wire.as_slice();
        assert!(read_frame(&mut r).await.is_err());
    }

    #[tokio::test]
    async fn writing_over_the_limit_is_refused() {
        let mut wire = Vec::new();
        assert!(write_frame(&mut wire, 1, TYPE_RESPONSE, &vec![0u8; MAX_PAYLOAD + 1]).await.is_err());
        assert!(wire.is_empty());
    }
}
