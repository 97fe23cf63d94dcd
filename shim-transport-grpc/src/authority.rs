//! Accepting any `:authority` on a unix socket.
//!
//! The HTTP/2 layer under tonic (h2) refuses a request whose `:authority` is
//! not a valid URI authority, with a stream error (PROTOCOL_ERROR). Over a
//! unix socket the authority means nothing, yet grpcio's C core (Python, C++,
//! Ruby, C#), grpc-java and others send the socket path there, or its
//! percent-encoding, and fail against us. h2 has no switch for it, and a fork
//! of h2 would be a second HTTP/2 stack to keep up to date; so the server
//! connection of a unix socket goes through this small adapter, which sees
//! the client's bytes before h2 does:
//!
//! - every frame but HEADERS and CONTINUATION passes through untouched (DATA
//!   is copied, never parsed);
//! - each complete header block is HPACK-decoded, to keep a decoder in step
//!   with the client's encoder (the `httlib-hpack` crate decodes, with a
//!   table-driven Huffman decoder: `loona-hpack`, tried first, built a hash
//!   map for every Huffman string and cost about 30 µs per request, since
//!   h2's client sends `:path` Huffman-coded on every call);
//! - a block whose `:authority` h2 would accept passes through as it came,
//!   bytes unchanged, so h2's own decoder stays in step too. Our client,
//!   grpc-go and grpcurl send `localhost` and only ever take this path: the
//!   cost for them is one HPACK decode per request;
//! - a block whose `:authority` h2 would refuse is re-encoded with
//!   `:authority: localhost`, as literals that never touch h2's dynamic
//!   table. From then on every block of the connection is re-encoded that
//!   way, since h2's table no longer matches the client's.
//!
//! Anything this adapter does not understand (a broken preface, a header
//! block that does not decode, an oversized or misplaced frame) makes it
//! step aside: the bytes go to h2 unchanged from there on, and h2 reports
//! the protocol error as it would have.
//!
//! TCP connections do not go through it: there an authority is meaningful
//! and h2's checks stay.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest frame payload every HTTP/2 peer accepts (its
/// SETTINGS_MAX_FRAME_SIZE is never below this): re-encoded blocks are split
/// into frames of at most this size.
const MAX_FRAME: usize = 16_384;
/// The largest header block buffered; a bigger one makes the adapter step
/// aside (h2 refuses header lists far smaller than this).
const MAX_BLOCK: usize = 1 << 20;
/// HPACK's dynamic table size, as h2 advertises it by default.
const HPACK_TABLE: usize = 4096;
/// What a refused authority becomes.
const LOCALHOST: &[u8] = b"localhost";

