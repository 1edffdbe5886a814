//! `HostConfig.SecurityOpt`: the options berth implements (`no-new-privileges`, turning the
//! seccomp filter or the masked `/proc` paths off) and those that ask for what it does anyway
//! (`apparmor=unconfined`, `label=disable`: berth applies neither AppArmor nor SELinux). Profiles
//! and labels it cannot apply are refused at create: running without a requested hardening would
//! be unsafe.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecurityOptError {
    /// Docker's wording for an option it does not know.
    #[error("invalid --security-opt 2: {0:?}")]
    Unknown(String),
    #[error(
        "security option {0:?} is not supported: berth applies Docker's default seccomp profile \
         only; use seccomp=unconfined or leave the option out"
    )]
    SeccompProfile(String),
    #[error(
        "security option {0:?} is not supported: berth does not apply AppArmor profiles; \
         leave the option out"
    )]
    AppArmor(String),
    #[error(
        "security option {0:?} is not supported: berth does not apply SELinux labels; \
         leave the option out"
    )]
    Label(String),
    #[error("invalid --security-opt 2: {0:?}: no-new-privileges takes true or false")]
    BadBool(String),
}

/// What the options ask of `berth init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp_unconfined: bool,
    pub unmasked_paths: bool,
}

/// Parse Docker's `key=value` (or legacy `key:value`) security options.
pub fn parse(options: &[String]) -> Result<SecurityOptions, SecurityOptError> {
    let mut out = SecurityOptions::default();
    for opt in options {
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        let Some((key, value)) = opt.split_once(['=', ':']) else {
            return Err(SecurityOptError::Unknown(opt.clone()));
        };
        match (key, value) {
            ("no-new-privileges", v) => {
                out.no_new_privileges = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(SecurityOptError::BadBool(opt.clone())),
                }
            }
            ("seccomp", "unconfined") => out.seccomp_unconfined = true,
            ("seccomp", _) => return Err(SecurityOptError::SeccompProfile(opt.clone())),
            ("systempaths", "unconfined") => out.unmasked_paths = true,
            ("apparmor", "unconfined") => {}
            ("apparmor", _) => return Err(SecurityOptError::AppArmor(opt.clone())),
            ("label", "disable") => {}
            ("label", _) => return Err(SecurityOptError::Label(opt.clone())),
            _ => return Err(SecurityOptError::Unknown(opt.clone())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn implemented_options_and_dockers_spellings() {
        let parsed = parse(&opts(&[
            "no-new-privileges:true",
            "seccomp=unconfined",
            "systempaths=unconfined",
            "apparmor:unconfined",
            "label=disable",
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            SecurityOptions {
                no_new_privileges: true,
                seccomp_unconfined: true,
                unmasked_paths: true
            }
        );
        assert!(
            parse(&opts(&["no-new-privileges"]))
                .unwrap()
                .no_new_privileges
        );
        assert!(
            !parse(&opts(&["no-new-privileges=false"]))
                .unwrap()
                .no_new_privileges
        );
    }

    #[test]
    fn hardening_berth_cannot_apply_is_refused() {
        assert!(matches!(
            parse(&opts(&["seccomp=/etc/profile.json"])),
            Err(SecurityOptError::SeccompProfile(_))
        ));
        assert!(matches!(
            parse(&opts(&["apparmor=docker-default"])),
            Err(SecurityOptError::AppArmor(_))
        ));
        assert!(matches!(
            parse(&opts(&["label=type:svirt_t"])),
            Err(SecurityOptError::Label(_))
        ));
        assert_eq!(
            parse(&opts(&["bogus"])).unwrap_err().to_string(),
            "invalid --security-opt 2: \"bogus\""
        );
    }
}
