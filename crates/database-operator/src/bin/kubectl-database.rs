//! `kubectl database`: the operator's Databases from a terminal. Put this
//! binary on PATH as `kubectl-database` and kubectl finds it.
//!
//! - `list`: every Database with its engine, version, ready/desired
//!   members, phase, primary endpoint and last completed backup (with its
//!   age).
//! - `status NAME`: one Database: its conditions, replication members,
//!   children, recent backups and events.
//! - `backup NAME`: a DatabaseBackup of it, followed until it completes or
//!   fails.
//! - `restore NEW --from BACKUP`: a new Database like the backed-up one
//!   (engine, flavor, version, members, storage, resources), restored from
//!   that DatabaseBackup.
//! - `credentials NAME [--user U]`: a connection URI, the admin login's or a
//!   DatabaseUser's (printed only because it was asked for).
//! - `connect NAME`: the engine's shell as the admin login, in the primary
//!   pod (`kubectl exec`; the password never leaves the pod). `--print`
//!   shows the command instead of running it.
//!
//! The usual flags: `-n`, `-A`, `--context`, `--kubeconfig`; `-o json|yaml`
//! for scripts. Exit codes: 0 done, 1 the API failed, 2 bad usage, 3 the
//! Database (user, Secret) does not exist, 4 the backup failed, 5 it did
//! not finish in time.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use operator::builders::secret::secret_value;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "kubectl-database",
    version,
    about = "The database-operator's Databases"
)]
struct Cli {
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// The kubeconfig context.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Output: a table for people, json or yaml for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Every Database: engine, version, ready/desired, phase, primary
    /// endpoint, last backup.
    List,
    /// One Database: conditions, replication, children, backups, events.
    Status { name: String },
    /// Back a Database up now: creates a DatabaseBackup and follows it.
    Backup {
        name: String,
        /// Create it and return at once.
        #[arg(long)]
        no_wait: bool,
        /// How long to follow it before giving up (exit code 5).
        #[arg(long, default_value_t = 1800)]
        timeout_seconds: u64,
    },
    /// Create a new Database restored from a completed DatabaseBackup, like
    /// the Database it was taken from.
    Restore {
        /// The new Database's name.
        name: String,
        /// The DatabaseBackup, in the same namespace.
        #[arg(long)]
        from: String,
    },
    /// Open the engine's shell in the primary pod (through `kubectl exec`).
    Connect {
        name: String,
        /// Print the kubectl command instead of running it.
        #[arg(long)]
        print: bool,
    },
    /// Print a connection URI: the admin login's, or a DatabaseUser's.
    Credentials {
        name: String,
        /// The DatabaseUser (its name or its username).
        #[arg(long)]
        user: Option<String>,
    },
}

/// Why the plugin stopped, as its exit code.
enum Failure {
    Api(anyhow::Error),
    NotFound(String),
    BackupFailed(String),
    TimedOut(String),
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure::Api(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Api(e)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let code = match run(&cli).await {
        Ok(()) => 0,
        Err(Failure::Api(e)) => {
            eprintln!("error: {e:#}");
            1
        }
        Err(Failure::NotFound(what)) => {
            eprintln!("error: {what} not found");
            3
        }
        Err(Failure::BackupFailed(why)) => {
            eprintln!("error: the backup failed: {why}");
            4
        }
        Err(Failure::TimedOut(what)) => {
            eprintln!("error: {what}");
            5
        }
    };
    std::process::exit(code);
}

async fn client(cli: &Cli) -> Result<(Client, String), Failure> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(anyhow::Error::from)?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(anyhow::Error::from)?
        }
        None => Config::from_kubeconfig(&options)
            .await
            .map_err(anyhow::Error::from)?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let (client, namespace) = client(cli).await?;
    match &cli.command {
        Command::List => list(cli, &client, &namespace).await,
        Command::Status { name } => status(cli, &client, &namespace, name).await,
        Command::Backup {
            name,
            no_wait,
            timeout_seconds,
        } => backup(cli, &client, &namespace, name, *no_wait, *timeout_seconds).await,
        Command::Restore { name, from } => restore(cli, &client, &namespace, name, from).await,
        Command::Connect { name, print } => connect(cli, &client, &namespace, name, *print).await,
        Command::Credentials { name, user } => {
            credentials(cli, &client, &namespace, name, user.as_deref()).await
        }
    }
}

