// The verification kernels of kernels/verify.cu, compiled for the host with cuda_emu.h and run
// by the emu_verify test, which compares them with the Rust reference.

#include "cuda_emu.h"

#include "../../kernels/verify.cu"

extern "C" int asps_emu_verify(int dtype, const asps::VerifyParams* params, unsigned block) {
  if (block == 0 || block % 32 != 0 || block > 1024) return 1;
  const asps::VerifyParams p = *params;
  const unsigned b = static_cast<unsigned>(p.batch), n = static_cast<unsigned>(p.max_draft);
  auto run = [&](auto rows, auto residual) {
    emu::launch(b * (2 * n + 1), block, [&] { rows(p); });
    emu::launch(b * (n + 1), block, [&] { residual(p); });
    emu::launch((b + 127) / 128, 128, [&] { asps_verify_finalize(p); });
  };
  switch (dtype) {
    case 0: run(asps_verify_rows_f32, asps_verify_residual_f32); return 0;
    case 1: run(asps_verify_rows_f16, asps_verify_residual_f16); return 0;
    case 2: run(asps_verify_rows_bf16, asps_verify_residual_bf16); return 0;
    default: return 2;
  }
}
