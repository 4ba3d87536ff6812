//! The container image as `make image` builds it without a Docker engine
//! (`hack/image/build.sh`: an OCI image archive under `target/image/`),
//! read here with no container tool: the archive's layout and digests, its
//! config against the `Dockerfile`'s, and the binary in it run from the
//! image's own root filesystem — which holds no libc and no loader, so the
//! binary runs only if it is static — as the operator (`--version`, `crd`),
//! as the init container that copies the agent (`copy-self`), and as the
//! agent resolving a host name (through the `/etc/hosts` a pod gets) to
//! reach a real S3 server.

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

const BINARY: &str = "/usr/local/bin/database-operator";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn archive() -> PathBuf {
    let path = workspace().join(format!(
        "target/image/database-operator-{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.is_file(),
        "{} is missing: run `make image`",
        path.display()
    );
    path
}

/// The archive unpacked: its image config and the root filesystem of its
/// layers.
struct Image {
    _dir: tempfile::TempDir,
    config: Value,
    rootfs: PathBuf,
}

/// A blob of the layout, checked against its descriptor's digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(actual, hex, "blob {digest} does not match its digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "{digest}"
    );
    bytes
}

fn run(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn unpack() -> Image {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive())
        .arg("-C")
        .arg(&layout));
    let marker: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION"),
        "the image is tagged with the version"
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, &manifests[0])).unwrap();
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let path = dir.path().join("layer.tar.gz");
        std::fs::write(&path, blob(&layout, layer)).unwrap();
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&path)
            .arg("-C")
            .arg(&rootfs)
            .arg("--no-same-owner"));
    }
    let size = std::fs::metadata(archive()).unwrap().len();
    eprintln!(
        "image archive: {size} bytes ({:.1} MiB); binary {} bytes",
        size as f64 / 1048576.0,
        std::fs::metadata(rootfs.join(&BINARY[1..])).unwrap().len()
    );
    Image {
        _dir: dir,
        config,
        rootfs,
    }
}

/// `args` run as the image's binary with the image's root filesystem as
/// `/`: chroot as root, else in a user namespace of our own.
fn in_image(rootfs: &Path, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    // Found on our PATH: the command's own environment is cleared.
    let chroot = which("chroot");
    let mut command = if is_root() {
        Command::new(chroot)
    } else {
        let mut c = Command::new(which("unshare"));
        c.args(["--user", "--map-root-user"]).arg(chroot);
        c
    };
    command
        .arg(rootfs)
        .arg(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command.output().unwrap()
}

/// `program`'s path on this process's PATH.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} not found on PATH"))
}

fn is_root() -> bool {
    // The effective user, as the kernel reports it.
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// What the Dockerfile's final stage says: user, entrypoint, command, the
/// labels (with the ARG defaults filled in) and env, and where it copies
/// the binary.
struct Dockerfile {
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
    env: Vec<String>,
    copied_to: String,
}

fn dockerfile() -> Dockerfile {
    let text = std::fs::read_to_string(workspace().join("Dockerfile")).unwrap();
    // Continuation lines joined; only the last stage (after the last FROM).
    let joined = text.replace("\\\n", " ");
    let stage = joined.rsplit_once("\nFROM ").unwrap().1;
    let mut args = BTreeMap::new();
    let mut file = Dockerfile {
        user: String::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        labels: BTreeMap::new(),
        env: Vec::new(),
        copied_to: String::new(),
    };
    let unquote = |s: &str| s.trim().trim_matches('"').to_owned();
    let label_pair = regex::Regex::new(r#"([\w.\-]+)="([^"]*)""#).unwrap();
    for line in stage.lines().map(str::trim) {
        let Some((instruction, rest)) = line.split_once(' ') else {
            continue;
        };
        match instruction {
            "ARG" => {
                if let Some((k, v)) = rest.split_once('=') {
                    args.insert(k.trim().to_owned(), unquote(v));
                }
            }
            "USER" => file.user = rest.trim().to_owned(),
            "ENTRYPOINT" => file.entrypoint = serde_json::from_str(rest).unwrap(),
            "CMD" => file.cmd = serde_json::from_str(rest).unwrap(),
            "ENV" => file.env.push(rest.trim().to_owned()),
            "COPY" => file.copied_to = rest.split_whitespace().last().unwrap().to_owned(),
            "LABEL" => {
                for pair in label_pair.captures_iter(rest) {
                    let mut value = pair[2].to_owned();
                    for (k, v) in &args {
                        value = value.replace(&format!("${{{k}}}"), v);
                    }
                    file.labels.insert(pair[1].to_owned(), value);
                }
            }
            _ => {}
        }
    }
    file
}

#[test]
fn the_archive_and_the_dockerfile_describe_the_same_image() {
    let image = unpack();
    let config = &image.config;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let docker = dockerfile();
    let run_config = &config["config"];
    assert_eq!(run_config["User"], docker.user);
    assert_eq!(docker.user, "65532:65532", "non-root, numeric");
    assert_eq!(
        run_config["Entrypoint"],
        serde_json::json!(docker.entrypoint)
    );
    assert_eq!(docker.entrypoint, [BINARY]);
    assert_eq!(
        docker.copied_to, BINARY,
        "the Dockerfile copies the binary there"
    );
    assert_eq!(run_config["Cmd"], serde_json::json!(docker.cmd));
    assert_eq!(docker.cmd, ["run"]);
    let env: Vec<String> = serde_json::from_value(run_config["Env"].clone()).unwrap();
    for variable in &docker.env {
        assert!(env.contains(variable), "{variable} not in {env:?}");
    }
    let labels: BTreeMap<String, String> =
        serde_json::from_value(run_config["Labels"].clone()).unwrap();
    assert_eq!(
        labels.keys().collect::<Vec<_>>(),
        docker.labels.keys().collect::<Vec<_>>()
    );
    for (key, value) in &docker.labels {
        if key == "org.opencontainers.image.revision" {
            // The commit the archive was built from; the Dockerfile takes
            // it as a build argument.
            assert_eq!(labels[key].len(), 40, "{}", labels[key]);
            continue;
        }
        assert_eq!(&labels[key], value, "{key}");
    }
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    // The CA certificates the operator's TLS and the agent's S3 need.
    assert!(
        image
            .rootfs
            .join("etc/ssl/certs/ca-certificates.crt")
            .is_file()
    );
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
}

/// Whether an ELF file asks for a program interpreter (the dynamic
/// loader): a static executable has no `PT_INTERP` program header.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "64-bit");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let (table, size, count) = (
        usize::try_from(u64_at(0x20)).unwrap(),
        usize::from(u16_at(0x36)),
        usize::from(u16_at(0x38)),
    );
    (0..count).any(|i| u32_at(table + i * size) == 3)
}