async fn database(client: &Client, namespace: &str, name: &str) -> Result<Database, Failure> {
    Api::<Database>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("Database {namespace}/{name}")))
}

async fn backup(
    cli: &Cli,
    client: &Client,
    namespace: &str,
    name: &str,
    no_wait: bool,
    timeout_seconds: u64,
) -> Result<(), Failure> {
    database(client, namespace, name).await?;
    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), namespace);
    let request: DatabaseBackup = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
        "metadata": {"generateName": format!("{name}-manual-"), "namespace": namespace},
        "spec": {"databaseRef": {"name": name}}
    }))
    .map_err(anyhow::Error::from)?;
    let created = backups
        .create(&kube::api::PostParams::default(), &request)
        .await?;
    let backup_name = created.name_any();
    let started = std::time::Instant::now();
    let table = cli.output == Output::Table;
    if table {
        println!("DatabaseBackup {namespace}/{backup_name} created");
    }
    if no_wait {
        return if table {
            Ok(())
        } else {
            print(cli, &json!(created))
        };
    }
    let mut said = None;
    loop {
        let current = backups.get(&backup_name).await?;
        let status = current.status.clone().unwrap_or_default();
        let phase = status
            .phase
            .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}"));
        if table && said.as_ref() != Some(&phase) {
            println!(
                "{:>5}s  {}",
                started.elapsed().as_secs(),
                phase_colour(&phase)
            );
            said = Some(phase.clone());
        }
        let ready = database_operator_api::v1::condition::find(&status.conditions, "Ready");
        match status.phase {
            Some(BackupPhase::Completed) => {
                if !table {
                    return print(cli, &json!(current));
                }
                println!(
                    "location {}  size {}",
                    status.location.as_deref().unwrap_or("-"),
                    status
                        .size_bytes
                        .map_or_else(|| "-".into(), |b| format!("{b} B"))
                );
                if let Some(ready) = ready {
                    println!("{}", ready.message);
                }
                return Ok(());
            }
            Some(BackupPhase::Failed) => {
                if !table {
                    print(cli, &json!(current))?;
                }
                return Err(Failure::BackupFailed(
                    ready.map_or_else(|| "no reason given".into(), |c| c.message.clone()),
                ));
            }
            _ => {}
        }
        if started.elapsed().as_secs() >= timeout_seconds {
            return Err(Failure::TimedOut(format!(
                "DatabaseBackup {namespace}/{backup_name} is still {phase} after {timeout_seconds}s"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn restore(
    cli: &Cli,
    client: &Client,
    namespace: &str,
    name: &str,
    from: &str,
) -> Result<(), Failure> {
    let backup = Api::<DatabaseBackup>::namespaced(client.clone(), namespace)
        .get_opt(from)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("DatabaseBackup {namespace}/{from}")))?;
    let source = database(client, namespace, &backup.spec.database_ref.name).await?;
    let mut spec = serde_json::to_value(&source.spec).map_err(anyhow::Error::from)?;
    // What the data needs; backups, monitoring, users and replication
    // settings are the new Database's own to choose.
    if let Some(fields) = spec.as_object_mut() {
        fields.retain(|k, _| {
            [
                "engine",
                "flavor",
                "version",
                "replicas",
                "storage",
                "resources",
            ]
            .contains(&k.as_str())
        });
        fields.insert("restore".into(), json!({"backupRef": {"name": from}}));
    }
    let new: Database = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec
    }))
    .map_err(anyhow::Error::from)?;
    let created = Api::<Database>::namespaced(client.clone(), namespace)
        .create(&kube::api::PostParams::default(), &new)
        .await?;
    if cli.output == Output::Table {
        println!(
            "Database {namespace}/{name} created, restoring DatabaseBackup {from} of {}; follow it with: kubectl database status {name} -n {namespace}",
            backup.spec.database_ref.name
        );
        Ok(())
    } else {
        print(cli, &json!(created))
    }
}

