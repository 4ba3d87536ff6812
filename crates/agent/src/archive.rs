//! The agent's MongoDB archive (before compression).
//!
//! `mongodump` is not available to the agent, so it writes its own, simple
//! format with the driver:
//!
//! ```text
//! archive    = magic frame* end
//! magic      = "DBOPMGA1"                        8 bytes; "1" is the format version
//! frame      = tag bson
//! tag        = 'H' | 'D' | 'E' | 'Z'             1 byte
//! bson       = a BSON document, as on the wire: int32 little-endian total
//!              length (including itself), elements, 0x00
//! ```
//!
//! - `H` header, opens a collection: `{db, collection, options, indexes}`
//!   where `options` is the collection's `listCollections` options and
//!   `indexes` its `listIndexes` specifications;
//! - `D` one document of the open collection, byte for byte as the server
//!   sent it (no re-encoding: every BSON type survives);
//! - `E` closes the collection: `{count}` documents written;
//! - `Z` ends the archive: `{collections, documents}`. An archive that ends
//!   without `Z`, or whose counts disagree, is truncated or corrupt and is
//!   refused.
//!
//! Documents are limited to 16 MiB by the server; frames above 48 MiB are
//! refused when reading, so a corrupt length cannot make the reader
//! allocate without bound.

use mongodb::bson::{Document, RawDocumentBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAGIC: &[u8; 8] = b"DBOPMGA1";
pub const MAX_FRAME: usize = 48 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Header,
    Document,
    End,
    Trailer,
}

impl Tag {
    fn byte(self) -> u8 {
        match self {
            Tag::Header => b'H',
            Tag::Document => b'D',
            Tag::End => b'E',
            Tag::Trailer => b'Z',
        }
    }

    fn from_byte(b: u8) -> Option<Tag> {
        Some(match b {
            b'H' => Tag::Header,
            b'D' => Tag::Document,
            b'E' => Tag::End,
            b'Z' => Tag::Trailer,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is truncated ({0})")]
    Truncated(String),
    #[error("the archive is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes frames.
pub struct Writer<W> {
    out: W,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub async fn new(mut out: W) -> std::io::Result<Writer<W>> {
        out.write_all(MAGIC).await?;
        Ok(Writer { out })
    }

    pub async fn frame(&mut self, tag: Tag, doc: &[u8]) -> std::io::Result<()> {
        self.out.write_all(&[tag.byte()]).await?;
        self.out.write_all(doc).await
    }

    pub async fn document(&mut self, tag: Tag, doc: &Document) -> std::io::Result<()> {
        let raw = RawDocumentBuf::try_from(doc).map_err(std::io::Error::other)?;
        self.frame(tag, raw.as_bytes()).await
    }

    pub async fn finish(mut self) -> std::io::Result<W> {
        self.out.flush().await?;
        self.out.shutdown().await?;
        Ok(self.out)
    }
}

/// Reads frames.
pub struct Reader<R> {
    input: R,
    started: bool,
    done: bool,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            started: false,
            done: false,
        }
    }

    /// The next frame; `None` after the trailer. EOF anywhere else is
    /// [`ArchiveError::Truncated`].
    pub async fn next(&mut self) -> Result<Option<(Tag, RawDocumentBuf)>, ArchiveError> {
        if !self.started {
            let mut magic = [0u8; 8];
            read_exact(&mut self.input, &mut magic, "in the magic").await?;
            if &magic != MAGIC {
                return Err(ArchiveError::Corrupt(
                    "not an agent MongoDB archive (bad magic)".into(),
                ));
            }
            self.started = true;
        }
        if self.done {
            // Anything after the trailer is corruption.
            let mut extra = [0u8; 1];
            return match self.input.read(&mut extra).await? {
                0 => Ok(None),
                _ => Err(ArchiveError::Corrupt("data after the trailer".into())),
            };
        }
        let mut tag = [0u8; 1];
        read_exact(&mut self.input, &mut tag, "before the trailer").await?;
        let tag = Tag::from_byte(tag[0])
            .ok_or_else(|| ArchiveError::Corrupt(format!("unknown frame tag {:#04x}", tag[0])))?;
        let mut len = [0u8; 4];
        read_exact(&mut self.input, &mut len, "in a frame length").await?;
        let n = i32::from_le_bytes(len);
        if n < 5 || n as usize > MAX_FRAME {
            return Err(ArchiveError::Corrupt(format!("frame length {n}")));
        }
        let mut buf = vec![0u8; n as usize];
        buf[..4].copy_from_slice(&len);
        read_exact(&mut self.input, &mut buf[4..], "in a document").await?;
        let doc = RawDocumentBuf::from_bytes(buf)
            .map_err(|e| ArchiveError::Corrupt(format!("invalid BSON: {e}")))?;
        if tag == Tag::Trailer {
            self.done = true;
        }
        Ok(Some((tag, doc)))
    }
}

async fn read_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    where_: &str,
) -> Result<(), ArchiveError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ArchiveError::Truncated(format!("end of data {where_}")))
        }
        Err(e) => Err(ArchiveError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{Binary, Bson, doc, spec::BinarySubtype};

    use super::*;

    async fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).await.unwrap();
        w.document(
            Tag::Header,
            &doc! {"db": "shop", "collection": "items", "options": {}, "indexes": []},
        )
        .await
        .unwrap();
        let d = doc! {
            "_id": 1, "name": "naïve ☃", "none": Bson::Null,
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 255, 1] },
        };
        w.document(Tag::Document, &d).await.unwrap();
        w.document(Tag::End, &doc! {"count": 1i64}).await.unwrap();
        w.document(Tag::Trailer, &doc! {"collections": 1i64, "documents": 1i64})
            .await
            .unwrap();
        w.finish().await.unwrap()
    }

    #[tokio::test]
    async fn round_trip() {
        let bytes = sample().await;
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(bytes[8], b'H');
        let mut r = Reader::new(&bytes[..]);
        let mut tags = Vec::new();
        while let Some((tag, doc)) = r.next().await.unwrap() {
            if tag == Tag::Document {
                let d: Document = doc.to_document().unwrap();
                assert_eq!(d.get_str("name").unwrap(), "naïve ☃");
                assert_eq!(d.get("none"), Some(&Bson::Null));
            }
            tags.push(tag);
        }
        assert_eq!(tags, [Tag::Header, Tag::Document, Tag::End, Tag::Trailer]);
    }

    #[tokio::test]
    async fn every_truncation_is_detected() {
        let bytes = sample().await;
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let result = async {
                while r.next().await?.is_some() {}
                Ok::<_, ArchiveError>(())
            }
            .await;
            assert!(
                matches!(
                    result,
                    Err(ArchiveError::Truncated(_) | ArchiveError::Corrupt(_))
                ),
                "cut at {cut} not detected"
            );
        }
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let mut bytes = sample().await;
        bytes[8] = b'X';
        let mut r = Reader::new(&bytes[..]);
        assert!(matches!(r.next().await, Err(ArchiveError::Corrupt(_))));
        let mut r = Reader::new(&b"NOTANARCHIVE"[..]);
        assert!(matches!(r.next().await, Err(ArchiveError::Corrupt(_))));
        let mut bytes = sample().await;
        bytes.push(0);
        let mut r = Reader::new(&bytes[..]);
        let result = async {
            while r.next().await?.is_some() {}
            Ok::<_, ArchiveError>(())
        }
        .await;
        assert!(matches!(result, Err(ArchiveError::Corrupt(_))));
    }
}
