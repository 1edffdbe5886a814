//! Layer decompression: the format is sniffed from the stream's magic bytes, never trusted from
//! the media type (registries and archives mislabel layers), so gzip, zstd and plain tars all
//! unpack whatever the manifest says.

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How a layer stream is compressed, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The uncompressed tar stream of a layer blob.
pub fn decompressed<'r>(reader: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
    let mut buffered = BufReader::with_capacity(128 * 1024, reader);
    Ok(match Compression::sniff(buffered.fill_buf()?) {
        // Multi-member: `pigz` and some builders concatenate gzip members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ZstdFrames::new(buffered)),
        Compression::None => Box::new(buffered),
    })
}

/// Every frame of a zstd stream, one after another: writers may split a layer into several
/// frames, and skippable frames (metadata such as seekable-zstd tables) carry no content. The
/// decoder refuses windows over 100 MiB, which bounds its memory whatever the layer declares.
pub struct ZstdFrames<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    pub fn new(source: R) -> Self {
        ZstdFrames {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Decodes until `want` bytes can be collected or the frame ends.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.decoder.can_collect() < want && !self.decoder.is_finished() {
            let missing = want - self.decoder.can_collect();
            self.decoder
                .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(missing))
                .map_err(zstd_error)?;
        }
        Ok(())
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped < u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd stream ends inside a skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(zstd_error(e)),
            }
        }
    }
}

fn zstd_error(e: FrameDecoderError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                self.fill(buf.len())?;
                let n = self.decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if !self.next_frame()? {
                return Ok(0);
            }
            self.in_frame = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompressed(r)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_format_reads_back_to_the_same_bytes() {
        let data = sample();
        assert_eq!(read_all(&gzip(&data)[..]).unwrap(), data);
        assert_eq!(read_all(&zstd(&data)[..]).unwrap(), data);
        assert_eq!(read_all(&data[..]).unwrap(), data);
        assert_eq!(read_all(&b""[..]).unwrap(), b"");
    }

    #[test]
    fn concatenated_frames_and_members_are_all_read() {
        let (a, b) = (b"first frame ".repeat(1000), b"second frame".repeat(1000));
        let want = [a.clone(), b.clone()].concat();
        assert_eq!(read_all(&[zstd(&a), zstd(&b)].concat()[..]).unwrap(), want);
        assert_eq!(read_all(&[gzip(&a), gzip(&b)].concat()[..]).unwrap(), want);
        // A skippable frame (magic 0x184D2A50, little endian) between them carries no content.
        let skippable = [&[0x50, 0x2a, 0x4d, 0x18], &4u32.to_le_bytes()[..], b"meta"].concat();
        let stream = [zstd(&a), skippable, zstd(&b)].concat();
        assert_eq!(read_all(&stream[..]).unwrap(), want);
    }

    #[test]
    fn a_truncated_zstd_stream_is_an_error_not_a_short_layer() {
        let z = zstd(&sample());
        let err = read_all(&z[..z.len() / 2]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
        // Frame header: magic, descriptor 0 (no checksum, no content size, window given), window
        // descriptor 0xF8: exponent 31 → 2^41 bytes.
        let frame = [&ZSTD_MAGIC[..], &[0x00, 0xf8], &[0u8; 16]].concat();
        let err = read_all(&frame[..]).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }
}
