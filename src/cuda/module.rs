//! The embedded kernel image and the context it is loaded into.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, sys};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};

/// What build.rs embedded. Each build constructs one variant.
#[allow(dead_code)]
enum Image {
    /// The fatbin compiled by nvcc from kernels/*.cu.
    Cuda(&'static [u8]),
    /// The emulated device's image (ASPS_EMULATED_DEVICE=1): no code; only the emulated device
    /// of tests/emu, which runs the kernels' source on the CPU, accepts it.
    Emulated(&'static [u8]),
    /// Nothing: nvcc was not found.
    Missing,
}

#[cfg(asps_emulated_device)]
const IMAGE: Image = Image::Emulated(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/asps_emulated_device.image"
)));
#[cfg(all(asps_kernels, not(asps_emulated_device)))]
const IMAGE: Image = Image::Cuda(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/asps_kernels.fatbin"
)));
#[cfg(not(any(asps_kernels, asps_emulated_device)))]
const IMAGE: Image = Image::Missing;

/// The image of kernels/testing/ (the `testing` feature), built beside the production one.
#[cfg(all(feature = "testing", asps_emulated_device))]
const TEST_IMAGE: Image = Image::Emulated(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/asps_emulated_device_testing.image"
)));
#[cfg(all(feature = "testing", asps_kernels, not(asps_emulated_device)))]
const TEST_IMAGE: Image = Image::Cuda(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/asps_test_kernels.fatbin"
)));
#[cfg(all(feature = "testing", not(any(asps_kernels, asps_emulated_device))))]
const TEST_IMAGE: Image = Image::Missing;

/// Loads `image` into `ctx`.
fn load_image(ctx: &Arc<CudaContext>, image: &Image) -> Result<Arc<CudaModule>> {
    let fatbin = match *image {
        Image::Cuda(fatbin) => fatbin,
        Image::Emulated(image) => {
            // Never on a real device: the image holds no code.
            let name = ctx.name()?;
            if !name.starts_with(EMULATED_DEVICE) {
                return Err(Error::KernelsMissing);
            }
            image
        }
        Image::Missing => return Err(Error::KernelsMissing),
    };
    // The driver reads the image in place; a Vec<u8> from the system allocator is at least
    // 8-byte aligned on every platform CUDA supports, which the fatbin header needs.
    let image = fatbin.to_vec();
    if image.as_ptr() as usize % 8 != 0 {
        return Err(Error::Cuda("the fatbin copy is not 8-byte aligned".into()));
    }
    Ok(ctx.load_module(Ptx::from_binary(image))?)
}

/// How the emulated device's name begins (tests/emu/device/device.h).
const EMULATED_DEVICE: &str = "asps emulated device";

/// Whether this build carries the CUDA kernels (nvcc was found at build time, and the build was
/// not for the emulated device).
pub fn kernels_available() -> bool {
    matches!(IMAGE, Image::Cuda(_))
}

/// The compute capabilities the embedded kernels hold SASS for (PTX for the largest), e.g.
/// `[80, 86, 89, 90, 100, 120]`; empty when the crate was built without kernels.
pub fn kernel_archs() -> Vec<u32> {
    option_env!("ASPS_KERNEL_ARCHS")
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether the CUDA driver library can be loaded. Checked before any driver call, so that a
/// machine without a driver gets [`Error::NoCudaDriver`] instead of cudarc's panic. (When cudarc
/// links the driver instead of loading it, the library was found when the program started.)
/// Probed once per process (opening the library is not free, and callers such as the Python
/// package ask on every call); the answer is kept.
pub fn driver_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let names: &[&str] = if cfg!(windows) {
            &["nvcuda.dll"]
        } else {
            &["libcuda.so.1", "libcuda.so"]
        };
        names.iter().any(|name| {
            // SAFETY: opening the driver library runs its initialisers, which is what cudarc
            // does too when it loads it; nothing is called in it here, and the handle is closed
            // at once.
            unsafe { libloading::Library::new(*name) }.is_ok()
        })
    })
}

/// A CUDA context with this crate's kernels loaded. Cheap to clone; create it once and reuse it.
#[derive(Debug, Clone)]
pub struct Gpu {
    ctx: Arc<CudaContext>,
    module: Arc<CudaModule>,
}

impl Gpu {
    /// Creates (or retains) the primary context of device `ordinal` and loads the kernels.
    ///
    /// Errors: [`Error::KernelsMissing`] when the crate was built without nvcc (or for the
    /// emulated device of tests/emu, and this is not it),
    /// [`Error::NoCudaDriver`] when no driver library or no such device exists, [`Error::Cuda`]
    /// when the driver refuses the kernels (for example a GPU older than the built architectures).
    pub fn new(ordinal: usize) -> Result<Self> {
        if matches!(IMAGE, Image::Missing) {
            return Err(Error::KernelsMissing);
        }
        if !driver_available() {
            return Err(Error::NoCudaDriver(
                "the CUDA driver library (libcuda.so / nvcuda.dll) could not be loaded".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| Error::NoCudaDriver(e.to_string()))?;
        Self::load(ctx)
    }

    /// Loads the kernels into an existing context (for example one shared with candle).
    pub fn from_context(ctx: Arc<CudaContext>) -> Result<Self> {
        Self::load(ctx)
    }

    fn load(ctx: Arc<CudaContext>) -> Result<Self> {
        let module = load_image(&ctx, &IMAGE)?;
        Ok(Gpu { ctx, module })
    }

    /// The test and bench kernels' image (kernels/testing/), loaded into this context.
    #[cfg(feature = "testing")]
    pub(crate) fn load_test_image(&self) -> Result<Arc<CudaModule>> {
        load_image(&self.ctx, &TEST_IMAGE)
    }

    /// The device's name and the driver's CUDA version (e.g. 13000 for 13.0).
    pub fn describe(&self) -> Result<(String, i32)> {
        let name = self.context().name()?;
        let mut version = 0;
        // SAFETY: cuDriverGetVersion writes one int; the driver is loaded (a context exists).
        let rc = unsafe { sys::cuDriverGetVersion(&mut version) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(Error::Cuda(format!("cuDriverGetVersion: {rc:?}")));
        }
        Ok((name, version))
    }

    /// The context the kernels live in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// A kernel by name.
    pub(crate) fn function(&self, name: &str) -> Result<CudaFunction> {
        Ok(self.module.load_function(name)?)
    }

    /// Checks that `stream` belongs to this context.
    pub(crate) fn check_stream(&self, stream: &CudaStream) -> Result<()> {
        if Arc::ptr_eq(stream.context(), &self.ctx) {
            Ok(())
        } else {
            Err(Error::Shape(
                "the stream belongs to another CUDA context than this Gpu".into(),
            ))
        }
    }
}
