//! The readiness and liveness probes the StatefulSet gets are real shell
//! commands; run them against real PostgreSQL and MariaDB servers (the same
//! client tools the official images carry) and prove they pass while the
//! server answers and fail once it is gone. MongoDB's probe needs `mongosh`,
//! which no registry here ships, so it is not run.

use database_operator_api::v1::Engine;
use operator::engine::driver;
use testkit::servers::{Mariadb, Postgres};

/// The probe's `sh -c` script, pointed at a test server's port.
fn script(engine: Engine, liveness: bool, port: u16) -> String {
    let d = driver(engine);
    let probe = if liveness {
        d.liveness_probe()
    } else {
        d.readiness_probe()
    };
    let command = probe
        .exec
        .expect("an exec probe")
        .command
        .expect("a command");
    assert_eq!(&command[..2], ["sh", "-c"]);
    command[2].replace(&d.port().to_string(), &port.to_string())
}

fn run(script: &str, path: &std::path::Path, env: &[(&str, &str)]) -> bool {
    let path = format!(
        "{}:{}",
        path.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new("sh")
        .args(["-c", script])
        .env("PATH", path)
        .envs(env.iter().copied())
        .status()
        .expect("running sh")
        .success()
}

#[tokio::test]
async fn postgresql_probes_pass_while_the_server_answers_and_fail_when_it_is_gone() {
    let mut pg = Postgres::start().await.unwrap();
    let env = [("POSTGRES_USER", pg.admin_user().to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bin = pg.bin_dir().to_owned();
    for liveness in [false, true] {
        assert!(
            run(&script(Engine::Postgresql, liveness, pg.port()), &bin, &env),
            "liveness={liveness}"
        );
    }
    pg.stop();
    for liveness in [false, true] {
        assert!(
            !run(&script(Engine::Postgresql, liveness, pg.port()), &bin, &env),
            "liveness={liveness} passed with the server down"
        );
    }
}

#[tokio::test]
async fn mysql_probes_pass_while_the_server_answers_and_fail_when_it_is_gone() {
    let mut maria = Mariadb::start().await.unwrap();
    let bin = maria.bin_dir().to_owned();
    for liveness in [false, true] {
        assert!(
            run(&script(Engine::Mysql, liveness, maria.port()), &bin, &[]),
            "liveness={liveness}"
        );
    }
    maria.stop();
    for liveness in [false, true] {
        assert!(
            !run(&script(Engine::Mysql, liveness, maria.port()), &bin, &[]),
            "liveness={liveness} passed with the server down"
        );
    }
}

/// The `mariadb` flavor's probes (`mariadb-admin`, the name MariaDB 11's
/// image keeps) against a real MariaDB server.
#[tokio::test]
async fn mariadb_probes_pass_while_the_server_answers_and_fail_when_it_is_gone() {
    let mut maria = Mariadb::start().await.unwrap();
    let bin = maria.bin_dir().to_owned();
    let db = testkit::fixtures::mariadb("orders", "11.4", 1);
    let d = operator::engine::driver_of(&db.spec);
    let script = |probe: k8s_openapi::api::core::v1::Probe, port: u16| {
        let command = probe.exec.unwrap().command.unwrap();
        assert!(command[2].contains("mariadb-admin"), "{command:?}");
        command[2].replace(&d.port().to_string(), &port.to_string())
    };
    for probe in [d.readiness_probe(), d.liveness_probe()] {
        assert!(run(&script(probe, maria.port()), &bin, &[]));
    }
    maria.stop();
    for probe in [d.readiness_probe(), d.liveness_probe()] {
        assert!(
            !run(&script(probe, maria.port()), &bin, &[]),
            "passed with the server down"
        );
    }
}
