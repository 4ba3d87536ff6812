//! The S3 fixture (versitygw): what the operator's backups need from an
//! object store, checked with the client it uses (object_store's
//! `AmazonS3`): round trips, multipart uploads, listings, deletes, SigV4
//! authentication, a server stopped in the middle of an upload, restarts
//! that keep the data, several servers side by side, and no process left
//! behind after a drop.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use database_operator_testkit::processes::pid_alive;
use database_operator_testkit::servers::S3;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, Checksum};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

/// `len` bytes that differ per `seed` and per position (so a part written
/// at the wrong offset would show).
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn read(store: &AmazonS3, path: &Path) -> object_store::Result<Vec<u8>> {
    Ok(store.get(path).await?.bytes().await?.to_vec())
}

async fn keys(store: &AmazonS3, prefix: Option<&Path>) -> Result<Vec<String>> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await?;
    keys.sort();
    Ok(keys)
}

/// Uploads `parts` parts of [`PART`] bytes (seeds `0..parts`) and completes.
async fn multipart(store: &AmazonS3, path: &Path, parts: u8) -> Result<Vec<u8>> {
    let mut upload = store.put_multipart(path).await?;
    let mut all = Vec::new();
    for seed in 0..parts {
        let part = data(seed, PART);
        all.extend_from_slice(&part);
        upload.put_part(PutPayload::from(part)).await?;
    }
    upload.complete().await?;
    Ok(all)
}