/// Whether h2 accepts `value` as an `:authority`.
fn acceptable(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

enum Stage {
    /// Reading the 24-byte client preface; `usize` bytes matched so far.
    Preface(usize),
    /// Reading a frame header into `Rewriter::header`.
    Header,
    /// Passing `usize` more payload bytes of a frame through.
    Through(usize),
    /// Collecting the payload of a HEADERS or CONTINUATION frame.
    HeaderPayload,
    /// Stepped aside: everything passes through.
    Aside,
}

/// The start of a header block being collected.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// The adapter's state for one connection, over bytes: what the client
/// sent goes in, what h2 should read comes out. See the module docs.
pub struct Rewriter {
    stage: Stage,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// The payload of the HEADERS/CONTINUATION frame being read.
    payload: Vec<u8>,
    payload_len: usize,
    /// The frames of the open header block, as received.
    raw: Vec<u8>,
    /// Its header block fragments, concatenated.
    block: Vec<u8>,
    open: Option<OpenBlock>,
    decoder: httlib_hpack::Decoder<'static>,
    encoder: httlib_hpack::Encoder<'static>,
    /// Set once a block was re-encoded: every later one is too.
    rewriting: bool,
    /// Decoded fields of the current block (name, value, flags).
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
    /// Authorities replaced so far.
    replaced: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// A rewriter at the start of a connection.
    pub fn new() -> Self {
        Self {
            stage: Stage::Preface(0),
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload: Vec::new(),
            payload_len: 0,
            raw: Vec::new(),
            block: Vec::new(),
            open: None,
            decoder: httlib_hpack::Decoder::with_dynamic_size(HPACK_TABLE as u32),
            // Its own dynamic table is never used: every field is written as
            // a literal without indexing.
            encoder: httlib_hpack::Encoder::default(),
            rewriting: false,
            fields: Vec::new(),
            replaced: 0,
        }
    }

    /// How many `:authority` values were replaced on this connection.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Whether the adapter has stepped aside (passes everything through).
    pub fn is_aside(&self) -> bool {
        matches!(self.stage, Stage::Aside)
    }

    /// Takes the client's bytes `input` and appends what h2 should read to
    /// `out`. Bytes of an incomplete frame header or header frame are kept
    /// until the rest arrives.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.stage {
                Stage::Aside => {
                    out.extend_from_slice(input);
                    return;
                }
                Stage::Preface(seen) => {
                    let want = PREFACE.get(seen..).unwrap_or_default();
                    let n = want.len().min(input.len());
                    let (now, rest) = input.split_at(n);
                    out.extend_from_slice(now);
                    input = rest;
                    self.stage = if want.get(..n) != Some(now) {
                        Stage::Aside
                    } else if seen + n == PREFACE.len() {
                        Stage::Header
                    } else {
                        Stage::Preface(seen + n)
                    };
                }
                Stage::Through(left) => {
                    let n = left.min(input.len());
                    let (now, rest) = input.split_at(n);
                    out.extend_from_slice(now);
                    input = rest;
                    self.stage = if left == n { Stage::Header } else { Stage::Through(left - n) };
                }
                Stage::Header => {
                    let n = (FRAME_HEADER - self.header_len).min(input.len());
                    let (now, rest) = input.split_at(n);
                    if let Some(slot) = self.header.get_mut(self.header_len..self.header_len + n) {
                        slot.copy_from_slice(now);
                    }
                    self.header_len += n;
                    input = rest;
                    if self.header_len == FRAME_HEADER {
                        self.header_len = 0;
                        self.frame_header(out);
                    }
                }
                Stage::HeaderPayload => {
                    let n = (self.payload_len - self.payload.len()).min(input.len());
                    let (now, rest) = input.split_at(n);
                    self.payload.extend_from_slice(now);
                    input = rest;
                    if self.payload.len() == self.payload_len {
                        self.header_frame(out);
                    }
                }
            }
        }
    }

    /// Steps aside, first passing on what was held back.
    fn aside(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.raw);
        self.block.clear();
        self.open = None;
        self.stage = Stage::Aside;
    }

    fn frame_header(&mut self, out: &mut Vec<u8>) {
        let [l0, l1, l2, ty, ..] = self.header;
        let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        let is_header = ty == TYPE_HEADERS || ty == TYPE_CONTINUATION;
        if !is_header {
            if self.open.is_some() {
                // A block must continue with CONTINUATION frames only: h2
                // will call this a protocol error.
                self.aside(out);
                out.extend_from_slice(&self.header);
                return;
            }
            out.extend_from_slice(&self.header);
            self.stage = if len == 0 { Stage::Header } else { Stage::Through(len) };
            return;
        }
        if self.raw.len() + FRAME_HEADER + len > MAX_BLOCK {
            self.aside(out);
            out.extend_from_slice(&self.header);
            return;
        }
        self.payload.clear();
        self.payload_len = len;
        self.stage = Stage::HeaderPayload;
        if len == 0 {
            self.header_frame(out);
        }
    }

    /// A whole HEADERS or CONTINUATION frame is in `header` and `payload`.
    fn header_frame(&mut self, out: &mut Vec<u8>) {
        self.stage = Stage::Header;
        let [_, _, _, ty, flags, s0, s1, s2, s3] = self.header;
        let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
        self.raw.extend_from_slice(&self.header);
        self.raw.extend_from_slice(&self.payload);
        if ty == TYPE_HEADERS {
            if self.open.is_some() {
                return self.aside(out);
            }
            let Some((priority, fragment)) = headers_fragment(flags, &self.payload) else {
                return self.aside(out);
            };
            self.block.extend_from_slice(fragment);
            self.open = Some(OpenBlock { stream, end_stream: flags & FLAG_END_STREAM != 0, priority });
        } else {
            match &self.open {
                Some(open) if open.stream == stream => self.block.extend_from_slice(&self.payload),
                _ => return self.aside(out),
            }
        }
        if flags & FLAG_END_HEADERS != 0 {
            self.end_of_block(out);
        }
    }

    fn end_of_block(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else { return self.aside(out) };
        self.fields.clear();
        // The decoder consumes what it decodes; the buffer is kept for reuse.
        let mut block = std::mem::take(&mut self.block);
        // The crate indexes past the end of some malformed blocks (found by
        // this module's tests): a panic there is caught and counts as a
        // block that does not decode. The decoder is never used again then.
        let (decoder, fields) = (&mut self.decoder, &mut self.fields);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(&mut block, fields)));
        block.clear();
        self.block = block;
        if !matches!(decoded, Ok(Ok(_))) {
            // h2 will fail to decode it too, and say so.
            return self.aside(out);
        }
        let refused = self.fields.iter().any(|(name, value, _)| name == b":authority" && !acceptable(value));
        if !refused && !self.rewriting {
            out.append(&mut self.raw);
            return;
        }
        self.raw.clear();
        self.rewriting = true;
        if refused {
            self.replaced += 1;
        }
        let mut encoded = Vec::new();
        let mut failed = false;
        for (name, mut value, _) in self.fields.drain(..) {
            if name == b":authority" && !acceptable(&value) {
                value = LOCALHOST.to_vec();
            }
            // Flags 0: a literal without indexing, name and value as they
            // are (RFC 7541, 6.2.2): it neither uses nor changes h2's
            // dynamic table.
            failed |= self.encoder.encode((name, value, 0), &mut encoded).is_err();
        }
        if failed {
            return self.aside(out);
        }
        write_block(&open, &encoded, out);
    }
}

