"""Community features: channel points, custom rewards and their redemption queue, predictions, polls."""
