//! Private registries: a real `docker-registry` with htpasswd (Basic) auth on loopback.
//! Credentials come from a test `config.json` (`DOCKER_CONFIG`), a credential helper script on
//! PATH, or `berth login --password-stdin`; images go up with `berth push` and come back with
//! `berth pull` into a fresh data root, and the Docker CLI pulls and pushes through berth's
//! socket (it sends `X-Registry-Auth`).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::engine::{berth_exe, TestEngine};
use common::registry::{TarBuilder, TestRegistry};

const USER: &str = "ann";
const PASSWORD: &str = "berth-test-pw";
/// bcrypt (the only scheme docker-registry's htpasswd accepts) of PASSWORD, cost 5. Made with
/// Python's `crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))`: no
/// `htpasswd` binary (apache2-utils) is installed here, and a fixed hash needs no new
/// dev-dependency.
const BCRYPT: &str = "$2b$05$JolplsNrQ7SV.nLkbigYdOM6I78hgC2n7FenrBXccyjLmUsz/OFjm";

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registry that wants `USER`/`PASSWORD` for everything.
fn auth_registry(dir: &Path) -> TestRegistry {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("{USER}:{BCRYPT}\n")).unwrap();
    TestRegistry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        htpasswd.display()
    ))
}

/// Where `berth` and `docker` run for one test: a docker config dir, a bin dir for helpers and a
/// compose project naming `image`.
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new(image: &str) -> Client {
        let dir = tempfile::Builder::new()
            .prefix("berth-auth-")
            .tempdir()
            .unwrap();
        for d in ["docker", "bin", "project"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(
            dir.path().join("project/compose.yaml"),
            format!("services:\n  app:\n    image: {image}\n"),
        )
        .unwrap();
        Client { dir }
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    fn write_config(&self, json: &serde_json::Value) {
        std::fs::write(self.config_dir().join("config.json"), json.to_string()).unwrap();
    }

    fn config(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.config_dir().join("config.json")).unwrap())
            .unwrap()
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `berth ARGS` against `engine`, in the project directory, with `stdin` as its input.
    fn berth(&self, engine: &TestEngine, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(berth_exe())
            .args(args)
            .current_dir(self.dir.path().join("project"))
            .env("BERTH_DATA_ROOT", engine.data_root())
            .env("BERTH_RUN_ROOT", engine.run_root())
            .env("DOCKER_CONFIG", self.config_dir())
            .env("PATH", self.path_env())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, engine: &TestEngine, args: &[&str], stdin: &str) -> String {
        let out = self.berth(engine, args, stdin);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "berth {args:?} failed:\n{text}");
        text
    }

    fn fails(&self, engine: &TestEngine, args: &[&str], stdin: &str) -> String {
        let out = self.berth(engine, args, stdin);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "berth {args:?} succeeded:\n{text}");
        text
    }

    /// The Docker CLI through `engine`'s socket, with this client's docker config.
    fn docker(&self, engine: &TestEngine, args: &[&str]) -> Output {
        Command::new(common::precondition::tool("docker"))
            .arg("-H")
            .arg(engine.docker_host())
            .args(args)
            .env("DOCKER_CONFIG", self.config_dir())
            .env("PATH", self.path_env())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A one-file root filesystem tar, imported into `engine` as `image`.
    fn import(&self, engine: &TestEngine, image: &str, content: &[u8]) {
        let tar = TarBuilder::new().file("data", 0o644, content).finish();
        let path = self.dir.path().join("rootfs.tar");
        std::fs::write(&path, tar).unwrap();
        self.ok(engine, &["import", path.to_str().unwrap(), image], "");
    }
}

fn inspect(engine: &TestEngine, image: &str) -> berth::engine::wire::ImageInspect {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(engine.client().inspect_image(image))
        .unwrap_or_else(|e| panic!("inspect {image}: {e}"))
}

