//! Streaming between a dump and the bucket, in bounded memory.
//!
//! Upload: dump bytes → zstd → SHA-256 and byte count → S3 multipart upload
//! in parts of [`PART_SIZE`], at most [`PARTS_IN_FLIGHT`] parts uploading at
//! once (so about 3 × 8 MiB of buffers, whatever the dump's size). Nothing
//! touches the local disk. The upload is completed only after the producer
//! of the dump reported success; any failure aborts it, so no object appears.
//!
//! Download: one pass to hash (nothing applied), a second to restore, the
//! second pinned to the first's ETag (`If-Match`) and hashed again.
//!
//! Compression is zstd, level 1 by default, in the task that reads, hashes
//! and uploads. Measured with the agent benchmark on two cores (500 MB of
//! SQL): level 3 took half again as long as level 1 for no smaller object;
//! a zstd worker thread made the backup 50% slower (lock traffic and
//! context switches beside pg_dumpall and the server); zstd's fast levels
//! (-3) saved no time and nearly doubled the object. Its frames carry a
//! content checksum, and `zstd -d` reads an object by hand.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_compression::Level;
use async_compression::tokio::bufread::{ZstdDecoder, ZstdEncoder};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStoreExt, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio_util::io::StreamReader;

use super::store::{Store, is_missing_object, s3_error};
use super::{AgentError, Result};

/// Size of one multipart part (S3 needs ≥ 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploading concurrently.
pub const PARTS_IN_FLIGHT: usize = 2;
const READ_CHUNK: usize = 256 << 10;

/// How the dump is compressed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compression {
    /// zstd level (negative: zstd's fast levels).
    pub level: i32,
    /// zstd worker threads (0: in the uploading task).
    pub workers: u32,
}

/// Something that sees every chunk a [`Tap`] passes on, in order.
pub trait Watch {
    fn watch(&mut self, bytes: &[u8]);
}

/// A reader that shows every chunk it passes on to its watcher: by default
/// [`Seen`]: a count and optionally a hash.
pub struct Tap<R, W = Seen> {
    inner: R,
    watcher: W,
}

impl<R, W> Tap<R, W> {
    pub fn with(inner: R, watcher: W) -> Tap<R, W> {
        Tap { inner, watcher }
    }
}

/// The bytes that passed, and their SHA-256 when asked for.
pub struct Seen {
    hasher: Option<Sha256>,
    count: u64,
}

impl Watch for Seen {
    fn watch(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        self.count += bytes.len() as u64;
    }
}

impl<R> Tap<R> {
    /// Counts and hashes.
    pub fn new(inner: R) -> Tap<R> {
        let hasher = Some(Sha256::new());
        Tap::with(inner, Seen { hasher, count: 0 })
    }

    /// Only counts (the dump before compression: its hash is not kept).
    pub fn counting(inner: R) -> Tap<R> {
        Tap::with(
            inner,
            Seen {
                hasher: None,
                count: 0,
            },
        )
    }

    pub fn count(&self) -> u64 {
        self.watcher.count
    }

    pub fn sha256_hex(&self) -> String {
        let hasher = self.watcher.hasher.clone().unwrap_or_default();
        hex::encode(hasher.finalize())
    }
}

impl<R: AsyncRead + Unpin, W: Watch + Unpin> AsyncRead for Tap<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            this.watcher.watch(&buf.filled()[before..]);
        }
        poll
    }
}

/// What was stored.
#[derive(Clone, Debug)]
pub struct Uploaded {
    /// Bytes of the stored (compressed) object.
    pub size_bytes: u64,
    /// SHA-256 hex of the stored object.
    pub sha256: String,
    /// Bytes of the dump before compression.
    pub uncompressed_bytes: u64,
}

