//! Where a page is written: one buffer, or a gzip stream compressed while it is written.

use std::io::Write as _;

use flate2::{Compression, write::GzEncoder};

/// Where an exposition is written: one contiguous buffer, or a gzip stream that takes the page
/// in chunks of about [`CHUNK`] bytes as it is written, while they are still in the cache (the
/// uncompressed page never exists whole). The encoders append to [`Output::buf`] and call
/// [`Output::boundary`] between series.
pub struct Output {
    buf: Vec<u8>,
    gzip: Option<Box<GzEncoder<Vec<u8>>>>,
}

/// The size of the chunks an [`Output::gzip`] compresses at a time.
pub const CHUNK: usize = 128 * 1024;

impl Output {
    /// Everything in one buffer, after what `out` holds already.
    pub fn whole(out: Vec<u8>) -> Self {
        Self {
            buf: out,
            gzip: None,
        }
    }

    /// A gzip stream at the fastest level: metrics text is repetitive enough that it still
    /// shrinks about tenfold.
    pub fn gzip() -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK + CHUNK / 4),
            gzip: Some(Box::new(GzEncoder::new(Vec::new(), Compression::fast()))),
        }
    }

    /// The buffer to append to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// An estimate of the bytes still to come: a whole buffer makes room for them at once (one
    /// allocation instead of a series of copies); a gzip stream needs no room.
    pub fn reserve(&mut self, additional: usize) {
        if self.gzip.is_none() {
            self.buf.reserve(additional);
        }
    }

    /// A place where the output may be cut: a gzip stream compresses the buffer once it holds
    /// a chunk.
    pub fn boundary(&mut self) {
        if self.buf.len() >= CHUNK {
            if let Some(encoder) = &mut self.gzip {
                // Writing into a Vec cannot fail.
                let _ = encoder.write_all(&self.buf);
                self.buf.clear();
            }
        }
    }

    /// Appends bytes that may be longer than a chunk.
    pub fn extend(&mut self, bytes: &[u8]) {
        match &mut self.gzip {
            Some(encoder) if bytes.len() >= CHUNK => {
                let _ = encoder
                    .write_all(&self.buf)
                    .and_then(|()| encoder.write_all(bytes));
                self.buf.clear();
            }
            _ => {
                self.buf.extend_from_slice(bytes);
                self.boundary();
            }
        }
    }

    /// Everything written: the buffer, or the finished gzip stream.
    pub fn into_vec(self) -> Vec<u8> {
        match self.gzip {
            None => self.buf,
            Some(mut encoder) => encoder
                .write_all(&self.buf)
                .and_then(|()| encoder.try_finish())
                .map(|()| std::mem::take(encoder.get_mut()))
                .unwrap_or_default(),
        }
    }
}
