//! Small building blocks shared by model families.
use tch::Tensor;

/// ProGAN's pixelwise feature normalisation: each pixel's feature vector scaled to unit RMS.
/// Keeps G's activations bounded without batch statistics, so a sample does not depend on the
/// other samples in its batch and train and eval behave the same.
pub fn pixel_norm(x: &Tensor) -> Tensor {
    x * (x.square().mean_dim(1, true, None) + 1e-8).rsqrt()
}

/// Leaky ReLU with ProGAN/StyleGAN's slope 0.2 (tch's `leaky_relu` has torch's fixed 0.01).
/// Written as max(x, 0.2 x), which is differentiable twice, as R1 needs.
pub fn lrelu(x: &Tensor) -> Tensor {
    x.maximum(&(x * 0.2))
}

/// Upsamples by 2 with nearest-neighbour, the DCGAN/ProGAN choice that avoids transposed-conv
/// checkerboard artefacts.
pub fn upsample2(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    x.upsample_nearest2d([h * 2, w * 2], None, None)
}

/// Halves the resolution with 2x2 average pooling.
pub fn downsample2(x: &Tensor) -> Tensor {
    x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None)
}
