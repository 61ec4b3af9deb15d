//! Threads per block of each kernel, read by build.rs from kernels/launch_config.h (where the
//! kernels take them for their `__launch_bounds__`): `VERIFY_THREADS`, `SOFTMAX_STATS_THREADS`,
//! `SOFTMAX_THREADS`, `RESIDUAL_THREADS`, as `u32`.

include!(concat!(env!("OUT_DIR"), "/launch_config.rs"));
