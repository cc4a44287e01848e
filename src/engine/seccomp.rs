//! The seccomp profile of workspace containers, berth's own. It replaces the engine's default (a profile
//! given to a container is all it gets) and does three things:
//! - nothing in a workspace can set a setuid or setgid bit: `chmod`-family calls asking for one succeed
//!   without setting it (so package installs that set them go on), and creating a file with one is
//!   refused. Container root is host root, and a workspace's `/code` is a host directory: a setuid-root
//!   file left there would make any local user root. This holds whatever the host's file system is;
//! - the calls that reach past the container are refused: kernel keyrings, modules, BPF, perf, mounts
//!   and new namespaces, clock and host settings, and every way into another process (`ptrace`,
//!   `process_vm_*`, `pidfd_getfd`, `kcmp`), so no exec can read the agent server's memory;
//! - interfaces whose arguments a filter cannot see are refused with ENOSYS, so C libraries fall back
//!   to calls it can: `clone3` (to `clone`, whose namespace flags are checked), `fchmodat2`,
//!   `openat2`, and `io_uring` (whose operations bypass seccomp altogether).

use serde_json::{json, Value};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const S_ISUID: u64 = 0o4000;
const S_ISGID: u64 = 0o2000;

/// Namespaces a new process may not get (`CLONE_NEW*`).
const CLONE_NEW: [u64; 7] = [
    0x0002_0000, // NEWNS
    0x0200_0000, // NEWCGROUP
    0x0400_0000, // NEWUTS
    0x0800_0000, // NEWIPC
    0x1000_0000, // NEWUSER
    0x2000_0000, // NEWPID
    0x4000_0000, // NEWNET
];

/// Refused outright: they act on the host, the kernel, or another process.
const REFUSED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Refused as if the kernel lacked them, so libraries fall back to calls the filter can inspect.
const ABSENT: &[&str] = &[
    "clone3",
    "fchmodat2",
    "openat2",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// `(syscall, index of its mode argument)` for the calls that change a file's mode.
const CHMODS: [(&str, u32); 3] = [("chmod", 1), ("fchmod", 1), ("fchmodat", 2)];
/// `(syscall, index of its mode argument)` for the calls that create a file with a mode.
const CREATES: [(&str, u32); 5] = [
    ("open", 2),
    ("openat", 3),
    ("creat", 1),
    ("mknod", 1),
    ("mknodat", 2),
];

fn bit_set(index: u32, bit: u64) -> Value {
    json!({ "index": index, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ" })
}

fn architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    }
}

/// The profile, as the engine takes it in `SecurityOpt` (`seccomp=<json>`).
pub fn profile() -> String {
    let mut rules = vec![
        json!({ "names": REFUSED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM }),
        json!({ "names": ABSENT, "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }),
    ];
    for flag in CLONE_NEW {
        rules.push(json!({ "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM, "args": [bit_set(0, flag)] }));
    }
    for bit in [S_ISUID, S_ISGID] {
        for (name, index) in CHMODS {
            // Success without the bit: installers that set it carry on.
            rules.push(json!({ "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 0, "args": [bit_set(index, bit)] }));
        }
        for (name, index) in CREATES {
            rules.push(json!({ "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM, "args": [bit_set(index, bit)] }));
        }
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": rules,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_refuses_setuid_bits_on_every_mode_call_and_namespaces_on_clone() {
        let p: Value = serde_json::from_str(&profile()).unwrap();
        let rules = p["syscalls"].as_array().unwrap();
        for (name, _) in CHMODS.iter().chain(CREATES.iter()) {
            let n = rules.iter().filter(|r| r["names"][0] == *name).count();
            assert_eq!(n, 2, "{name}: one rule per bit");
        }
        let clones = rules.iter().filter(|r| r["names"][0] == "clone").count();
        assert_eq!(clones, CLONE_NEW.len());
        assert!(rules[0]["names"]
            .as_array()
            .unwrap()
            .contains(&json!("ptrace")));
    }
}