/// The shell of `db`'s engine as its admin login, run inside its container:
/// the credentials come from the container's own environment.
fn shell(db: &Database) -> &'static str {
    match (db.spec.engine, db.spec.mysql_flavor()) {
        (database_operator_api::v1::Engine::Postgresql, _) => {
            "exec psql -U \"$POSTGRES_USER\" -d postgres"
        }
        (_, Some(database_operator_api::v1::Flavor::Mariadb)) => {
            "MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" exec mariadb -u root"
        }
        (database_operator_api::v1::Engine::Mysql, _) => {
            "MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" exec mysql -u root"
        }
        (database_operator_api::v1::Engine::Mongodb, _) => {
            "exec mongosh -u \"$MONGO_INITDB_ROOT_USERNAME\" -p \"$MONGO_INITDB_ROOT_PASSWORD\" --authenticationDatabase admin"
        }
    }
}

async fn connect(
    cli: &Cli,
    client: &Client,
    namespace: &str,
    name: &str,
    print_only: bool,
) -> Result<(), Failure> {
    let db = database(client, namespace, name).await?;
    // The pod labelled primary, else pod 0 (engines that do not replicate).
    let primary = db
        .status
        .as_ref()
        .and_then(|s| s.replication.as_ref())
        .and_then(|r| r.primary.clone())
        .unwrap_or_else(|| format!("{name}-0"));
    let container = operator::engine::driver_of(&db.spec).container_name();
    let mut args: Vec<String> = vec!["exec".into(), "-it".into()];
    if let Some(path) = &cli.kubeconfig {
        args.extend(["--kubeconfig".into(), path.display().to_string()]);
    }
    if let Some(context) = &cli.context {
        args.extend(["--context".into(), context.clone()]);
    }
    args.extend([
        "-n".into(),
        namespace.to_owned(),
        primary,
        "-c".into(),
        container.to_owned(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        shell(&db).to_owned(),
    ]);
    if print_only {
        if cli.output == Output::Table {
            let quoted: Vec<String> = args
                .iter()
                .map(|a| {
                    if a.contains([' ', '"', '$']) {
                        format!("'{a}'")
                    } else {
                        a.clone()
                    }
                })
                .collect();
            println!("kubectl {}", quoted.join(" "));
            return Ok(());
        }
        let mut command = vec!["kubectl".to_owned()];
        command.extend(args);
        return print(cli, &json!({ "command": command }));
    }
    let status = std::process::Command::new("kubectl")
        .args(&args)
        .status()
        .map_err(|e| anyhow::anyhow!("running kubectl: {e}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

async fn credentials(
    cli: &Cli,
    client: &Client,
    namespace: &str,
    name: &str,
    user: Option<&str>,
) -> Result<(), Failure> {
    let db = database(client, namespace, name).await?;
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace);
    let uri = match user {
        Some(user) => {
            let users = Api::<database_operator_api::v1::user::DatabaseUser>::namespaced(
                client.clone(),
                namespace,
            )
            .list(&ListParams::default())
            .await?
            .items;
            let found = users
                .iter()
                .find(|u| {
                    u.spec.database_ref.name == name
                        && (u.name_any() == user || u.spec.username == user)
                })
                .ok_or_else(|| {
                    Failure::NotFound(format!("DatabaseUser {user} of {namespace}/{name}"))
                })?;
            let secret_name = operator::builders::credentials::secret_name(found);
            let secret = secrets
                .get_opt(&secret_name)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("Secret {namespace}/{secret_name}")))?;
            secret_value(&secret, "uri").ok_or_else(|| {
                Failure::NotFound(format!("key uri in Secret {namespace}/{secret_name}"))
            })?
        }
        None => {
            let names = operator::builders::meta::Names(name);
            let secret = secrets.get_opt(&names.secret()).await?.ok_or_else(|| {
                Failure::NotFound(format!("Secret {namespace}/{}", names.secret()))
            })?;
            let (Some(username), Some(password)) = (
                secret_value(&secret, "username"),
                secret_value(&secret, "password"),
            ) else {
                return Err(Failure::NotFound(format!(
                    "username and password in Secret {namespace}/{}",
                    names.secret()
                )));
            };
            let driver = operator::engine::driver_of(&db.spec);
            let port = u16::try_from(driver.port()).map_err(anyhow::Error::from)?;
            operator::users::login_admin(db.spec.engine).connection_uri(
                &username,
                &operator::users::Password::new(password),
                &format!("{}.{namespace}.svc", names.primary()),
                port,
                driver.maintenance_database(),
            )
        }
    };
    if cli.output == Output::Table {
        println!("{uri}");
        Ok(())
    } else {
        print(cli, &json!({ "uri": uri }))
    }
}

fn age(time: &Time) -> String {
    let seconds = jiff::Timestamp::now()
        .duration_since(time.0)
        .as_secs()
        .max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The newest completed backup of each Database, by (namespace, name).
fn last_backups(backups: &[DatabaseBackup]) -> std::collections::BTreeMap<(String, String), Time> {
    let mut last = std::collections::BTreeMap::new();
    for backup in backups {
        let Some(status) = &backup.status else {
            continue;
        };
        let (Some(BackupPhase::Completed), Some(done)) = (status.phase, &status.completion_time)
        else {
            continue;
        };
        let key = (
            backup.namespace().unwrap_or_default(),
            backup.spec.database_ref.name.clone(),
        );
        let newer = last.get(&key).is_none_or(|t: &Time| t.0 < done.0);
        if newer {
            last.insert(key, done.clone());
        }
    }
    last
}

fn print(cli: &Cli, value: &Value) -> Result<(), Failure> {
    let text = match cli.output {
        Output::Json => serde_json::to_string_pretty(value).map_err(anyhow::Error::from)? + "\n",
        Output::Yaml => serde_saphyr::to_string(value).map_err(anyhow::Error::from)?,
        Output::Table => unreachable!("tables are printed by their command"),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// `text` in a colour for its phase when stdout is a terminal.
fn phase_colour(text: &str) -> String {
    if !std::io::stdout().is_terminal() {
        return text.to_owned();
    }
    let code = match text {
        "Running" | "Passed" | "Completed" => "32",
        "Failed" => "31",
        _ => "33",
    };
    format!("\u{1b}[{code}m{text}\u{1b}[0m")
}

/// Rows as aligned columns.
fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

async fn list(cli: &Cli, client: &Client, namespace: &str) -> Result<(), Failure> {
    let (dbs, backups) = if cli.all_namespaces {
        (
            Api::<Database>::all(client.clone()),
            Api::<DatabaseBackup>::all(client.clone()),
        )
    } else {
        (
            Api::<Database>::namespaced(client.clone(), namespace),
            Api::<DatabaseBackup>::namespaced(client.clone(), namespace),
        )
    };
    let dbs = dbs.list(&ListParams::default()).await?.items;
    let last = last_backups(&backups.list(&ListParams::default()).await?.items);
    let entries: Vec<Value> = dbs
        .iter()
        .map(|db| {
            let status = db.status.clone().unwrap_or_default();
            let key = (db.namespace().unwrap_or_default(), db.name_any());
            json!({
                "namespace": key.0,
                "name": key.1,
                "engine": db.spec.engine.as_str(),
                "flavor": db.spec.mysql_flavor().map(|f| format!("{f:?}").to_lowercase()),
                "version": db.spec.version,
                "ready": status.ready_replicas.unwrap_or(0),
                "desired": db.spec.replicas,
                "phase": status.phase.map(|p| format!("{p:?}")),
                "primary": status.endpoints.and_then(|e| e.primary),
                "lastBackup": last.get(&key).map(|t| t.0.to_string()),
                "lastBackupAge": last.get(&key).map(age),
            })
        })
        .collect();
    if cli.output != Output::Table {
        return print(cli, &Value::Array(entries));
    }
    if entries.is_empty() {
        eprintln!("No Databases found.");
        return Ok(());
    }
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "ENGINE",
            "VERSION",
            "READY",
            "PHASE",
            "PRIMARY",
            "LAST BACKUP",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let mut phases = Vec::new();
    for e in &entries {
        let engine = match e["flavor"].as_str() {
            Some(flavor) if flavor != "mysql" => format!("{} ({flavor})", text(&e["engine"])),
            _ => text(&e["engine"]),
        };
        let backup = match (e["lastBackup"].as_str(), e["lastBackupAge"].as_str()) {
            (Some(at), Some(age)) => format!("{at} ({age} ago)"),
            _ => "-".into(),
        };
        phases.push(text(&e["phase"]));
        rows.push(vec![
            text(&e["namespace"]),
            text(&e["name"]),
            engine,
            text(&e["version"]),
            format!("{}/{}", e["ready"], e["desired"]),
            text(&e["phase"]),
            text(&e["primary"]),
            backup,
        ]);
    }
    let mut out = table(&rows);
    for phase in phases {
        // Colour each phase cell once (the table is aligned first).
        out = out.replacen(
            &format!("   {phase}   "),
            &format!("   {}   ", phase_colour(&phase)),
            1,
        );
    }
    print!("{out}");
    Ok(())
}

async fn status(cli: &Cli, client: &Client, namespace: &str, name: &str) -> Result<(), Failure> {
    let db = database(client, namespace, name).await?;
    let backups: Vec<DatabaseBackup> = Api::<DatabaseBackup>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.database_ref.name == name)
        .collect();
    let mut events: Vec<Event> = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=Database,involvedObject.name={name}"
        )))
        .await?
        .items;
    events.sort_by_key(|e| {
        e.last_timestamp
            .clone()
            .or_else(|| e.event_time.as_ref().map(|t| Time(t.0)))
            .map(|t| t.0)
    });
    let selector = format!("app.kubernetes.io/instance={name}");
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let services = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    if cli.output != Output::Table {
        return print(
            cli,
            &json!({
                "database": db,
                "backups": backups,
                "events": events,
                "children": {
                    "statefulSets": statefulsets.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
                    "services": services.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
                    "cronJobs": cronjobs.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
                },
            }),
        );
    }
    let status = db.status.clone().unwrap_or_default();
    let phase = status
        .phase
        .map_or_else(|| "-".to_owned(), |p| format!("{p:?}"));
    let mut out = String::new();
    out.push_str(&format!(
        "Database   {namespace}/{name}\nEngine     {} {}{}\nPhase      {}\nMembers    {}/{} ready\n",
        db.spec.engine.as_str(),
        db.spec.version,
        db.spec
            .mysql_flavor()
            .map(|f| format!(" ({f:?})").to_lowercase())
            .unwrap_or_default(),
        phase_colour(&phase),
        status.ready_replicas.unwrap_or(0),
        db.spec.replicas
    ));
    if let Some(endpoints) = &status.endpoints {
        out.push_str(&format!(
            "Primary    {}\n",
            endpoints.primary.as_deref().unwrap_or("-")
        ));
        if !endpoints.readonly.is_empty() {
            out.push_str(&format!("Read-only  {}\n", endpoints.readonly.join(", ")));
        }
    }
    out.push_str("\nConditions\n");
    let mut rows = vec![
        ["TYPE", "STATUS", "REASON", "MESSAGE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for c in &status.conditions {
        rows.push(vec![
            c.type_.clone(),
            format!("{:?}", c.status),
            c.reason.clone(),
            c.message.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    if let Some(replication) = &status.replication {
        out.push_str(&format!(
            "\nReplication (primary {})\n",
            replication.primary.as_deref().unwrap_or("-")
        ));
        let mut rows = vec![
            ["POD", "ROLE", "STATE", "LAG", "SINCE"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for m in &replication.members {
            rows.push(vec![
                m.pod.clone(),
                m.role.clone(),
                format!("{:?}", m.state),
                m.lag.clone().unwrap_or_else(|| "-".into()),
                m.since.as_ref().map_or_else(|| "-".into(), age),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out.push_str("\nChildren\n");
    for sts in &statefulsets {
        let ready = sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let want = sts.spec.replicas.unwrap_or(0);
        out.push_str(&format!(
            "  StatefulSet {} ({ready}/{want} ready)\n",
            sts.name_any()
        ));
    }
    for svc in &services {
        out.push_str(&format!("  Service {}\n", svc.name_any()));
    }
    for cronjob in &cronjobs {
        let last = cronjob
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map_or_else(
                || "never run".to_owned(),
                |t| format!("last run {} ago", age(t)),
            );
        out.push_str(&format!(
            "  CronJob {} ({}, {last})\n",
            cronjob.name_any(),
            cronjob.spec.schedule.as_str()
        ));
    }
    out.push_str("\nBackups\n");
    if backups.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![
            ["NAME", "PHASE", "COMPLETED", "SIZE", "LOCATION"]
                .map(str::to_owned)
                .to_vec(),
        ];
        let mut backups = backups;
        backups.sort_by_key(|b| b.metadata.creation_timestamp.clone().map(|t| t.0));
        for b in backups.iter().rev().take(5) {
            let s = b.status.clone().unwrap_or_default();
            rows.push(vec![
                b.name_any(),
                s.phase.map_or_else(|| "-".into(), |p| format!("{p:?}")),
                s.completion_time
                    .as_ref()
                    .map_or_else(|| "-".into(), |t| format!("{} ago", age(t))),
                s.size_bytes
                    .map_or_else(|| "-".into(), |b| format!("{b} B")),
                s.location.unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out.push_str("\nRestore drills\n");
    let drills = db
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.verify.as_ref())
        .map(|v| v.schedule.as_str());
    match (drills, &status.backup_verification) {
        (None, None) => out.push_str("  not scheduled (spec.backup.verify)\n"),
        (schedule, last) => {
            out.push_str(&format!("  Schedule   {}\n", schedule.unwrap_or("-")));
            match last {
                None => out.push_str("  Last drill none yet\n"),
                Some(v) => out.push_str(&format!(
                    "  Last drill {} {}, backup {}, job {}: {}\n",
                    phase_colour(&format!("{:?}", v.result)),
                    v.time
                        .as_ref()
                        .map_or_else(|| "-".into(), |t| format!("{} ago", age(t))),
                    v.backup_name.as_deref().unwrap_or("-"),
                    if v.job.is_empty() { "-" } else { &v.job },
                    v.message
                )),
            }
        }
    }
    out.push_str("\nEvents\n");
    if events.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![
            ["AGE", "TYPE", "REASON", "MESSAGE"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for e in events.iter().rev().take(10).rev() {
            let when = e
                .last_timestamp
                .clone()
                .or_else(|| e.event_time.as_ref().map(|t| Time(t.0)));
            rows.push(vec![
                when.as_ref().map_or_else(|| "-".into(), age),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(ns: &str, db: &str, phase: &str, done: Option<&str>) -> DatabaseBackup {
        serde_json::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
            "metadata": {"name": format!("{db}-{phase}-{}", done.unwrap_or("none")), "namespace": ns},
            "spec": {"databaseRef": {"name": db}},
            "status": {"phase": phase, "completionTime": done}
        }))
        .unwrap()
    }

    #[test]
    fn the_last_backup_is_the_newest_completed_one_per_database() {
        let backups = [
            backup("a", "orders", "Completed", Some("2026-11-01T00:00:00Z")),
            backup("a", "orders", "Completed", Some("2026-11-03T00:00:00Z")),
            backup("a", "orders", "Failed", Some("2026-11-04T00:00:00Z")),
            backup("a", "orders", "Running", None),
            backup("b", "orders", "Completed", Some("2026-11-02T00:00:00Z")),
        ];
        let last = last_backups(&backups);
        assert_eq!(last.len(), 2);
        assert_eq!(
            last[&("a".to_owned(), "orders".to_owned())].0.to_string(),
            "2026-11-03T00:00:00Z"
        );
        assert_eq!(
            last[&("b".to_owned(), "orders".to_owned())].0.to_string(),
            "2026-11-02T00:00:00Z"
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["A".to_owned(), "LONGER".to_owned()],
            vec!["wide cell".to_owned(), "x".to_owned()],
        ];
        assert_eq!(table(&rows), "A           LONGER\nwide cell   x\n");
    }
}
