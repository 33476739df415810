"""Training recipes: rate-distortion codec training (:mod:`codecloss.train.codec`)."""