/// The header block fragment of a HEADERS frame's payload, without its
/// padding and priority fields; `None` if those do not fit.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        let (&len, after) = rest.split_first()?;
        pad = usize::from(len);
        rest = after;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (p, after) = rest.split_at_checked(5)?;
        priority = <[u8; 5]>::try_from(p).ok();
        rest = after;
    }
    let keep = rest.len().checked_sub(pad)?;
    Some((priority, rest.get(..keep)?))
}

/// Appends a frame header.
fn frame_header(len: usize, ty: u8, flags: u8, stream: u32, out: &mut Vec<u8>) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], ty, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Writes a re-encoded header block as a HEADERS frame and as many
/// CONTINUATION frames as it needs.
fn write_block(open: &OpenBlock, block: &[u8], out: &mut Vec<u8>) {
    let priority_len = if open.priority.is_some() { 5 } else { 0 };
    let first_len = block.len().min(MAX_FRAME - priority_len);
    let (first, mut rest) = block.split_at(first_len);
    let mut flags = if open.end_stream { FLAG_END_STREAM } else { 0 };
    if open.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    frame_header(first.len() + priority_len, TYPE_HEADERS, flags, open.stream, out);
    if let Some(p) = open.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (now, after) = rest.split_at(rest.len().min(MAX_FRAME));
        let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
        frame_header(now.len(), TYPE_CONTINUATION, flags, open.stream, out);
        out.extend_from_slice(now);
        rest = after;
    }
}

/// A server connection whose incoming bytes go through a [`Rewriter`];
/// writes pass straight to the inner stream.
pub struct FixAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes not yet read by h2, from `taken` on.
    ready: Vec<u8>,
    taken: usize,
    scratch: Box<[u8]>,
}