fn repo_digest(engine: &TestEngine, image: &str) -> String {
    let inspect = inspect(engine, image);
    inspect
        .repo_digests
        .iter()
        .find_map(|d| d.split_once('@').map(|(_, dg)| dg.to_string()))
        .unwrap_or_else(|| panic!("{image} has no repo digest: {:?}", inspect.repo_digests))
}

/// "app:1: digest: sha256:… size: N" → the digest.
fn pushed_digest(output: &str) -> String {
    output
        .split("digest: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in push output:\n{output}"))
        .to_string()
}

#[test]
fn push_with_config_json_credentials_then_pull_into_a_fresh_data_root_gives_the_same_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = auth_registry(tmp.path());
    let image = format!("{}/team/app:1", reg.host());
    let client = Client::new(&image);
    client.write_config(&serde_json::json!({
        "auths": {reg.host(): {"auth": b64(&format!("{USER}:{PASSWORD}"))}}
    }));
    let a = TestEngine::start();
    // Random content does not compress: the 20 MiB layer goes up in chunks (PATCH).
    let big: Vec<u8> = (0..20 << 20).map(|_| rand::random::<u8>()).collect();
    client.import(&a, &image, &big);

    let out = client.ok(&a, &["push"], "");
    let digest = pushed_digest(&out);
    assert!(out.contains("Pushed"), "{out}");
    let again = client.ok(&a, &["push"], "");
    assert!(again.contains("Layer already exists"), "{again}");
    assert_eq!(pushed_digest(&again), digest);

    let b = TestEngine::start();
    client.ok(&b, &["pull"], "");
    assert_eq!(repo_digest(&b, &image), digest);
    assert_eq!(
        inspect(&b, &image).id,
        inspect(&a, &image).id,
        "same image config on both sides"
    );

    // A tag of the pulled image in another repository of the same registry: its layer is
    // mounted across repositories rather than uploaded again.
    let copy = format!("{}/team/copy:1", reg.host());
    let tagged = client.docker(&b, &["tag", &image, &copy]);
    assert!(tagged.status.success(), "{tagged:?}");
    let out = String::from_utf8_lossy(&client.docker(&b, &["push", &copy]).stdout).into_owned();
    assert!(out.contains("Mounted from team/app"), "{out}");
}

#[test]
fn login_with_password_stdin_then_pull_and_logout_and_a_wrong_password_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = auth_registry(tmp.path());
    let image = format!("{}/team/login:1", reg.host());
    let client = Client::new(&image);
    let engine = TestEngine::start();
    let host = reg.host();

    let wrong = client.fails(
        &engine,
        &["login", "-u", USER, "--password-stdin", &host],
        "not-the-password\n",
    );
    assert!(
        wrong.contains("401 Unauthorized") && wrong.contains(&host),
        "{wrong}"
    );
    assert!(!client.config_dir().join("config.json").exists());

    // Without a login the push is refused and says how to log in.
    client.import(&engine, &image, b"logged in");
    let anonymous = client.fails(&engine, &["push"], "");
    assert!(
        anonymous.contains("401 Unauthorized") && anonymous.contains("berth login"),
        "{anonymous}"
    );

    let out = client.ok(
        &engine,
        &["login", "-u", USER, "--password-stdin", &host],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    let file = client.config_dir().join("config.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        client.config()["auths"][&host]["auth"],
        b64(&format!("{USER}:{PASSWORD}"))
    );
    let digest = pushed_digest(&client.ok(&engine, &["push"], ""));

    let fresh = TestEngine::start();
    client.ok(&fresh, &["pull"], "");
    assert_eq!(repo_digest(&fresh, &image), digest);

    // A missing image and an unreachable host are told apart from an auth failure.
    let missing = format!("{host}/team/nope:1");
    std::fs::write(
        client.dir.path().join("project/compose.yaml"),
        format!("services:\n  app:\n    image: {missing}\n"),
    )
    .unwrap();
    let e = client.fails(&fresh, &["pull"], "");
    assert!(
        e.contains("not found on registry") && e.contains(&host),
        "{e}"
    );

    let out = client.ok(&engine, &["logout", &host], "");
    assert!(out.contains("Removing login credentials"), "{out}");
    assert!(client.config()["auths"].get(&host).is_none());
    std::fs::write(
        client.dir.path().join("project/compose.yaml"),
        format!("services:\n  app:\n    image: {image}\n"),
    )
    .unwrap();
    let third = TestEngine::start();
    let e = client.fails(&third, &["pull"], "");
    assert!(e.contains("401 Unauthorized") && e.contains(&host), "{e}");

    // `docker login` through berth's socket: the engine checks the credentials (POST /auth).
    let bad = client.docker(&engine, &["login", "-u", USER, "-p", "wrong", &host]);
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && text.contains("401 Unauthorized"),
        "{text}"
    );
    let good = client.docker(&engine, &["login", "-u", USER, "-p", PASSWORD, &host]);
    assert!(good.status.success(), "docker login: {good:?}");
    assert_eq!(
        client.config()["auths"][&host]["auth"],
        b64(&format!("{USER}:{PASSWORD}"))
    );

    // -p works too, with docker's warning.
    let out = client.ok(&engine, &["login", "-u", USER, "-p", PASSWORD, &host], "");
    assert!(
        out.contains("WARNING! Using --password via the CLI is insecure"),
        "{out}"
    );
}

