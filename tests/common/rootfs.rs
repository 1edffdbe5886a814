//! A minimal container root filesystem made from the host's `busybox-static`: `/bin/busybox`
//! with a symlink per applet, `/etc/passwd` and `/etc/group` (root and nobody), and the empty
//! directories a container expects. Used as a single overlay lower dir, or packed into an image.

use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Where Debian's `busybox-static` installs the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Fill `dir` (created if missing) with the busybox root filesystem.
pub fn build_busybox_rootfs(dir: &Path) -> io::Result<()> {
    for sub in [
        "bin", "etc", "root", "home", "proc", "sys", "dev", "tmp", "var", "usr/bin", "run",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::copy(HOST_BUSYBOX, dir.join("bin/busybox"))?;
    std::fs::set_permissions(
        dir.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let out = Command::new(HOST_BUSYBOX).arg("--list").output()?;
    if !out.status.success() {
        return Err(io::Error::other("`busybox --list` failed"));
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", dir.join("bin").join(applet))?;
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}