impl<S> FixAuthority<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self { inner, rewriter: Rewriter::new(), ready: Vec::new(), taken: 0, scratch: vec![0; 8192].into() }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if me.taken < me.ready.len() {
                let ready = me.ready.get(me.taken..).unwrap_or_default();
                let n = ready.len().min(buf.remaining());
                buf.put_slice(ready.get(..n).unwrap_or_default());
                me.taken += n;
                if me.taken == me.ready.len() {
                    me.ready.clear();
                    me.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.rewriter.is_aside() {
                // Nothing is held back any more: read straight into h2's buffer.
                return Pin::new(&mut me.inner).poll_read(cx, buf);
            }
            let mut scratch = ReadBuf::new(&mut me.scratch);
            match Pin::new(&mut me.inner).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(())) => {
                    let got = scratch.filled();
                    if got.is_empty() {
                        // End of stream: what is held back is an incomplete
                        // frame, which h2 could not use either.
                        return Poll::Ready(Ok(()));
                    }
                    me.rewriter.feed(got, &mut me.ready);
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for FixAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's HPACK encoder: Huffman-coded values, fields added to the
    /// dynamic table and found there again, as real clients do.
    struct Client {
        encoder: httlib_hpack::Encoder<'static>,
    }

    fn encode(encoder: &mut httlib_hpack::Encoder<'static>, headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        let flags = httlib_hpack::Encoder::HUFFMAN_VALUE
            | httlib_hpack::Encoder::WITH_INDEXING
            | httlib_hpack::Encoder::BEST_FORMAT;
        for (name, value) in headers {
            encoder.encode((name.to_vec(), value.to_vec(), flags), &mut block).unwrap();
        }
        block
    }

    impl Client {
        fn new() -> Self {
            Self { encoder: httlib_hpack::Encoder::default() }
        }

        fn request(&mut self, stream: u32, authority: &[u8], flags: u8, out: &mut Vec<u8>) {
            let headers: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/containerd.shim.v1.Shim/State"),
                (b":authority", authority),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"user-agent", b"grpc-python/1.85.3 grpc-c/99.0.0 (linux; chttp2)"),
            ];
            let block = encode(&mut self.encoder, &headers);
            frame_header(block.len(), TYPE_HEADERS, flags | FLAG_END_HEADERS, stream, out);
            out.extend_from_slice(&block);
            // A DATA frame that must pass untouched.
            frame_header(5, 0x0, FLAG_END_STREAM, stream, out);
            out.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
    }

    /// One frame as h2 sees it: type, stream, decoded headers, payload.
    type Seen = (u8, u32, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>);

    /// What h2 would see: the frames after the preface, header blocks
    /// decoded by a decoder of its own.
    fn server_view(bytes: &[u8]) -> Vec<Seen> {
        assert_eq!(bytes.get(..24), Some(&PREFACE[..]));
        let mut rest = bytes.get(24..).unwrap_or_default();
        let mut decoder = httlib_hpack::Decoder::with_dynamic_size(4096);
        let mut frames = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let h = rest.get(..9).unwrap_or_else(|| panic!("truncated frame header"));
            let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let (ty, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
            let payload = rest.get(9..9 + len).unwrap_or_else(|| panic!("truncated frame"));
            rest = rest.get(9 + len..).unwrap_or_default();
            if ty == TYPE_HEADERS || ty == TYPE_CONTINUATION {
                let (_, fragment) =
                    if ty == TYPE_HEADERS { headers_fragment(flags, payload).unwrap() } else { (None, payload) };
                block.extend_from_slice(fragment);
                if flags & FLAG_END_HEADERS != 0 {
                    let mut fields = Vec::new();
                    decoder.decode(&mut block, &mut fields).unwrap();
                    block.clear();
                    let headers = fields.into_iter().map(|(n, v, _)| (n, v)).collect();
                    frames.push((TYPE_HEADERS, stream, headers, Vec::new()));
                }
            } else {
                frames.push((ty, stream, Vec::new(), payload.to_vec()));
            }
        }
        frames
    }

