//! Watch mode end to end (issue 10): `berth watch` on a project built from a busybox image,
//! edits made on the host and read back INSIDE the running container through `berth exec`:
//! edit, delete, rename, ignored files and `.git/` never arriving, a 1,000-file change arriving
//! complete, `sync+exec` running after its files are in place, a rebuild path giving a new image
//! and a new container with the same volume data, and neither a host symlink leading out of the
//! watched tree nor a container symlink at a target (to `/`) being followed (checked on the
//! host's files).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::project::TestProject;

const BUSYBOX: &str = "berth-test/busybox:watch";
const WAIT: Duration = Duration::from_secs(20);

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `berth watch` running in the background, its stderr in a file; interrupted on drop (by PID).
struct WatchProcess {
    child: Child,
    log: PathBuf,
}

impl WatchProcess {
    fn start(project: &TestProject, args: &[&str]) -> WatchProcess {
        let log = project.roots.path().join("watch.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["-p", &project.name])
            .args(args)
            .current_dir(project.dir.path())
            .env("BERTH_DATA_ROOT", project.data_root())
            .env("BERTH_RUN_ROOT", project.run_root())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn berth watch");
        let watch = WatchProcess { child, log };
        watch.wait_for(project, "Watch enabled", Duration::from_secs(120));
        watch
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, project: &TestProject, needle: &str, timeout: Duration) {
        let seen = project.eventually(timeout, || self.text().contains(needle).then_some(()));
        assert!(
            seen.is_some(),
            "berth watch never printed {needle:?}:\n{}",
            self.text()
        );
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// `sh -c SCRIPT` in the service's container: (success, stdout).
fn in_container(project: &TestProject, script: &str) -> (bool, String) {
    let out = project.berth(&["exec", "-T", "web", "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn until(project: &TestProject, what: &str, script: &str, want: &str, watch: &WatchProcess) {
    let got = project.eventually(WAIT, || {
        let (_, out) = in_container(project, script);
        (out == want).then_some(())
    });
    assert!(
        got.is_some(),
        "{what}: `{script}` never printed {want:?} (last: {:?})\nwatch log:\n{}",
        in_container(project, script),
        watch.text()
    );
}

fn watch_project() -> TestProject {
    let project = TestProject::new("wat", "services: {}\n");
    let mark = project.name.clone();
    project.write_compose(&format!(
        r#"services:
  web:
    build: ./web
    user: nobody
    command: [sleep, "600"]
    # sleep as PID 1 ignores SIGTERM: without a short grace period every stop waits 10 s.
    stop_grace_period: 1s
    environment:
      BERTH_TEST_MARK: {mark}
    volumes:
      - data:/data
    develop:
      watch:
        - action: sync
          path: ./web/src
          target: /app/src
          ignore: ["*.tmp"]
        - action: sync+exec
          path: ./web/cfg
          target: /app/cfg
          exec:
            command: sh -c "cat /app/cfg/c.conf > /app/exec-saw.txt"
        - action: sync
          path: ./web/evil
          target: /evil/inside
        - action: sync
          path: ./web/seed
          target: /app/seed
          initial_sync: true
        - action: sync+restart
          path: ./web/conf
          target: /app/conf
        - action: rebuild
          path: ./web/Dockerfile
  dep:
    image: {BUSYBOX}
    command: [sleep, "600"]
    stop_grace_period: 1s
    environment:
      BERTH_TEST_MARK: {mark}
    depends_on:
      web:
        condition: service_started
        restart: true
volumes:
  data: {{}}
"#
    ));
    let dir = project.dir.path();
    write(
        dir,
        "web/Dockerfile",
        &format!("FROM {BUSYBOX}\nRUN ln -s / /evil && echo v1 > /version\n"),
    );
    write(dir, "web/src/keep.txt", "kept\n");
    write(dir, "web/cfg/.keep", "");
    write(dir, "web/evil/.keep", "");
    write(dir, "web/conf/.keep", "");
    write(dir, "web/seed/deep/s.txt", "seeded");
    project.import_busybox(BUSYBOX);
    project
}

#[test]
fn synced_changes_arrive_inside_the_running_container() {
    let project = watch_project();
    let dir = project.dir.path().to_path_buf();
    let watch = WatchProcess::start(&project, &["watch"]);

    write(&dir, "web/src/a.txt", "one");
    until(&project, "edit", "cat /app/src/a.txt", "one", &watch);
    write(&dir, "web/src/a.txt", "two");
    until(&project, "second edit", "cat /app/src/a.txt", "two", &watch);
    // Owned by the container's user, as docker compose's copy leaves them.
    until(
        &project,
        "owner",
        "stat -c %u /app/src/a.txt",
        "65534",
        &watch,
    );

    std::fs::rename(dir.join("web/src/a.txt"), dir.join("web/src/b.txt")).unwrap();
    until(
        &project,
        "rename",
        "cat /app/src/b.txt; test -e /app/src/a.txt && echo still-there",
        "two",
        &watch,
    );
    std::fs::remove_file(dir.join("web/src/b.txt")).unwrap();
    until(&project, "delete", "ls /app/src", "", &watch);

    // Ignored and VCS files are written first; once a later file has arrived they would have.
    write(&dir, "web/src/scratch.tmp", "no");
    write(&dir, "web/src/.git/HEAD", "ref: refs/heads/main");
    write(&dir, "web/src/.notes.swp", "vim");
    write(&dir, "web/src/marker.txt", "m");
    until(&project, "marker", "cat /app/src/marker.txt", "m", &watch);
    until(
        &project,
        "ignored files stay out",
        "ls -a /app/src | tr '\\n' ' '",
        ". .. marker.txt",
        &watch,
    );

    // A new directory of 1,000 files (as a checkout writes them) arrives complete.
    for i in 0..1000 {
        write(
            &dir,
            &format!("web/src/many/sub{}/f{i}.txt", i % 10),
            &i.to_string(),
        );
    }
    until(
        &project,
        "1,000 files",
        "find /app/src/many -type f | wc -l; cat /app/src/many/sub9/f999.txt",
        "1000\n999",
        &watch,
    );
}

#[test]
fn sync_exec_runs_after_the_files_and_symlinks_are_not_followed() {
    let project = watch_project();
    let dir = project.dir.path().to_path_buf();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    let watch = WatchProcess::start(&project, &["watch"]);

    write(&dir, "web/cfg/c.conf", "config v1");
    until(
        &project,
        "sync+exec",
        "cat /app/exec-saw.txt",
        "config v1",
        &watch,
    );
    write(&dir, "web/cfg/c.conf", "config v2");
    until(
        &project,
        "sync+exec again",
        "cat /app/exec-saw.txt",
        "config v2",
        &watch,
    );

    // A host symlink out of the watched tree goes in as a symlink: the host file is never read.
    std::os::unix::fs::symlink(&secret, dir.join("web/src/leak")).unwrap();
    let link = secret.display().to_string();
    until(&project, "symlink", "readlink /app/src/leak", &link, &watch);
    let (read, text) = in_container(&project, "cat /app/src/leak");
    assert!(!read && !text.contains("host secret"), "{text}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");

    // The image's /evil is a symlink to `/`: syncing under it is refused, nothing is written
    // through it, on the host least of all.
    write(&dir, "web/evil/pwned.txt", "pwned");
    watch.wait_for(&project, "is a symlink in the container", WAIT);
    assert!(
        !Path::new("/inside").exists(),
        "the host's / gained /inside"
    );
    let (_, listed) = in_container(&project, "ls /inside 2>&1; cat /evil/inside/pwned.txt");
    assert!(!listed.contains("pwned"), "{listed}");
}

#[test]
fn a_rebuild_path_gives_a_new_image_and_container_with_the_same_volume_and_prunes_the_old() {
    let project = watch_project();
    let dir = project.dir.path().to_path_buf();
    let watch = WatchProcess::start(&project, &["watch", "--prune"]);
    let id_before = project.ok(&["ps", "-q", "web"]).trim().to_string();
    let image_before = project
        .docker(&["inspect", "-f", "{{.Image}}", &id_before])
        .trim()
        .to_string();
    // A dependant that asked to be restarted with web (`depends_on.web.restart: true`).
    project.ok(&["up", "-d", "dep"]);
    let dep = project.ok(&["ps", "-q", "dep"]).trim().to_string();
    let dep_started = || {
        project
            .docker(&["inspect", "-f", "{{.State.StartedAt}}", &dep])
            .trim()
            .to_string()
    };
    let dep_before = dep_started();
    let out = project.berth(&[
        "exec",
        "-T",
        "-u",
        "root",
        "web",
        "sh",
        "-c",
        "echo saved > /data/keep",
    ]);
    assert!(out.status.success());

    // A broken Dockerfile: the build fails, the old container keeps running.
    write(
        &dir,
        "web/Dockerfile",
        &format!("FROM {BUSYBOX}\nRUN exit 3\n"),
    );
    watch.wait_for(&project, "Build failed", Duration::from_secs(60));
    assert_eq!(project.ok(&["ps", "-q", "web"]).trim(), id_before);
    assert_eq!(in_container(&project, "cat /version").1, "v1");

    write(
        &dir,
        "web/Dockerfile",
        &format!("FROM {BUSYBOX}\nRUN ln -s / /evil && echo v2 > /version\n"),
    );
    until(&project, "rebuilt image", "cat /version", "v2", &watch);
    let id_after = project.ok(&["ps", "-q", "web"]).trim().to_string();
    assert!(
        !id_after.is_empty() && id_after != id_before,
        "{id_before} → {id_after}"
    );
    assert_eq!(in_container(&project, "cat /data/keep").1, "saved");
    watch.wait_for(&project, "successfully built", WAIT);
    let restarted = project.eventually(WAIT, || (dep_started() != dep_before).then_some(()));
    assert!(
        restarted.is_some(),
        "dep was not restarted:\n{}",
        watch.text()
    );
    assert_eq!(
        project.ok(&["ps", "-q", "dep"]).trim(),
        dep,
        "dep restarted in place"
    );
    // --prune: the previous image, left without a name, is gone.
    watch.wait_for(&project, "Pruned image", WAIT);
    let listed = project.docker(&["images", "-q", "--no-trunc"]);
    assert!(
        !listed.contains(&image_before),
        "{image_before} still listed:\n{listed}"
    );
}

#[test]
fn up_watch_interleaves_logs_and_watch_events_and_ctrl_c_stops_the_stack() {
    let project = watch_project();
    let dir = project.dir.path().to_path_buf();
    let compose = std::fs::read_to_string(dir.join("compose.yaml")).unwrap();
    // The service prints what it reads, so its log shows the synced file.
    project.write_compose(&compose.replacen(
        r#"command: [sleep, "600"]"#,
        r#"command: [sh, -c, "while true; do cat /app/src/msg.txt 2>/dev/null; cat /version; sleep 0.2; done"]"#,
        1,
    ));
    let log = project.roots.path().join("up.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-p", &project.name, "up", "--watch"])
        .current_dir(&dir)
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .env("NO_COLOR", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let seen = |needle: &str, timeout: Duration| {
        let found = project.eventually(timeout, || text().contains(needle).then_some(()));
        assert!(found.is_some(), "never saw {needle:?}:\n{}", text());
    };
    seen("Watch enabled", Duration::from_secs(120));
    write(&dir, "web/src/msg.txt", "hello from the host\n");
    seen(
        "Syncing service \"web\" after 1 changes were detected",
        WAIT,
    );
    seen("web-1 | hello from the host", WAIT);

    // A rebuild recreates the container; the attached run follows the new one.
    write(
        &dir,
        "web/Dockerfile",
        &format!("FROM {BUSYBOX}\nRUN ln -s / /evil && echo v2 > /version\n"),
    );
    seen("web-1 | v2", Duration::from_secs(60));
    // The rebuild ends by restarting web's `restart: true` dependant; Ctrl-C after that.
    seen("service(s) [\"dep\"] restarted", WAIT);
    // Recreating web alone does not take the project's other services for orphans.
    assert!(!text().contains("orphan"), "{}", text());

    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = project
        .eventually(Duration::from_secs(30), || child.try_wait().unwrap())
        .expect("up --watch ends after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{}", text());
    assert_eq!(project.ok(&["ps", "-q"]).trim(), "", "{}", text());
}

#[test]
fn initial_sync_and_sync_restart() {
    let project = watch_project();
    let dir = project.dir.path().to_path_buf();
    let watch = WatchProcess::start(&project, &["watch"]);
    let id = project.ok(&["ps", "-q", "web"]).trim().to_string();
    let started = |project: &TestProject| {
        project
            .docker(&["inspect", "-f", "{{.State.StartedAt}}", &id])
            .trim()
            .to_string()
    };
    let before = started(&project);
    // initial_sync: the rule's whole tree is in before any change.
    until(
        &project,
        "initial sync",
        "cat /app/seed/deep/s.txt",
        "seeded",
        &watch,
    );
    write(&dir, "web/conf/app.ini", "mode=fast");
    watch.wait_for(&project, "restarted", WAIT);
    until(
        &project,
        "synced before restart",
        "cat /app/conf/app.ini",
        "mode=fast",
        &watch,
    );
    assert_ne!(started(&project), before, "the container was not restarted");
    // The same container, restarted in place (not recreated).
    assert_eq!(project.ok(&["ps", "-q", "web"]).trim(), id);
}

/// Rule paths that do not exist when watching starts: one whose parent exists, one two levels
/// below a missing directory. Once they appear as directories, files created below them —
/// in subdirectories made later, and after the first sync — all arrive.
#[test]
fn rule_paths_created_after_watching_starts_are_watched_recursively() {
    let project = TestProject::new("watlate", "services: {}\n");
    project.write_compose(&format!(
        r#"services:
  web:
    image: {BUSYBOX}
    command: [sleep, "600"]
    environment:
      BERTH_TEST_MARK: {mark}
    develop:
      watch:
        - action: sync
          path: ./later
          target: /app/later
        - action: sync
          path: ./gen/out
          target: /app/gen
"#,
        mark = project.name
    ));
    project.import_busybox(BUSYBOX);
    let dir = project.dir.path().to_path_buf();
    let watch = WatchProcess::start(&project, &["watch"]);

    // The directory and a file in a new subdirectory in one go, as `mkdir -p && cp` does.
    write(&dir, "later/sub/deeper/first.txt", "1");
    until(
        &project,
        "first file below the new directory",
        "cat /app/later/sub/deeper/first.txt",
        "1",
        &watch,
    );
    // Later files, in the same new subdirectory and in another one made afterwards.
    write(&dir, "later/sub/deeper/second.txt", "2");
    write(&dir, "later/other/third.txt", "3");
    until(
        &project,
        "files created later below it",
        "cat /app/later/sub/deeper/second.txt /app/later/other/third.txt",
        "23",
        &watch,
    );

    write(&dir, "gen/out/js/app.js", "js");
    until(
        &project,
        "nested rule path",
        "cat /app/gen/js/app.js",
        "js",
        &watch,
    );
    write(&dir, "gen/out/js/more.js", "more");
    until(
        &project,
        "a later file in the nested rule path",
        "cat /app/gen/js/more.js",
        "more",
        &watch,
    );
}
