//! Arbitrary bytes through the C ABI's `ipc_probe` (header parsing, the sample count
//! and file length it reports) and `ipc_decode_image8` with the buffer size the probe
//! gives: a status, never a panic (which the ABI would report as IPC_ERR_PANIC) nor a
//! crash.
#![no_main]

use ipccodec::{
    ipc_decode_image8, ipc_pack_free, ipc_pack_load, ipc_probe, IpcInfo, IPC_ERR_PANIC, IPC_OK,
};
use libfuzzer_sys::fuzz_target;

const PACK: &[u8] = include_bytes!("../../codec-tests/packs/synthetic-image.ipcpack");

fuzz_target!(|data: &[u8]| {
    let mut info = IpcInfo::default();
    // SAFETY: every pointer is valid for the length given.
    let status = unsafe { ipc_probe(data.as_ptr(), data.len(), &mut info) };
    assert_ne!(status, IPC_ERR_PANIC);
    if status != IPC_OK || info.samples > 1 << 16 {
        return;
    }
    let mut pack = std::ptr::null_mut();
    // SAFETY: as above; the pack is freed below.
    unsafe {
        assert_eq!(ipc_pack_load(PACK.as_ptr(), PACK.len(), &mut pack), IPC_OK);
        let mut pixels = vec![0u8; info.samples as usize];
        let status = ipc_decode_image8(
            pack,
            data.as_ptr(),
            data.len(),
            pixels.as_mut_ptr(),
            pixels.len(),
        );
        assert_ne!(status, IPC_ERR_PANIC);
        ipc_pack_free(pack);
    }
});
