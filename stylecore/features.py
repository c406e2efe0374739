"""A frozen VGG19 that returns the activations of the content and style layers.

Input: 1 x H x W x 3 float32 (or B x H x W x 3), BGR with the ImageNet mean
subtracted, as `stylecore.images.preprocess` returns; any height and width of
at least 32 pixels, since the five pooling layers halve the size each time.
Output: the listed layers' activations, each B x h x w x channels float32.
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


class FeatureExtractor:
    """Runs VGG19 once per call and splits the requested activations into content and style lists."""

    def __init__(self, weights: VGG19Weights, content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS):
        vgg19 = build_vgg19(weights)
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
        return list(activations[:count]), list(activations[count:])
