//! The legacy (x_tables) `filter` table's shape, read with one `getsockopt` instead of an
//! `iptables-legacy-save` process. x_tables has no generation number; its entry count and size
//! change whenever a rule or chain is added or deleted, which is what a firewall reload or a
//! flush does to berth's accepts.

/// `IPT_SO_GET_INFO` of `<linux/netfilter_ipv4/ip_tables.h>`.
const IPT_SO_GET_INFO: libc::c_int = 64;
const TABLE_NAME_LEN: usize = 32;
const TABLES: &str = "/proc/net/ip_tables_names";

/// `struct ipt_getinfo` after the name: valid hooks, hook entries, underflows, entry count and
/// size, all `unsigned int`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterShape([u32; 13]);

/// The shape of the legacy `filter` table of this network namespace, or `None` when there is
/// none. Asking for a table that is not loaded would make the kernel load (so create) it, which
/// `iptables-legacy-save` would then show as in use: the loaded tables are checked first.
pub fn filter_shape() -> Option<FilterShape> {
    if !filter_loaded() {
        return None;
    }
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut info = [0u8; TABLE_NAME_LEN + 13 * 4];
    info[..6].copy_from_slice(b"filter");
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes laid out as `struct ipt_getinfo`.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            IPT_SO_GET_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || len as usize != info.len() {
        return None;
    }
    Some(parse_info(&info[TABLE_NAME_LEN..]))
}

/// Whether the legacy `filter` table is loaded in this network namespace (read from procfs,
/// which loads nothing).
pub fn filter_loaded() -> bool {
    std::fs::read_to_string(TABLES).is_ok_and(|loaded| loaded.lines().any(|t| t.trim() == "filter"))
}

fn parse_info(fields: &[u8]) -> FilterShape {
    let mut shape = [0u32; 13];
    for (slot, bytes) in shape.iter_mut().zip(fields.chunks_exact(4)) {
        *slot = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    FilterShape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_holds_every_field_so_one_more_rule_changes_it() {
        let mut fields = [0u8; 13 * 4];
        fields[44..48].copy_from_slice(&6u32.to_ne_bytes()); // num_entries
        let six = parse_info(&fields);
        fields[44..48].copy_from_slice(&7u32.to_ne_bytes());
        assert_ne!(parse_info(&fields), six);
        assert_eq!(six.0[11], 6);
    }
}