/// As a pod with `readOnlyRootFilesystem` and the image's user would run
/// it: the image's root mounted read-only (a bind mount in a mount
/// namespace of its own), a writable emptyDir-like tmpfs at /tmp, and the
/// binary run as the image config's numeric user. Needs root (CI runs as
/// root); anywhere else it says it cannot and checks nothing.
#[test]
fn the_binary_runs_as_the_images_user_on_a_read_only_root() {
    if !is_root() {
        eprintln!("not root: cannot mount a read-only root here; not checked");
        return;
    }
    let image = unpack();
    let root = image.rootfs.display().to_string();
    let user = image.config["config"]["User"].as_str().unwrap().to_owned();
    assert!(
        user.split(':')
            .all(|id| id.parse::<u32>().is_ok_and(|id| id != 0)),
        "the image's user is numeric and not root: {user}"
    );
    // The script runs on the host's shell, inside the new mount namespace;
    // the binary runs chrooted, as the image's user.
    let script = format!(
        "set -e
         mount --bind '{root}' '{root}' && mount -o remount,bind,ro '{root}'
         mount -t tmpfs -o mode=1777 tmpfs '{root}/tmp'
         mkdir '{root}/tmp/agent' && chown {user} '{root}/tmp/agent'
         if touch '{root}/written' 2>/dev/null; then echo 'the root is writable'; exit 3; fi
         chroot --userspec={user} '{root}' {BINARY} --version
         chroot --userspec={user} '{root}' {BINARY} crd > '{root}/tmp/crds.yaml'
         grep -c 'kind: CustomResourceDefinition' '{root}/tmp/crds.yaml'
         chroot --userspec={user} '{root}' {BINARY} copy-self /tmp/agent/database-operator
         stat -c '%u:%g %a' '{root}/tmp/agent/database-operator'"
    );
    let out = Command::new(which("unshare"))
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("database-operator {}", env!("CARGO_PKG_VERSION")).as_str(),
            "4",
            &format!("{user} 755"),
        ],
        "{stdout}"
    );
    // Nothing of the run is left in the image's folder.
    assert!(!image.rootfs.join("tmp/agent").exists());
}

#[tokio::test]
async fn the_binary_is_static_and_runs_from_the_image_alone() {
    let image = unpack();
    let rootfs = &image.rootfs;
    let elf = std::fs::read(rootfs.join(&BINARY[1..])).unwrap();
    assert!(!has_interpreter(&elf), "the binary needs a dynamic loader");
    // Nothing but the binary, CA certificates and passwd: no libc, no
    // loader, no shell.
    for absent in ["lib", "lib64", "usr/lib", "bin/sh"] {
        assert!(!rootfs.join(absent).exists(), "/{absent} in the image");
    }
    let version = in_image(rootfs, &["--version"], &[]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("database-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let crd = in_image(rootfs, &["crd"], &[]);
    let crds = String::from_utf8_lossy(&crd.stdout);
    assert_eq!(crds.matches("kind: CustomResourceDefinition").count(), 4);

    // The init container of backup pods: the agent copies itself out.
    let copied = in_image(rootfs, &["copy-self", "/tmp/agent/database-operator"], &[]);
    assert!(!copied.status.success(), "copying into a missing folder");
    std::fs::create_dir(rootfs.join("tmp/agent")).unwrap();
    let copied = in_image(rootfs, &["copy-self", "/tmp/agent/database-operator"], &[]);
    assert!(copied.status.success(), "{copied:?}");
    let copy = rootfs.join("tmp/agent/database-operator");
    assert_eq!(std::fs::read(&copy).unwrap(), elf);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // The static binary resolves host names as a pod does (kubelet mounts
    // /etc/hosts and /etc/resolv.conf): the agent reaches a real S3 server
    // by a name only /etc/hosts knows.
    let s3 = testkit::servers::S3::start().await.unwrap();
    s3.create_bucket("backups").await.unwrap();
    std::fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1 s3.image.test\n",
    )
    .unwrap();
    let port = s3.endpoint().rsplit_once(':').unwrap().1.to_owned();
    let pruned = in_image(
        rootfs,
        &["agent", "prune", "--retention", "10"],
        &[
            ("S3_BUCKET", "backups".into()),
            ("S3_ENDPOINT", format!("http://s3.image.test:{port}")),
            ("S3_REGION", s3.region().into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("S3_RETRY_TIMEOUT_SECONDS", "5".into()),
            ("AWS_ACCESS_KEY_ID", s3.access_key().into()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key().into()),
        ],
    );
    assert!(
        pruned.status.success(),
        "the agent in the image could not reach S3 by name: {}\n{}",
        String::from_utf8_lossy(&pruned.stdout),
        String::from_utf8_lossy(&pruned.stderr)
    );
}
