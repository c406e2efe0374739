"""Gatys neural style transfer in TensorFlow: images, VGG19, losses, optimizers, the loop."""