/// A `docker-credential-berthtest` helper keeping one credential in a file, logging its calls.
fn install_helper(client: &Client) -> PathBuf {
    let store = client.dir.path().join("helper-store.json");
    let log = client.dir.path().join("helper.log");
    let script = format!(
        "#!/bin/sh\nin=$(cat)\necho \"$1 $in\" >> {log}\ncase \"$1\" in\n\
         get) if [ -f {store} ] && grep -q \"$in\" {store}; then cat {store}; \
         else echo 'credentials not found in native keychain'; exit 1; fi ;;\n\
         store) printf '%s' \"$in\" > {store} ;;\n\
         erase) if [ -f {store} ]; then rm {store}; \
         else echo 'credentials not found in native keychain'; exit 1; fi ;;\n\
         esac\n",
        log = log.display(),
        store = store.display()
    );
    let path = client.dir.path().join("bin/docker-credential-berthtest");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    store
}

#[test]
fn credentials_from_a_helper_on_path_and_the_docker_cli_through_berths_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = auth_registry(tmp.path());
    let host = reg.host();
    let image = format!("{host}/team/helper:1");
    let client = Client::new(&image);
    let store = install_helper(&client);
    client.write_config(&serde_json::json!({"credHelpers": {host.clone(): "berthtest"}}));
    let engine = TestEngine::start();

    client.ok(
        &engine,
        &["login", "-u", USER, "--password-stdin", &host],
        PASSWORD,
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert_eq!(stored["Secret"], PASSWORD);
    assert_eq!(stored["ServerURL"], host.as_str());
    let config = client.config();
    assert!(
        config["auths"][&host].get("auth").is_none(),
        "the password is in the helper, not the file: {config}"
    );

    client.import(&engine, &image, b"from a helper");
    let digest = pushed_digest(&client.ok(&engine, &["push"], ""));

    // The Docker CLI resolves the helper itself and sends X-Registry-Auth to berth.
    let fresh = TestEngine::start();
    let out = client.docker(&fresh, &["pull", &image]);
    assert!(out.status.success(), "docker pull: {out:?}");
    assert_eq!(repo_digest(&fresh, &image), digest);
    let other = format!("{host}/team/helper:2");
    assert!(client
        .docker(&fresh, &["tag", &image, &other])
        .status
        .success());
    let out = client.docker(&fresh, &["push", &other]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&digest),
        "docker push: {out:?}"
    );

    // After logout the helper holds nothing and the registry refuses berth again.
    client.ok(&engine, &["logout", &host], "");
    assert!(!store.exists());
    let out = client.docker(&TestEngine::start(), &["pull", &image]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("401 Unauthorized"),
        "{text}"
    );
}