/// Compresses `source` into a multipart upload at `path`. `finished` is
/// awaited after `source` ends and must say whether the dump was whole
/// (the dump tool's exit status); only then is the upload completed.
pub async fn upload<R, F, T>(
    store: &Store,
    path: &Path,
    source: R,
    compression: Compression,
    finished: F,
) -> Result<(Uploaded, T)>
where
    R: AsyncRead + Unpin,
    F: Future<Output = Result<T>>,
{
    // With workers, zstd compresses in its own threads beside this task,
    // which reads the dump, hashes and uploads, instead of taking turns.
    let params = [async_compression::zstd::CParameter::nb_workers(
        compression.workers,
    )];
    let mut encoder = ZstdEncoder::with_quality_and_params(
        BufReader::with_capacity(READ_CHUNK, Tap::counting(source)),
        Level::Precise(compression.level),
        if compression.workers > 0 {
            &params[..]
        } else {
            &[]
        },
    );
    let multipart = store
        .store
        .put_multipart(path)
        .await
        .map_err(|e| s3_error(e, &format!("starting the upload of {path}")))?;
    let mut writer = WriteMultipart::new_with_chunk_size(multipart, PART_SIZE);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; READ_CHUNK];
    let outcome: Result<T> = async {
        loop {
            let n = encoder
                .read(&mut buf)
                .await
                .map_err(|e| AgentError::Tool(format!("reading the dump: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| s3_error(e, "uploading a part"))?;
            writer.write(&buf[..n]);
        }
        finished.await
    }
    .await;
    match outcome {
        Ok(value) => {
            writer
                .finish()
                .await
                .map_err(|e| s3_error(e, "completing the upload"))?;
            let uploaded = Uploaded {
                size_bytes: size,
                sha256: hex::encode(hasher.finalize()),
                uncompressed_bytes: encoder.get_ref().get_ref().count(),
            };
            Ok((uploaded, value))
        }
        Err(e) => {
            // Best effort: the server may be the thing that failed.
            match tokio::time::timeout(Duration::from_secs(30), writer.abort()).await {
                Ok(Ok(())) => super::progress("upload aborted; no object was written"),
                _ => super::progress(
                    "upload abandoned (abort failed); no object was written, the server may keep parts until its lifecycle removes them",
                ),
            }
            Err(e)
        }
    }
}

/// Size, SHA-256 and ETag of an object, read once from start to end.
pub async fn hash_object(store: &Store, path: &Path) -> Result<(u64, String, Option<String>)> {
    let got = store
        .store
        .get_opts(path, GetOptions::default())
        .await
        .map_err(|e| s3_error(e, &format!("reading {path}")))?;
    let etag = got.meta.e_tag.clone();
    let mut stream = got.into_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| s3_error(e, &format!("reading {path}")))?
    {
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok((size, hex::encode(hasher.finalize()), etag))
}

/// The decompressed content of an object, streamed; the object is pinned to
/// `etag` when given. [`Decompressed::stored`] hashes what was read.
pub type Decompressed = ZstdDecoder<BufReader<Tap<Box<dyn AsyncRead + Unpin + Send>>>>;

pub async fn open_object(store: &Store, path: &Path, etag: Option<String>) -> Result<Decompressed> {
    let options = GetOptions {
        if_match: etag,
        ..GetOptions::default()
    };
    let got = store
        .store
        .get_opts(path, options)
        .await
        .map_err(|e| match e {
            object_store::Error::Precondition { .. } => AgentError::Integrity(format!(
                "{path} changed between the checksum pass and the restore"
            )),
            e => s3_error(e, &format!("reading {path}")),
        })?;
    let stream = got.into_stream().map_err(std::io::Error::other);
    let reader: Box<dyn AsyncRead + Unpin + Send> = Box::new(StreamReader::new(stream));
    Ok(ZstdDecoder::new(BufReader::with_capacity(
        READ_CHUNK,
        Tap::new(reader),
    )))
}

/// Hash and size of what an [`open_object`] reader consumed.
pub fn stored(reader: &Decompressed) -> (u64, String) {
    let tap = reader.get_ref().get_ref();
    (tap.count(), tap.sha256_hex())
}

/// Reads a small object whole.
pub async fn get_small(store: &Store, path: &Path) -> Result<Option<Vec<u8>>> {
    match store.store.get(path).await {
        Ok(got) => Ok(Some(
            got.bytes()
                .await
                .map_err(|e| s3_error(e, &format!("reading {path}")))?
                .to_vec(),
        )),
        Err(e) if is_missing_object(&e) => Ok(None),
        Err(e) => Err(s3_error(e, &format!("reading {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    fn store() -> Store {
        Store::new(Arc::new(InMemory::new()), "b", "p")
    }

    #[tokio::test]
    async fn upload_then_read_back_across_parts() {
        let s = store();
        let path = s.dump_path("k", database_operator_api::v1::Engine::Postgresql);
        // Incompressible enough to need more than one part.
        let mut data = Vec::new();
        let mut x: u64 = 1;
        while data.len() < 20 << 20 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            data.extend_from_slice(&x.to_le_bytes());
        }
        let (up, ()) = upload(
            &s,
            &path,
            &data[..],
            Compression {
                level: 1,
                workers: 1,
            },
            async { Ok(()) },
        )
        .await
        .unwrap();
        assert_eq!(up.uncompressed_bytes, data.len() as u64);
        let (size, sha, etag) = hash_object(&s, &path).await.unwrap();
        assert_eq!((size, sha.clone()), (up.size_bytes, up.sha256.clone()));
        let mut reader = open_object(&s, &path, etag).await.unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data);
        assert_eq!(stored(&reader), (size, sha));
    }

    #[tokio::test]
    async fn a_failed_producer_leaves_no_object() {
        let s = store();
        let path = s.dump_path("k", database_operator_api::v1::Engine::Mysql);
        let err = upload(
            &s,
            &path,
            &b"partial dump"[..],
            Compression {
                level: 3,
                workers: 0,
            },
            async { Err::<(), _>(AgentError::Tool("mysqldump exited with 2".into())) },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("exited with 2"));
        assert!(matches!(
            s.store.head(&path).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
