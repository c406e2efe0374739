"""A frozen VGG19 that returns the activations of the content and style layers.

Input: 1 x H x W x 3 float32 (or B x H x W x 3), BGR with the ImageNet mean
subtracted, as `stylecore.images.preprocess` returns. Height and width
must be at least 16 pixels for the default layers, because four pooling
layers come before block5_conv2, and 32 pixels when block5_pool is used.
Output: the listed layers' activations, each B x h x w x channels, in
float32, or in bfloat16 for precision "bfloat16" (the losses compute in
float32 from either).
"""

import keras
import tensorflow as tf

from stylecore.weights import VGG19_CONV_LAYERS, VGG19Weights

# Every layer a FeatureExtractor can return, in forward order: Keras' names
# for the sixteen convolutions and the pooling layer that ends each block.
VGG19_LAYER_NAMES = tuple(
    name
    for conv, _, _ in VGG19_CONV_LAYERS
    for name in ((conv, f"{conv.split('_')[0]}_pool") if conv in (
        "block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4") else (conv,))
)

DEFAULT_CONTENT_LAYERS = ("block5_conv2",)
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


def build_vgg19(weights: VGG19Weights) -> keras.Model:
    """Build Keras' VGG19 without its classifier, loaded with `weights`, frozen.

    NOTE: keeps Keras' max pooling; Gatys et al. report slightly better images
    with average pooling.
    """
    model = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    for name, (kernel, bias) in weights.layers.items():
        model.get_layer(name).set_weights([kernel, bias])
    model.trainable = False
    return model


def layer_names(model: keras.Model) -> list[str]:
    """Names of the layers a feature extractor can return, in forward order."""
    return [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


PRECISIONS = ("float32", "bfloat16", "auto")
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# bfloat16 tensor cores arrived with NVIDIA compute capability 8.0 (Ampere).
BFLOAT16_GPU_CAPABILITY = (8, 0)


def resolve_precision(precision: str) -> str:
    """Turn "auto" into "bfloat16" where the device computes it natively, else "float32"; other values pass through."""
    if precision != "auto":
        return precision
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return "bfloat16" if details.get("compute_capability", (0, 0)) >= BFLOAT16_GPU_CAPABILITY else "float32"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            flags = file.read()
    except OSError:
        return "float32"
    return "bfloat16" if any(flag in flags for flag in BFLOAT16_CPU_FLAGS) else "float32"


class FeatureExtractor:
    """Runs VGG19 once per call and splits the requested activations into content and style lists.

    With precision "bfloat16" the convolutions compute in bfloat16 (Keras'
    "mixed_bfloat16" policy, weights kept in float32) and the activations
    come back in bfloat16; `stylecore.losses` computes the Gram matrices and
    losses from them in float32.
    On this project's CPUs (AVX-512 BF16) it made an Adam update at 512 px
    about 3 times faster with the loss within a few percent. It should pay
    off on GPUs with bfloat16 tensor cores too, though that is unmeasured. "auto" picks bfloat16 where
    the device computes it natively.
    """

    def __init__(self, weights: VGG19Weights, content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS,
                 precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
        precision = resolve_precision(precision)
        self.precision = precision
        previous = keras.mixed_precision.dtype_policy()
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        try:
            vgg19 = build_vgg19(weights)
        finally:
            keras.mixed_precision.set_dtype_policy(previous)
        valid = layer_names(vgg19)
        unknown = [name for name in (*content_layers, *style_layers) if name not in valid]
        if unknown:
            raise ValueError(f"unknown VGG19 layer {', '.join(unknown)}; valid layers: {', '.join(valid)}")

        self.weights_source = weights.source
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        outputs = [vgg19.get_layer(name).output for name in (*self.content_layers, *self.style_layers)]
        # A functional model computes only the layers its outputs depend on.
        self.model = keras.Model(vgg19.input, outputs)

    def __call__(self, image: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """Return (content activations, style activations) for a B x H x W x 3 VGG19 input."""
        activations = self.model(image, training=False)
        if not isinstance(activations, (list, tuple)):  # Keras returns a bare tensor for a single output
            activations = [activations]
        count = len(self.content_layers)
        return activations[:count], activations[count:]
