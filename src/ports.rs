//! Which TCP ports a worker's processes listen on, and how long a held socket's accept queue is:
//! read from `/proc` (Linux), so that devserve can say what an app does instead of what it was
//! told (it binds a port written in its code instead of `$PORT`, or never accepts on fd 3).
//!
//! Contract: [`listening`] lists the listening TCP ports (IPv4 and IPv6) held by any process of a
//! process group (a worker is the leader of its own group, so a wrapper such as `npm start` or
//! `sh -c` and the app below it both count). [`accept_queue`] is the number of connections
//! waiting in the accept queue of the listening socket with the given inode. Both read only
//! `/proc`, never the sockets, and answer "nothing" where `/proc` cannot be read (another OS, a
//! process that is gone): a hint that does not come is the worst outcome.

use std::collections::BTreeSet;

/// One listening TCP socket of the table in `/proc/PID/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listener {
    port: u16,
    inode: u64,
    /// Connections waiting to be accepted.
    queue: u64,
}

/// The listening TCP ports of the processes in process group `group`, without those whose
/// socket inode is in `except` (sockets devserve itself handed over), sorted and unique.
pub fn listening(group: i32, except: &[u64]) -> Vec<u16> {
    let members = group_members(group);
    let Some(first) = members.first() else { return Vec::new() };
    let inodes: BTreeSet<u64> = members.iter().flat_map(|pid| socket_inodes(*pid)).collect();
    let ports: BTreeSet<u16> = listeners(*first)
        .into_iter()
        .filter(|l| inodes.contains(&l.inode) && !except.contains(&l.inode))
        .map(|l| l.port)
        .collect();
    ports.into_iter().collect()
}

/// Connections waiting in the accept queue of the listening socket `inode`, as the network
/// namespace of process `pid` shows it (`None` if it cannot be read).
pub fn accept_queue(pid: i32, inode: u64) -> Option<u64> {
    listeners(pid).into_iter().find(|l| l.inode == inode).map(|l| l.queue)
}

/// The inode of the socket behind file descriptor `fd` of this process.
pub fn own_socket_inode(fd: i32) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    socket_inode(&target.to_string_lossy())
}

/// The processes whose process group is `group`.
fn group_members(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut members: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_group(*pid) == Some(group))
        .collect();
    members.sort_unstable();
    // The leader first: its network namespace is the one to read.
    if let Some(at) = members.iter().position(|pid| *pid == group) {
        members.swap(0, at);
    }
    members
}

/// The process group of `pid`, from `/proc/PID/stat` (the fields after the command's `)`).
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(2)?.parse().ok()
}

/// The socket inodes among the open files of `pid`.
fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| socket_inode(&target.to_string_lossy()))
        .collect()
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The listening sockets of the TCP tables `pid` sees.
fn listeners(pid: i32) -> Vec<Listener> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| text.lines().skip(1).filter_map(parse_line).collect::<Vec<_>>())
        .collect()
}

/// One line of `/proc/net/tcp`: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`;
/// only listening sockets (state `0A`). For a listening socket `rx` is its accept queue.
fn parse_line(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let port = u16::from_str_radix(fields.get(1)?.rsplit_once(':')?.1, 16).ok()?;
    let queue = u64::from_str_radix(fields.get(4)?.split_once(':')?.1, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some(Listener { port, inode, queue })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_line_gives_the_listeners_port_queue_and_inode() {
        let listen = "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000003 00:00000000 00000000  1000        0 4242 1 0";
        assert_eq!(parse_line(listen), Some(Listener { port: 3000, inode: 4242, queue: 3 }));
        let established = "   1: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1";
        assert_eq!(parse_line(established), None);
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_groups_listening_ports_are_found_and_handed_over_ones_left_out() {
        use std::os::fd::AsRawFd;
        // This test process: its own listener, found in its own process group.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let group = nix::unistd::getpgrp().as_raw();
        assert!(listening(group, &[]).contains(&port), "{:?}", listening(group, &[]));
        let inode = own_socket_inode(listener.as_raw_fd()).expect("an inode");
        assert!(!listening(group, &[inode]).contains(&port), "a handed-over socket is left out");
        // A connection not yet accepted waits in the queue.
        let _waiting = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let me = std::process::id() as i32;
        let mut queued = 0;
        for _ in 0..200 {
            queued = accept_queue(me, inode).unwrap_or(0);
            if queued > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(queued, 1);
    }
}