    fn authorities(view: &[Seen]) -> Vec<String> {
        view.iter()
            .flat_map(|(_, _, headers, _)| headers.iter())
            .filter(|(n, _)| n == b":authority")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Feeds `input` in pieces of `chunk` bytes.
    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, Rewriter) {
        let mut rewriter = Rewriter::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            rewriter.feed(piece, &mut out);
        }
        (out, rewriter)
    }

    #[test]
    fn good_authorities_pass_through_byte_for_byte() {
        let mut input = PREFACE.to_vec();
        let mut client = Client::new();
        for stream in [1, 3, 5] {
            client.request(stream, b"localhost", 0, &mut input);
        }
        for chunk in [1, 7, 4096] {
            let (out, rewriter) = run(&input, chunk);
            assert_eq!(out, input, "chunk {chunk}");
            assert_eq!(rewriter.replaced(), 0);
        }
    }

    #[test]
    fn socket_paths_become_localhost_and_later_blocks_stay_decodable() {
        let mut input = PREFACE.to_vec();
        let mut client = Client::new();
        client.request(1, b"localhost", 0, &mut input);
        client.request(3, b"/run/shim/web.sock", 0, &mut input);
        client.request(5, b"%2Frun%2Fshim%2Fweb.sock", 0, &mut input);
        client.request(7, b"unix:/run/shim/web.sock", 0, &mut input);
        client.request(9, b"localhost", 0, &mut input);
        for chunk in [1, 3, 100, 1 << 16] {
            let (out, rewriter) = run(&input, chunk);
            let view = server_view(&out);
            // h2 refuses the path, its percent-encoding and a unix: URI alike.
            assert_eq!(authorities(&view), ["localhost"; 5], "chunk {chunk}");
            assert_eq!(rewriter.replaced(), 3);
            // Every other header survived, and DATA is untouched.
            for (ty, _, headers, payload) in &view {
                if *ty == TYPE_HEADERS {
                    assert_eq!(headers.len(), 7);
                    assert!(headers.iter().any(|(n, v)| n == b":path" && v == b"/containerd.shim.v1.Shim/State"));
                } else {
                    assert_eq!(payload, &vec![0u8; 5]);
                }
            }
        }
    }

    #[test]
    fn padding_priority_and_continuation_are_handled() {
        let mut encoder = httlib_hpack::Encoder::default();
        let big = vec![b'x'; 40_000];
        let headers: Vec<(&[u8], &[u8])> = vec![(b":method", b"POST"), (b":authority", b"/a/b.sock"), (b"x-big", &big)];
        let block = encode(&mut encoder, &headers);
        let mut input = PREFACE.to_vec();
        // HEADERS with padding and priority, then two CONTINUATIONs.
        let (first, rest) = block.split_at(100);
        let (second, third) = rest.split_at(rest.len() / 2);
        let payload_len = 1 + 5 + first.len() + 3;
        frame_header(payload_len, TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM, 1, &mut input);
        input.push(3);
        input.extend_from_slice(&[0, 0, 0, 0, 16]);
        input.extend_from_slice(first);
        input.extend_from_slice(&[0, 0, 0]);
        frame_header(second.len(), TYPE_CONTINUATION, 0, 1, &mut input);
        input.extend_from_slice(second);
        frame_header(third.len(), TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &mut input);
        input.extend_from_slice(third);
        let (out, rewriter) = run(&input, 1000);
        assert_eq!(rewriter.replaced(), 1);
        let view = server_view(&out);
        assert_eq!(authorities(&view), ["localhost"]);
        let headers = &view[0].2;
        assert!(headers.iter().any(|(n, v)| n == b"x-big" && v == &big));
        // The re-encoded block was split into frames of at most 16 KiB.
        assert!(out.len() > 40_000);
    }

    #[test]
    fn what_it_does_not_understand_goes_to_h2_unchanged() {
        // Not a preface at all.
        let garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(run(&garbage, 5).0, garbage);
        // A header block that does not decode: passed on as it came.
        let mut input = PREFACE.to_vec();
        frame_header(3, TYPE_HEADERS, FLAG_END_HEADERS, 1, &mut input);
        input.extend_from_slice(&[0xff, 0xff, 0xff]);
        input.extend_from_slice(b"trailing bytes");
        let (out, rewriter) = run(&input, 2);
        assert_eq!(out, input);
        assert!(rewriter.is_aside());
        // A CONTINUATION of nothing.
        let mut input = PREFACE.to_vec();
        frame_header(2, TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &mut input);
        input.extend_from_slice(&[0x82, 0x84]);
        assert_eq!(run(&input, 4).0, input);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target goes further.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut input = PREFACE.to_vec();
            let n = (state % 300) as usize;
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.push((state & 0xff) as u8);
            }
            let mut rewriter = Rewriter::new();
            let mut out = Vec::new();
            rewriter.feed(&input, &mut out);
        }
    }
}