fn is_not_found(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_multipart_list_delete() -> Result<()> {
    let s3 = S3::start().await?;
    eprintln!(
        "versitygw {} at {} (pid {:?}) up in {:?}",
        s3.version(),
        s3.endpoint(),
        s3.pid(),
        s3.startup_time()
    );
    assert_eq!(s3.region(), "us-east-1");
    assert_eq!(s3.endpoint(), format!("http://127.0.0.1:{}", s3.port()));
    assert_eq!(s3.access_key().len(), 20);
    assert_eq!(s3.secret_key().len(), 40);

    let cmdline = std::fs::read(format!("/proc/{}/cmdline", s3.pid().context("pid")?))?;
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(s3.secret_key()),
        "secret key on the command line"
    );

    s3.create_bucket("backups").await?;
    ensure!(
        s3.create_bucket("backups").await.is_err(),
        "bucket made twice"
    );
    assert_eq!(s3.list_buckets().await?, vec!["backups".to_owned()]);
    assert!(s3.root_dir().join("backups").is_dir());

    // Built by hand (not s3.store) to show the configuration that works.
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_region(s3.region())
        .with_bucket_name("backups")
        .with_access_key_id(s3.access_key())
        .with_secret_access_key(s3.secret_key())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()?;

    // Put / get / head.
    let small = Path::from("db1/2026-01-01/meta.json");
    let body = br#"{"engine":"postgres","size":1}"#.to_vec();
    let put = store.put(&small, PutPayload::from(body.clone())).await?;
    assert!(put.e_tag.is_some(), "no ETag on PutObject");
    assert_eq!(read(&store, &small).await?, body);
    let meta = store.head(&small).await?;
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(meta.e_tag, put.e_tag);
    assert_eq!(
        std::fs::read(s3.root_dir().join("backups/db1/2026-01-01/meta.json"))?,
        body,
        "the posix backend keeps the object as a plain file"
    );
    assert_eq!(
        store.get_range(&small, 2..8).await?.as_ref(),
        &body[2..8],
        "ranged GET"
    );
    let missing = store.get(&Path::from("db1/nope")).await.unwrap_err();
    assert!(is_not_found(&missing), "{missing:?}");

    // Multipart: 20 MiB in four 5 MiB parts.
    let big = Path::from("db1/2026-01-01/dump.bin");
    let started = Instant::now();
    let expected = multipart(&store, &big, 4).await?;
    eprintln!("20 MiB multipart upload in {:?}", started.elapsed());
    assert_eq!(expected.len(), 20 * MIB);
    let got = read(&store, &big).await?;
    assert!(got == expected, "multipart object differs");
    let meta = store.head(&big).await?;
    assert_eq!(meta.size, (20 * MIB) as u64);
    assert!(
        meta.e_tag.as_deref().is_some_and(|e| e.ends_with("-4\"")),
        "multipart ETag {:?}",
        meta.e_tag
    );
    // A part in the middle, read back by range.
    let range = (7 * MIB) as u64..(7 * MIB + 100) as u64;
    assert_eq!(
        store.get_range(&big, range.clone()).await?.as_ref(),
        &expected[range.start as usize..range.end as usize]
    );

    // Same with SHA-256 checksums on every request (x-amz-checksum-sha256).
    let checked = s3
        .builder("backups")
        .with_checksum_algorithm(Checksum::SHA256)
        .build()?;
    let checked_path = Path::from("db2/2026-01-02/dump.bin");
    let checked_data = multipart(&checked, &checked_path, 2).await?;
    assert!(read(&checked, &checked_path).await? == checked_data);
    let checked_small = Path::from("db2/2026-01-02/meta.json");
    checked
        .put(&checked_small, PutPayload::from_static(b"{}"))
        .await?;
    assert_eq!(read(&store, &checked_small).await?, b"{}");

    // ListObjectsV2 with a prefix (recursive), and with a delimiter.
    store
        .put(
            &Path::from("db10/x"),
            PutPayload::from_static(b"not under db1/"),
        )
        .await?;
    assert_eq!(
        keys(&store, Some(&Path::from("db1"))).await?,
        vec![big.to_string(), small.to_string()]
    );
    assert_eq!(
        keys(&store, None).await?,
        vec![
            big.to_string(),
            small.to_string(),
            "db10/x".to_owned(),
            checked_path.to_string(),
            checked_small.to_string(),
        ]
    );
    let listing = store.list_with_delimiter(None).await?;
    let mut prefixes: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    prefixes.sort();
    assert_eq!(prefixes, vec!["db1", "db10", "db2"]);
    assert!(listing.objects.is_empty());
    // More keys than one page of 1000 would need pagination; 1005 small
    // objects are cheap enough to check that continuation tokens work.
    let many: Vec<Path> = (0..1005)
        .map(|i| Path::from(format!("many/{i:04}")))
        .collect();
    futures::stream::iter(many.clone())
        .map(|p| {
            let store = &store;
            async move { store.put(&p, PutPayload::from_static(b"x")).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    assert_eq!(keys(&store, Some(&Path::from("many"))).await?.len(), 1005);

    // Delete one; then many at once (object_store batches them into
    // DeleteObjects requests of up to 1000 keys).
    store.delete(&small).await?;
    let gone = store.head(&small).await.unwrap_err();
    assert!(is_not_found(&gone), "{gone:?}");
    // Deleting a missing key is not an error in S3.
    store.delete(&small).await?;
    let deleted: Vec<Path> = store
        .delete_stream(futures::stream::iter(many.clone().into_iter().map(Ok)).boxed())
        .try_collect()
        .await?;
    assert_eq!(deleted.len(), 1005);
    assert!(keys(&store, Some(&Path::from("many"))).await?.is_empty());
    let log = std::fs::read_to_string(s3.log_path())?;
    assert!(
        !log.contains(s3.secret_key()),
        "secret key in the server's log"
    );
    let bulk = log
        .lines()
        .filter(|l| l.contains("| 200 |") && l.contains("| POST | /backups"))
        .count();
    assert!(
        bulk >= 2,
        "expected two DeleteObjects requests (1000 + 5 keys) in the log, found {bulk}"
    );
    assert_eq!(
        keys(&store, None).await?,
        vec![
            big.to_string(),
            "db10/x".to_owned(),
            checked_path.to_string(),
            checked_small.to_string(),
        ]
    );

    // Copy and conditional create (PutMode::Create -> If-None-Match: *).
    let copy = Path::from("db1/copy.bin");
    store.copy(&big, &copy).await?;
    assert_eq!(store.head(&copy).await?.size, (20 * MIB) as u64);
    let create = store
        .put_opts(
            &copy,
            PutPayload::from_static(b"x"),
            object_store::PutMode::Create.into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(create, object_store::Error::AlreadyExists { .. }),
        "{create:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_refused() -> Result<()> {
    let s3 = S3::start().await?;
    s3.create_bucket("secure").await?;
    let store = s3.store("secure")?;
    let path = Path::from("a");
    store.put(&path, PutPayload::from_static(b"secret")).await?;

    let wrong_secret = s3
        .builder("secure")
        .with_secret_access_key("0123456789012345678901234567890123456789")
        .build()?;
    for error in [
        wrong_secret.get(&path).await.unwrap_err(),
        wrong_secret
            .put(&Path::from("b"), PutPayload::from_static(b"x"))
            .await
            .unwrap_err(),
        wrong_secret.delete(&path).await.unwrap_err(),
    ] {
        assert!(
            matches!(error, object_store::Error::PermissionDenied { .. }),
            "{error:?}"
        );
        assert!(
            format!("{error}").contains("SignatureDoesNotMatch"),
            "{error}"
        );
    }
    // HEAD answers carry no body, so only the status tells.
    let error = wrong_secret.head(&path).await.unwrap_err();
    assert!(
        matches!(error, object_store::Error::PermissionDenied { .. }),
        "{error:?}"
    );
    // object_store reports a refused listing as a generic error (its list
    // requests do not map statuses), with the 403 in the message.
    let error = wrong_secret.list(None).try_next().await.unwrap_err();
    assert!(format!("{error}").contains("403"), "{error}");
    assert!(
        format!("{error}").contains("SignatureDoesNotMatch"),
        "{error}"
    );

    // An access key the server does not know: versitygw answers 404
    // XAdminUserNotFound (AWS: 403 InvalidAccessKeyId), which object_store
    // turns into NotFound for GET/HEAD: not to be read as "no such object".
    let wrong_access = s3
        .builder("secure")
        .with_access_key_id("TKNOSUCHKEY000000000")
        .build()?;
    let error = wrong_access.get(&path).await.unwrap_err();
    assert!(is_not_found(&error), "{error:?}");
    assert!(format!("{error}").contains("XAdminUserNotFound"), "{error}");
    let error = wrong_access
        .put(&Path::from("b"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(format!("{error}").contains("XAdminUserNotFound"), "{error}");

    // No keys at all: anonymous requests are refused too.
    let anonymous = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_region(s3.region())
        .with_bucket_name("secure")
        .with_allow_http(true)
        .with_skip_signature(true)
        .build()?;
    let error = anonymous.get(&path).await.unwrap_err();
    assert!(
        matches!(error, object_store::Error::PermissionDenied { .. }),
        "{error:?}"
    );

    // Nothing was written by the refused requests.
    assert_eq!(keys(&store, None).await?, vec!["a".to_owned()]);
    assert_eq!(read(&store, &path).await?, b"secret");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_mid_upload_fails_it_and_start_again_keeps_data() -> Result<()> {
    let mut s3 = S3::start().await?;
    s3.create_bucket("restart").await?;
    let store = s3.store("restart")?;
    let (port, access, secret) = (
        s3.port(),
        s3.access_key().to_owned(),
        s3.secret_key().to_owned(),
    );

    let kept = Path::from("done/one.bin");
    let kept_data = data(42, 3 * MIB);
    store
        .put(&kept, PutPayload::from(kept_data.clone()))
        .await?;

    // Two parts in, then the server goes away. A second upload has all its
    // parts in and only lacks CompleteMultipartUpload.
    let target = Path::from("partial/dump.bin");
    let mut upload = store.put_multipart(&target).await?;
    upload.put_part(PutPayload::from(data(1, PART))).await?;
    upload.put_part(PutPayload::from(data(2, PART))).await?;
    let unfinished = Path::from("partial/unfinished.bin");
    let mut upload2 = store.put_multipart(&unfinished).await?;
    upload2.put_part(PutPayload::from(data(5, PART))).await?;
    upload2.put_part(PutPayload::from(data(6, MIB))).await?;
    let old_pid = s3.pid().context("no pid")?;
    s3.stop();
    assert!(!s3.is_running());
    assert_eq!(s3.pid(), None);
    assert!(!pid_alive(old_pid));

    let started = Instant::now();
    let error = upload
        .put_part(PutPayload::from(data(3, PART)))
        .await
        .unwrap_err();
    eprintln!(
        "part upload against the stopped server failed after {:?}: {error}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the short retry budget of S3::builder should fail fast"
    );
    // The failed part fails the upload without asking the server.
    let error = upload.complete().await.unwrap_err();
    eprintln!("complete after the failed part: {error}");
    // CompleteMultipartUpload itself against the stopped server.
    let error = upload2.complete().await.unwrap_err();
    eprintln!("complete against the stopped server: {error}");
    assert!(
        format!("{error}").contains("error sending request"),
        "{error}"
    );

    // Same port, keys and data.
    s3.start_again().await?;
    assert!(s3.is_running());
    assert_ne!(s3.pid(), Some(old_pid));
    assert_eq!(s3.port(), port);
    assert_eq!(s3.access_key(), access);
    assert_eq!(s3.secret_key(), secret);
    // The client built before the restart still works.
    assert!(read(&store, &kept).await? == kept_data);
    for path in [&target, &unfinished] {
        let missing = store.head(path).await.unwrap_err();
        assert!(is_not_found(&missing), "{missing:?}");
    }
    assert_eq!(keys(&store, None).await?, vec![kept.to_string()]);
    // Staged parts are not objects.
    assert!(!s3.root_dir().join("restart/partial").exists());

    // The interrupted uploads can still be aborted, and the key uploaded
    // anew.
    upload.abort().await?;
    upload2.abort().await?;
    let fresh = multipart(&store, &target, 2).await?;
    assert!(read(&store, &target).await? == fresh);

    // A crash (SIGKILL) mid-upload: the same outcome.
    let other = Path::from("partial/crash.bin");
    let mut upload = store.put_multipart(&other).await?;
    upload.put_part(PutPayload::from(data(9, PART))).await?;
    s3.kill();
    assert!(upload.complete().await.is_err());
    s3.start_again().await?;
    let missing = store.head(&other).await.unwrap_err();
    assert!(is_not_found(&missing), "{missing:?}");
    assert_eq!(
        keys(&store, None).await?,
        vec![kept.to_string(), target.to_string()]
    );
    assert!(read(&store, &kept).await? == kept_data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_side_by_side_and_drop_leaves_no_process() -> Result<()> {
    let (a, b) = tokio::try_join!(S3::start(), S3::start())?;
    assert_ne!(a.port(), b.port());
    assert_ne!(a.access_key(), b.access_key());
    assert_ne!(a.dir(), b.dir());

    a.create_bucket("only-in-a").await?;
    b.create_bucket("only-in-b").await?;
    assert_eq!(a.list_buckets().await?, vec!["only-in-a".to_owned()]);
    assert_eq!(b.list_buckets().await?, vec!["only-in-b".to_owned()]);
    let store_a = a.store("only-in-a")?;
    let store_b = b.store("only-in-b")?;
    let k = Path::from("k");
    tokio::try_join!(
        store_a.put(&k, PutPayload::from_static(b"from a")),
        store_b.put(&k, PutPayload::from_static(b"from b")),
    )?;
    assert_eq!(read(&store_a, &k).await?, b"from a");
    assert_eq!(read(&store_b, &k).await?, b"from b");

    // A's keys against B's endpoint: refused (an unknown access key is
    // a 404 XAdminUserNotFound on versitygw, see wrong_keys_are_refused).
    let crossed = b
        .builder("only-in-b")
        .with_access_key_id(a.access_key())
        .with_secret_access_key(a.secret_key())
        .build()?;
    let error = crossed.get(&k).await.unwrap_err();
    assert!(format!("{error}").contains("XAdminUserNotFound"), "{error}");

    let pids = [a.pid().context("a pid")?, b.pid().context("b pid")?];
    let dirs = [a.dir().to_owned(), b.dir().to_owned()];
    let port = a.port();
    drop(a);
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| pid_alive(*p)) {
        ensure!(
            Instant::now() < deadline,
            "versitygw still running after drop: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if std::env::var_os("TESTKIT_KEEP_DIR").is_none() {
        for dir in &dirs {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }
    // Nobody listens on the port any more.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    Ok(())
}

/// Run by `s3_dies_with_the_test_process` in a child test process: starts a
/// server, writes its PID and folder to the file named by
/// `TESTKIT_S3_PID_FILE` and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run by s3_dies_with_the_test_process"]
async fn helper_hold_s3_until_killed() -> Result<()> {
    let Some(file) = std::env::var_os("TESTKIT_S3_PID_FILE") else {
        return Ok(());
    };
    let s3 = S3::start().await?;
    let text = format!("{}\n{}\n", s3.pid().context("pid")?, s3.dir().display());
    let tmp = format!("{}.tmp", file.to_string_lossy());
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &file)?;
    tokio::time::sleep(Duration::from_secs(300)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_dies_with_the_test_process() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let pid_file = scratch.path().join("pids");
    let (mut child, text) = super::helper::run_helper(
        "s3::helper_hold_s3_until_killed",
        "TESTKIT_S3_PID_FILE",
        &pid_file,
    )
    .await?;
    let mut lines = text.lines();
    let pid: u32 = lines.next().unwrap_or_default().parse()?;
    let dir = lines.next().unwrap_or_default().to_owned();
    assert!(pid_alive(pid));

    // SIGKILL: no destructor runs; PDEATHSIG must take the server down.
    child.kill()?;
    child.wait()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        ensure!(
            Instant::now() < deadline,
            "versitygw {pid} outlived its test process"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The folder is swept by the next fixture started in this process.
    let s3 = S3::start().await?;
    assert!(
        !std::path::Path::new(&dir).exists(),
        "stale folder {dir} not removed"
    );
    drop(s3);
    Ok(())
}
