//! A file's bytes to text: UTF-8 (with or without a BOM) or GBK, as Excel
//! in China saves them, read a block at a time.
//!
//! The encoding is settled before the first row is read: a first pass
//! checks that the whole file is valid UTF-8 (or, failing that, GBK), so an
//! undecodable file is refused whole, as before, and the second pass that
//! feeds the rows never meets a byte it cannot decode. Memory stays a few
//! blocks whatever the file's size.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How the file's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8 if the bytes are valid UTF-8, GBK otherwise.
    Auto,
    Utf8,
    Gbk,
}

/// Bytes read at a time.
const BLOCK: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How far the reading of a file has got, for a progress bar: shared with
/// the reader, readable from anywhere.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    read: Arc<AtomicU64>,
    total: u64,
}

impl Progress {
    /// Bytes of the file read so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The file's size in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// A file's text as UTF-8 bytes without the BOM, read as needed.
pub struct Input {
    pub(super) text: Box<dyn BufRead>,
    pub(super) progress: Progress,
}

/// Opens a file for reading as text; refuses one that is neither valid
/// UTF-8 nor GBK (as `encoding` allows) before anything is read from it.
pub fn open(path: &Path, encoding: Encoding) -> Result<Input, String> {
    let fail = |e: io::Error| format!("cannot read {}: {e}", path.display());
    let file = File::open(path).map_err(fail)?;
    let total = file.metadata().map_err(fail)?.len();
    input(file, total, encoding).map_err(|e| match e {
        Error::Io(e) => fail(e),
        Error::Encoding(why) => format!("{}: {why}", path.display()),
    })
}

/// The same for bytes in memory (tests, and text already read).
pub fn from_bytes(bytes: Vec<u8>, encoding: Encoding) -> Result<Input, String> {
    let total = bytes.len() as u64;
    input(io::Cursor::new(bytes), total, encoding).map_err(|e| match e {
        Error::Io(e) => e.to_string(),
        Error::Encoding(why) => why,
    })
}

enum Error {
    Io(io::Error),
    Encoding(String),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

fn input<R: Read + Seek + 'static>(
    mut source: R,
    total: u64,
    encoding: Encoding,
) -> Result<Input, Error> {
    let mut start = [0u8; 3];
    let n = read_full(&mut source, &mut start)?;
    let skip = if start[..n] == *BOM { 3 } else { 0 };
    source.seek(SeekFrom::Start(skip))?;
    let gbk = match encoding {
        Encoding::Gbk => true,
        Encoding::Utf8 => {
            if let Some(at) = invalid_utf8(&mut source)? {
                return Err(Error::Encoding(format!(
                    "not valid UTF-8 at byte {}: try --encoding gbk",
                    at + skip
                )));
            }
            false
        }
        Encoding::Auto => invalid_utf8(&mut source)?.is_some(),
    };
    if gbk && !valid_gbk(&mut source)? {
        return Err(Error::Encoding(
            "the file is neither UTF-8 nor GBK: save it from Excel as \"CSV UTF-8\"".to_string(),
        ));
    }
    source.seek(SeekFrom::Start(skip))?;
    let progress = Progress {
        read: Arc::new(AtomicU64::new(skip)),
        total,
    };
    let counted = Counted {
        inner: source,
        read: progress.read.clone(),
    };
    let text: Box<dyn BufRead> = if gbk {
        Box::new(Gbk::new(counted))
    } else {
        Box::new(BufReader::with_capacity(BLOCK, counted))
    };
    Ok(Input { text, progress })
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_full(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match source.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The offset (from the current position) of the first byte that is not
/// UTF-8, if any; reads to the end.
fn invalid_utf8(source: &mut impl Read) -> io::Result<Option<u64>> {
    let mut block = vec![0u8; BLOCK + 4];
    // Bytes of a character cut by the previous block, moved to the front.
    let (mut carried, mut offset) = (0usize, 0u64);
    loop {
        let n = source.read(&mut block[carried..])?;
        let end = carried + n;
        match std::str::from_utf8(&block[..end]) {
            Ok(_) => carried = 0,
            Err(e) if e.error_len().is_none() && n > 0 => {
                let valid = e.valid_up_to();
                block.copy_within(valid..end, 0);
                offset += valid as u64;
                carried = end - valid;
                continue;
            }
            Err(e) => return Ok(Some(offset + e.valid_up_to() as u64)),
        }
        if n == 0 {
            return Ok(None);
        }
        offset += end as u64;
    }
}

/// Whether the rest of `source` decodes as GBK without a replacement.
fn valid_gbk(source: &mut impl Read) -> io::Result<bool> {
    let mut decoder = encoding_rs::GBK.new_decoder_without_bom_handling();
    let mut block = vec![0u8; BLOCK];
    let mut out = vec![0u8; BLOCK * 2];
    loop {
        let n = source.read(&mut block)?;
        let mut input = &block[..n];
        loop {
            let (result, read, _) =
                decoder.decode_to_utf8_without_replacement(input, &mut out, n == 0);
            input = &input[read..];
            match result {
                encoding_rs::DecoderResult::Malformed(..) => return Ok(false),
                encoding_rs::DecoderResult::OutputFull => continue,
                encoding_rs::DecoderResult::InputEmpty => break,
            }
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// A reader that counts the bytes it hands over.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// GBK bytes in, UTF-8 text out, a block at a time.
struct Gbk<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    raw: Vec<u8>,
    /// Undecoded bytes: `raw[raw_at..raw_end]`.
    raw_at: usize,
    raw_end: usize,
    eof: bool,
    /// The decoder has seen the end (it must not be called again).
    done: bool,
    text: Vec<u8>,
    /// Text not yet consumed: `text[text_at..text_end]`.
    text_at: usize,
    text_end: usize,
}

impl<R: Read> Gbk<R> {
    fn new(inner: R) -> Self {
        Gbk {
            inner,
            decoder: encoding_rs::GBK.new_decoder_without_bom_handling(),
            raw: vec![0; BLOCK],
            raw_at: 0,
            raw_end: 0,
            eof: false,
            done: false,
            text: vec![0; BLOCK * 2],
            text_at: 0,
            text_end: 0,
        }
    }
}

impl<R: Read> Read for Gbk<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Gbk<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.text_at == self.text_end && !self.done {
            if self.raw_at == self.raw_end && !self.eof {
                self.raw_end = self.inner.read(&mut self.raw)?;
                self.raw_at = 0;
                self.eof = self.raw_end == 0;
            }
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.raw[self.raw_at..self.raw_end],
                &mut self.text,
                self.eof,
            );
            self.raw_at += read;
            (self.text_at, self.text_end) = (0, written);
            if let encoding_rs::DecoderResult::Malformed(..) = result {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the file is neither UTF-8 nor GBK: save it from Excel as \"CSV UTF-8\"",
                ));
            }
            self.done = self.eof && result == encoding_rs::DecoderResult::InputEmpty;
        }
        Ok(&self.text[self.text_at..self.text_end])
    }

    fn consume(&mut self, amount: usize) {
        self.text_at = (self.text_at + amount).min(self.text_end);
    }
}
