//! Torch-free device discovery, for the launcher (which must not link libtorch) and for plans.
use std::path::Path;

/// Number of NVIDIA GPUs this process may use: the driver's device list, narrowed by
/// `CUDA_VISIBLE_DEVICES` when set. 0 on machines without the NVIDIA driver.
pub fn visible_gpu_count() -> u32 {
    let installed = count_driver_gpus(Path::new("/proc/driver/nvidia/gpus"));
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) => visible_from_list(&list, installed),
        Err(_) => installed,
    }
}

fn count_driver_gpus(dir: &Path) -> u32 {
    std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(|e| e.ok()).count() as u32)
}

/// CUDA stops at the first invalid entry; an empty list hides every device.
fn visible_from_list(list: &str, installed: u32) -> u32 {
    let list = list.trim();
    if list.is_empty() {
        return 0;
    }
    let valid = list.split(',').take_while(|id| is_device_id(id.trim(), installed)).count() as u32;
    valid.min(installed)
}

fn is_device_id(id: &str, installed: u32) -> bool {
    if let Ok(index) = id.parse::<u32>() {
        return index < installed;
    }
    id.starts_with("GPU-") || id.starts_with("MIG-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_visible_devices_narrows_the_count() {
        assert_eq!(visible_from_list("0,1", 8), 2);
        assert_eq!(visible_from_list("", 8), 0);
        assert_eq!(visible_from_list("0,9,1", 8), 1, "CUDA stops at the first invalid id");
        assert_eq!(visible_from_list("GPU-abc", 1), 1);
        assert_eq!(visible_from_list("0,1", 0), 0);
    }
}
