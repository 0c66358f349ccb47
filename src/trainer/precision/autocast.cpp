// Autocast with a chosen lower-precision dtype. tch exposes only the legacy CUDA switch, whose
// dtype is fp16; bf16 needs at::autocast::set_autocast_dtype, so these few lines call the
// libtorch API directly. Every function returns -1 when libtorch throws (and 0 or a previous
// state otherwise), so no C++ exception crosses into Rust.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

namespace {
c10::DeviceType device_type(int cuda) { return cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU; }
}

extern "C" {

// Enables or disables autocast for the device type with bf16 as its dtype; returns whether it
// was enabled before.
int gan_autocast_set_bf16(int cuda, int enabled) {
  try {
    const auto dev = device_type(cuda);
    const bool was = at::autocast::is_autocast_enabled(dev);
    at::autocast::set_autocast_dtype(dev, at::kBFloat16);
    at::autocast::set_autocast_enabled(dev, enabled != 0);
    return was ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Enters (delta 1) or leaves (delta -1) an autocast region; when the outermost region closes,
// the cache of casted weights is cleared (as torch.autocast's __exit__ does).
int gan_autocast_nest(int delta) {
  try {
    if (delta > 0) {
      at::autocast::increment_nesting();
      return 0;
    }
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    return 0;
  } catch (...) {
    return -1;
  }
}

// TF32 for CUDA convolutions (cuDNN) and matmuls (cuBLAS); PyTorch's defaults are on and off.
// Returns 0, or -1 when libtorch throws.
int gan_set_allow_tf32(int cudnn, int cublas) {
  try {
    at::globalContext().setAllowTF32CuDNN(cudnn != 0);
    at::globalContext().setAllowTF32CuBLAS(cublas != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

}
