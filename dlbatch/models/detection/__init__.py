"""The detection model type (RetinaNet-style), split the torchvision way into small units."""
