//! Host usage for `/api/stats`: CPU (as a delta between calls, which is how CPU usage is defined), memory,
//! the disk holding the data dir, and network totals.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sysinfo::{Disks, Networks, System};

pub struct HostStats {
    system: System,
    data_dir: PathBuf,
}

impl HostStats {
    pub fn new(data_dir: &Path) -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self {
            system,
            data_dir: data_dir
                .canonicalize()
                .unwrap_or_else(|_| data_dir.to_path_buf()),
        }
    }

    pub fn sample(&mut self) -> Value {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let total = self.system.total_memory();
        let used = self.system.used_memory();

        let disks = Disks::new_with_refreshed_list();
        // The disk whose mount point is the longest prefix of the data dir.
        let disk = disks
            .list()
            .iter()
            .filter(|d| self.data_dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len());
        let disk = disk.map(|d| {
            let used = d.total_space().saturating_sub(d.available_space());
            json!({
                "mount_point": d.mount_point().to_string_lossy(),
                "total_bytes": d.total_space(),
                "used_bytes": used,
                "available_bytes": d.available_space(),
                "usage_percent": percent(used, d.total_space()),
            })
        });

        let networks = Networks::new_with_refreshed_list();
        let (mut rx, mut tx) = (0u64, 0u64);
        for (name, data) in &networks {
            if name != "lo" {
                rx += data.total_received();
                tx += data.total_transmitted();
            }
        }
        json!({
            "cpu": {
                "usage_percent": self.system.global_cpu_usage(),
                "cores": self.system.cpus().len(),
                "load_average": System::load_average().one,
            },
            "memory": {
                "total_bytes": total,
                "used_bytes": used,
                "usage_percent": percent(used, total),
            },
            "disk": disk,
            "network": { "rx_bytes": rx, "tx_bytes": tx },
        })
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}
