//! Which devices a container may use: Docker's device cgroup policy (deny everything, allow its
//! short list), the host devices a `devices:` entry passes in, and how the rules reach the
//! kernel — the allow/deny files of a v1 `devices` hierarchy, or on cgroup v2 a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the container's cgroup (as runc's
//! `devicefilter` and crun build it).
//!
//! Without these rules root in a container can `mknod` the host's disks and use them, and an
//! image layer can ship a world-readable block device; the device cgroup is what stops both.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("invalid device permissions {0:?}: use a combination of r, w and m")]
    BadPermissions(String),
    #[error("error gathering device information while adding custom device {path:?}: {source}")]
    HostStat {
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error(
        "error gathering device information while adding custom device {0:?}: \
         not a device node (need a character or block device on the host)"
    )]
    NotADevice(String),
    #[error("invalid device path {0:?} in the container: must be absolute and without '..'")]
    BadContainerPath(String),
    #[error("cannot write device rule {line:?} to {}: {source}", file.display())]
    V1Write {
        file: PathBuf,
        line: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot load the device filter (BPF_PROG_LOAD): {source}{log}")]
    BpfLoad {
        #[source]
        source: io::Error,
        log: String,
    },
    #[error("cannot attach the device filter to cgroup {}: {source}", dir.display())]
    BpfAttach {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, DeviceError>;

/// Device class as the cgroup rules name it (`a` all, `c` char, `b` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    All,
    Char,
    Block,
}

/// Access bits, as the cgroup v2 device context carries them (`BPF_DEVCG_ACC_*`).
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One device cgroup rule (`c 1:3 rwm`); `None` major or minor is the wildcard `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Subset of `ACC_*`.
    pub access: u32,
}

impl DeviceRule {
    fn new(
        allow: bool,
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: u32,
    ) -> Self {
        Self {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    /// The v1 rule text (`c 1:3 rwm`, `a`).
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            DeviceKind::All => return "a".into(),
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        format!(
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            access_text(self.access)
        )
    }
}

fn access_text(access: u32) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// Parse Docker's `CgroupPermissions` (`rwm`, `r`, …); empty means `rwm`.
pub fn parse_permissions(text: &str) -> Result<u32> {
    if text.is_empty() {
        return Ok(ACC_ALL);
    }
    let mut access = 0;
    for c in text.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(DeviceError::BadPermissions(text.to_string())),
        };
    }
    Ok(access)
}

/// Docker's default policy (moby `oci_linux.go` plus runc's `AllowedDevices`): deny all; `mknod`
/// of any char or block device (useless without read/write); null, zero, full, random,
/// urandom, tty, console, ptmx, the pts slaves and tun; fuse explicitly denied. Rules are
/// applied in order, later ones win.
pub fn default_rules() -> Vec<DeviceRule> {
    use DeviceKind::{All, Block, Char};
    let mut rules = vec![
        DeviceRule::new(false, All, None, None, ACC_ALL),
        DeviceRule::new(true, Char, None, None, ACC_MKNOD),
        DeviceRule::new(true, Block, None, None, ACC_MKNOD),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(DeviceRule::new(
            true,
            Char,
            Some(major),
            Some(minor),
            ACC_ALL,
        ));
    }
    rules.push(DeviceRule::new(true, Char, Some(136), None, ACC_ALL));
    rules.push(DeviceRule::new(true, Char, Some(10), Some(200), ACC_ALL));
    rules.push(DeviceRule::new(false, Char, Some(10), Some(229), ACC_ALL));
    rules
}

/// The rules of a container: everything for `--privileged`, else the defaults plus an allow
/// rule per `devices:` entry (after the defaults, so `/dev/fuse` passed in is usable).
pub fn container_rules(privileged: bool, nodes: &[DeviceNode]) -> Vec<DeviceRule> {
    if privileged {
        return vec![DeviceRule::new(true, DeviceKind::All, None, None, ACC_ALL)];
    }
    let mut rules = default_rules();
    rules.extend(
        nodes
            .iter()
            .map(|n| DeviceRule::new(true, n.kind, Some(n.major), Some(n.minor), n.access)),
    );
    rules
}

/// A host device passed into the container (`devices:`), resolved by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Absolute path in the container.
    pub path: String,
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// Permission bits of the host's node (Docker copies them).
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `ACC_*` bits the cgroup allows.
    pub access: u32,
}

/// Resolve one `HostConfig.Devices` entry on the host: `stat` (following links, once) must
/// find a character or block device; its numbers, mode and owner are what the container gets.
pub fn resolve_host_device(
    path_on_host: &str,
    path_in_container: &str,
    permissions: &str,
) -> Result<DeviceNode> {
    let access = parse_permissions(permissions)?;
    let dest = if path_in_container.is_empty() {
        path_on_host
    } else {
        path_in_container
    };
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") || dest == "/" {
        return Err(DeviceError::BadContainerPath(dest.to_string()));
    }
    let st =
        nix::sys::stat::stat(Path::new(path_on_host)).map_err(|source| DeviceError::HostStat {
            path: path_on_host.to_string(),
            source,
        })?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => DeviceKind::Char,
        libc::S_IFBLK => DeviceKind::Block,
        _ => return Err(DeviceError::NotADevice(path_on_host.to_string())),
    };
    Ok(DeviceNode {
        path: dest.to_string(),
        kind,
        major: libc::major(st.st_rdev),
        minor: libc::minor(st.st_rdev),
        file_mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        access,
    })
}

/// Write `rules` to a v1 `devices` cgroup directory (allow rules to `devices.allow`, deny rules
/// to `devices.deny`), in order.
pub fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    for rule in rules {
        let file = dir.join(if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        });
        let line = rule.v1_line();
        std::fs::write(&file, &line).map_err(|source| DeviceError::V1Write {
            file,
            line,
            source,
        })?;
    }
    Ok(())
}

// ---- cgroup v2: the BPF device filter ----

/// One eBPF instruction, as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn bytes(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.src << 4) | (self.dst & 0xf),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }
}

// Opcodes used (class | op | source).
pub const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
pub const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
pub const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
pub const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn op(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// `BPF_DEVCG_DEV_*` numbers of the device context.
fn kind_number(kind: DeviceKind) -> Option<i32> {
    match kind {
        DeviceKind::All => None,
        DeviceKind::Block => Some(1),
        DeviceKind::Char => Some(2),
    }
}

/// The filter program for `rules` (later rules win, as in v1). The context
/// (`struct bpf_cgroup_dev_ctx`) is loaded into r2 = device type, r3 = requested access,
/// r4 = major, r5 = minor; each rule is one block that returns its verdict when it matches and
/// jumps past itself otherwise; the rules are emitted last first, and an unmatched request is
/// denied. A rule matching everything ends the program (the verifier refuses dead code).
pub fn filter_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        op(LDX_W, 2, 1, 0, 0),
        op(AND32_K, 2, 0, 0, 0xffff),
        op(LDX_W, 3, 1, 0, 0),
        op(RSH32_K, 3, 0, 0, 16),
        op(LDX_W, 4, 1, 4, 0),
        op(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Conditions as (compare register, value); `None` = no instruction.
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        if let Some(kind) = kind_number(rule.kind) {
            checks.push(vec![op(JNE_K, 2, 0, 0, kind)]);
        }
        if rule.access & ACC_ALL != ACC_ALL {
            // Every requested bit must be in the rule: (access & !rule) == 0.
            checks.push(vec![
                op(MOV32_X, 1, 3, 0, 0),
                op(AND32_K, 1, 0, 0, (!rule.access & ACC_ALL) as i32),
                op(JNE_K, 1, 0, 0, 0),
            ]);
        }
        if let Some(major) = rule.major.filter(|_| rule.kind != DeviceKind::All) {
            checks.push(vec![op(JNE_K, 4, 0, 0, major as i32)]);
        }
        if let Some(minor) = rule.minor.filter(|_| rule.kind != DeviceKind::All) {
            checks.push(vec![op(JNE_K, 5, 0, 0, minor as i32)]);
        }
        let verdict = [
            op(MOV32_K, 0, 0, 0, rule.allow as i32),
            op(EXIT, 0, 0, 0, 0),
        ];
        let unconditional = checks.is_empty();
        let mut block: Vec<Insn> = checks.into_iter().flatten().collect();
        let len = block.len() + verdict.len();
        // Each jump skips to the end of the block.
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.code == JNE_K {
                insn.off = (len - i - 1) as i16;
            }
        }
        block.extend(verdict);
        prog.extend(block);
        if unconditional {
            return prog;
        }
    }
    prog.extend([op(MOV32_K, 0, 0, 0, 0), op(EXIT, 0, 0, 0, 0)]);
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<i64> {
    // SAFETY: attr is a live, fully initialised `repr(C)` struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Load the filter for `rules`; on failure retried once with the verifier's log in the error.
pub fn load_filter(rules: &[DeviceRule]) -> Result<OwnedFd> {
    let code: Vec<u8> = filter_program(rules).iter().flat_map(Insn::bytes).collect();
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (code.len() / 8) as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let first = match bpf(BPF_PROG_LOAD, &attr) {
        // SAFETY: BPF_PROG_LOAD returns a new fd that nothing else owns.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => e,
    };
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let _ = bpf(BPF_PROG_LOAD, &attr);
    let text = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)])
        .trim()
        .to_string();
    Err(DeviceError::BpfLoad {
        source: first,
        log: if text.is_empty() {
            String::new()
        } else {
            format!(" (verifier: {text})")
        },
    })
}

/// Load the filter for `rules` and attach it to the cgroup2 directory `dir`. The cgroup keeps
/// the program alive after the fd is closed, until the cgroup is removed.
pub fn apply_v2(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let prog = load_filter(rules)?;
    let attach_err = |source| DeviceError::BpfAttach {
        dir: dir.to_path_buf(),
        source,
    };
    let cgroup = std::fs::File::open(dir).map_err(attach_err)?;
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        // Ancestors' filters (systemd's) still apply; every attached filter must allow.
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &attr).map_err(attach_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference interpreter for the instructions [`filter_program`] emits, so the program's
    /// verdicts are checked without the kernel; the kernel test below checks the kernel agrees.
    fn run(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    reg[d] = ctx[i.off as usize / 4] as u64;
                }
                AND32_K => reg[d] = (reg[d] as u32 & i.imm as u32) as u64,
                RSH32_K => reg[d] = ((reg[d] as u32) >> i.imm) as u64,
                MOV32_K => reg[d] = i.imm as u32 as u64,
                MOV32_X => reg[d] = reg[s] as u32 as u64,
                JNE_K => {
                    if reg[d] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return reg[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;

    #[test]
    fn default_filter_allows_dockers_list_and_nothing_else() {
        let prog = filter_program(&default_rules());
        let rw = ACC_READ | ACC_WRITE;
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (136, 7),
            (10, 200),
        ] {
            assert_eq!(run(&prog, CHAR, rw, major, minor), 1, "c {major}:{minor}");
        }
        // The host's loop device, /dev/mem, kmsg, fuse and any block device: denied for rw.
        assert_eq!(run(&prog, BLOCK, ACC_READ, 7, 0), 0);
        assert_eq!(run(&prog, CHAR, ACC_READ, 1, 1), 0);
        assert_eq!(run(&prog, CHAR, ACC_WRITE, 1, 11), 0);
        assert_eq!(run(&prog, CHAR, rw, 10, 229), 0);
        assert_eq!(run(&prog, BLOCK, rw, 8, 0), 0);
        // mknod of anything is allowed, as in Docker; using it is not.
        assert_eq!(run(&prog, BLOCK, ACC_MKNOD, 7, 0), 1);
        assert_eq!(run(&prog, CHAR, ACC_MKNOD, 1, 1), 1);
        assert_eq!(run(&prog, BLOCK, ACC_MKNOD | ACC_READ, 7, 0), 0);
    }

    #[test]
    fn passed_devices_and_privileged_open_up_the_filter() {
        let fuse = DeviceNode {
            path: "/dev/fuse".into(),
            kind: DeviceKind::Char,
            major: 10,
            minor: 229,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
            access: ACC_READ,
        };
        let prog = filter_program(&container_rules(false, &[fuse]));
        assert_eq!(
            run(&prog, CHAR, ACC_READ, 10, 229),
            1,
            "allow after the deny wins"
        );
        assert_eq!(
            run(&prog, CHAR, ACC_WRITE, 10, 229),
            0,
            "only the given permissions"
        );
        let all = filter_program(&container_rules(true, &[]));
        assert_eq!(all.len(), 8, "loads, then one unconditional allow: {all:?}");
        assert_eq!(run(&all, BLOCK, ACC_READ | ACC_WRITE, 7, 0), 1);
    }

    #[test]
    fn v1_lines_and_permissions_use_the_kernels_syntax() {
        let lines: Vec<String> = default_rules().iter().map(DeviceRule::v1_line).collect();
        assert_eq!(lines[..4], ["a", "c *:* m", "b *:* m", "c 1:3 rwm"]);
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        assert_eq!(parse_permissions("rw").unwrap(), ACC_READ | ACC_WRITE);
        assert_eq!(
            parse_permissions("rx").unwrap_err().to_string(),
            "invalid device permissions \"rx\": use a combination of r, w and m"
        );
    }

    #[test]
    fn host_devices_must_be_device_nodes() {
        let null = resolve_host_device("/dev/null", "/dev/mynull", "rw").unwrap();
        assert_eq!(
            (null.kind, null.major, null.minor),
            (DeviceKind::Char, 1, 3)
        );
        assert_eq!(null.path, "/dev/mynull");
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let via_link = resolve_host_device(link.to_str().unwrap(), "", "").unwrap();
        assert_eq!(
            (via_link.major, via_link.minor, via_link.access),
            (1, 3, ACC_ALL)
        );
        let err = resolve_host_device("/etc/hostname", "/dev/x", "").unwrap_err();
        assert!(err.to_string().contains("not a device node"), "{err}");
        let err = resolve_host_device("/dev/null", "dev/x", "").unwrap_err();
        assert!(err.to_string().contains("must be absolute"), "{err}");
    }

    /// Open a block node 7:0 (a loop device) and the null device from a shell in `cgroup`
    /// (None = where the test runs); returns the shell's stderr and stdout.
    fn probe(cgroup: Option<&Path>, node_dir: &Path) -> (String, String) {
        let join = cgroup.map_or(String::new(), |dir| {
            format!("echo $$ > {}/cgroup.procs && ", dir.display())
        });
        let script = format!(
            "{join}head -c1 {d}/loop >/dev/null; head -c0 {d}/null && echo null-ok",
            d = node_dir.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run sh");
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn the_kernel_enforces_the_v2_filter_on_a_cgroup2_directory() {
        let layout = super::super::cgroup::CgroupLayout::detect();
        let unified = layout.unified.expect("this host has a cgroup2 tree");
        let nodes = tempfile::tempdir().unwrap();
        let mk = |name: &str, kind, major, minor| {
            nix::sys::stat::mknod(
                &nodes.path().join(name),
                kind,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(major, minor),
            )
            .expect("mknod (tests run as root)")
        };
        mk("loop", nix::sys::stat::SFlag::S_IFBLK, 7, 0);
        mk("null", nix::sys::stat::SFlag::S_IFCHR, 1, 3);
        let (outside, _) = probe(None, nodes.path());
        assert!(
            !outside.contains("not permitted"),
            "without the filter: {outside}"
        );

        let dir = unified.join(format!("berth-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let result = apply_v2(&dir, &default_rules()).map(|()| probe(Some(&dir), nodes.path()));
        let _ = std::fs::remove_dir(&dir);
        let (stderr, stdout) = result.expect("load and attach the filter");
        assert!(
            stderr.contains("Operation not permitted"),
            "loop device: {stderr}"
        );
        assert_eq!(
            stdout.trim(),
            "null-ok",
            "the null device stays usable: {stderr}"
        );
    }
}
